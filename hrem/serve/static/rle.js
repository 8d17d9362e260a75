// COCO run-length encoding of binary masks (the same two forms as hrem.eval.rle):
//   {"size": [H, W], "counts": [runs...]}  or  {"size": [H, W], "counts": "<compressed string>"}
// Runs alternate 0s and 1s starting with 0s, over the mask flattened in column-major order.
"use strict";
(function (global) {
  function stringToCounts(text) {
    const counts = [];
    let pos = 0;
    while (pos < text.length) {
      let value = 0, shift = 0, more = true;
      while (more) {
        if (pos >= text.length) throw new Error("RLE string truncated at character " + pos);
        const group = text.charCodeAt(pos) - 48;
        value |= (group & 0x1f) << shift;
        more = (group & 0x20) !== 0;
        pos += 1;
        shift += 5;
        if (!more && (group & 0x10)) value |= -1 << shift;  // sign-extend
      }
      if (counts.length > 2) value += counts[counts.length - 2];
      counts.push(value);
    }
    return counts;
  }

  // -> {height, width, data: Uint8Array(H*W) in row-major order, 1 = foreground}
  function decodeRle(rle) {
    const height = rle.size[0], width = rle.size[1];
    const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
    const data = new Uint8Array(height * width);
    let flat = 0;
    counts.forEach(function (run, i) {
      if (i % 2 === 1) {
        for (let j = flat; j < flat + run; j++) {
          const col = Math.floor(j / height), row = j - col * height;
          data[row * width + col] = 1;
        }
      }
      flat += run;
    });
    if (flat !== height * width) throw new Error("RLE runs sum to " + flat + ", expected " + height * width);
    return { height: height, width: width, data: data };
  }

  global.hremRle = { decodeRle: decodeRle, stringToCounts: stringToCounts };
})(window);
