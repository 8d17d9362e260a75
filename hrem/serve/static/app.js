// The hrem search page: query -> /api/search -> grid; click -> /api/ground -> image + box + translucent mask.
// Plain JS, no build step. User-provided text only ever goes through textContent / fillText.
"use strict";
(function () {
  const CANVAS_SIZE = 400;
  const MASK_RGBA = [255, 64, 160, 110];   // translucent magenta
  const BOX_COLOR = "#22d3ee";
  const $ = function (id) { return document.getElementById(id); };
  let lastQuery = "";

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  async function getJson(url) {
    const response = await fetch(url);
    const body = await response.json().catch(function () { return { error: response.statusText }; });
    if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
    return body;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderCard(hit, rank) {
    const card = element("div", "card");
    card.dataset.id = hit.id;
    const img = element("img");
    img.src = hit.image_url;
    img.alt = hit.key;
    img.loading = "lazy";
    const score = element("p", "score", "score " + hit.score.toFixed(3) + " ");
    score.appendChild(element("span", "rank", "#" + rank + " · id " + hit.id));
    card.append(img, score);
    (hit.captions || []).slice(0, 2).forEach(function (text) { card.appendChild(element("p", "caption", text)); });
    card.addEventListener("click", function () { openDetail(hit, card); });
    return card;
  }

  async function search(event) {
    if (event) event.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    lastQuery = q;
    setStatus("searching…");
    const params = new URLSearchParams({ q: q, k: $("k").value });
    try {
      const body = await getJson("/api/search?" + params);
      const grid = $("results");
      grid.replaceChildren.apply(grid, body.results.map(function (hit, i) { return renderCard(hit, i + 1); }));
      grid.dataset.count = body.results.length;
      setStatus(body.results.length + " result(s) for “" + body.query + "” in " + body.took_ms + " ms");
    } catch (error) {
      setStatus("search failed: " + error.message, true);
    }
  }

  function loadImage(url) {
    return new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("image " + url + " did not load")); };
      img.src = url;
    });
  }

  function maskCanvas(mask) {
    const layer = document.createElement("canvas");
    layer.width = mask.width;
    layer.height = mask.height;
    const ctx = layer.getContext("2d");
    const pixels = ctx.createImageData(mask.width, mask.height);
    for (let i = 0; i < mask.data.length; i++) {
      if (mask.data[i]) pixels.data.set(MASK_RGBA, 4 * i);
    }
    ctx.putImageData(pixels, 0, 0);
    return layer;
  }

  function drawLabel(ctx, text, x, y) {
    ctx.font = "bold 15px system-ui, sans-serif";
    const width = ctx.measureText(text).width + 10;
    const top = Math.max(0, y - 22);
    const left = Math.min(Math.max(0, x), CANVAS_SIZE - width);
    ctx.fillStyle = "rgba(17, 24, 39, 0.8)";
    ctx.fillRect(left, top, width, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, left + 5, top + 16);
  }

  // Image scaled to fit the canvas, mask (same size as the image) on top, box and query label.
  function drawOverlay(img, ground, query) {
    const canvas = $("overlay");
    const ctx = canvas.getContext("2d");
    const scale = CANVAS_SIZE / Math.max(img.naturalWidth, img.naturalHeight);
    const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
    ctx.clearRect(0, 0, CANVAS_SIZE, CANVAS_SIZE);
    ctx.imageSmoothingEnabled = false;   // small demo images: keep the pixels crisp
    ctx.drawImage(img, 0, 0, w, h);
    if (!ground) { canvas.dataset.overlay = "image-only"; return; }
    const mask = window.hremRle.decodeRle(ground.mask);
    ctx.drawImage(maskCanvas(mask), 0, 0, w, h);
    const b = ground.box.map(function (v) { return v * scale; });
    ctx.strokeStyle = BOX_COLOR;
    ctx.lineWidth = 3;
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
    drawLabel(ctx, query + "  " + ground.score.toFixed(2), b[0], b[1]);
    canvas.dataset.maskPixels = mask.data.reduce(function (a, v) { return a + v; }, 0);
    canvas.dataset.overlay = "drawn";
  }

  async function openDetail(hit, card) {
    document.querySelectorAll(".card.selected").forEach(function (c) { c.classList.remove("selected"); });
    card.classList.add("selected");
    $("detail").hidden = false;
    $("overlay").dataset.overlay = "loading";
    $("detail-info").textContent = "id " + hit.id + " · " + hit.key + " · grounding “" + lastQuery + "”…";
    const list = $("detail-captions");
    list.replaceChildren.apply(list, (hit.captions || []).map(function (t) { return element("li", "", t); }));
    const params = new URLSearchParams({ id: hit.id, q: lastQuery });
    try {
      const [img, ground] = await Promise.all([loadImage(hit.image_url),
        getJson("/api/ground?" + params).catch(function (error) { return { failed: error.message }; })]);
      const ok = !ground.failed;
      drawOverlay(img, ok ? ground : null, lastQuery);
      $("detail-info").textContent = "id " + hit.id + " · " + hit.key + " · " + (ok
        ? "box [" + ground.box.map(function (v) { return v.toFixed(0); }).join(", ") + "], score " +
          ground.score.toFixed(3) + ", " + ground.took_ms + " ms"
        : "no grounding: " + ground.failed);
    } catch (error) {
      $("overlay").dataset.overlay = "failed";
      $("detail-info").textContent = "could not show id " + hit.id + ": " + error.message;
    }
  }

  $("search-form").addEventListener("submit", search);
  $("close").addEventListener("click", function () { $("detail").hidden = true; });
  const initial = new URLSearchParams(window.location.search).get("q");
  if (initial) { $("q").value = initial; search(); }
})();
