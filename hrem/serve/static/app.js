// The hrem search page: query -> /api/search -> grid; click -> /api/ground -> image + box + translucent mask.
// An image (chosen or dropped anywhere on the page) is POSTed as the raw body to /api/search; "more like
// this" on a card asks /api/similar?id=. Plain JS, no build step. User-provided text only ever goes through
// textContent / fillText; the query image preview is a blob: URL (the CSP allows blob: images only).
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

  async function getJson(url, options) {
    const response = await fetch(url, options);
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
    const more = element("button", "more", "more like this");
    more.type = "button";
    more.addEventListener("click", function (event) { event.stopPropagation(); similar(hit.id); });
    card.append(img, score);
    (hit.captions || []).slice(0, 2).forEach(function (text) { card.appendChild(element("p", "caption", text)); });
    card.appendChild(more);
    card.addEventListener("click", function () { openDetail(hit, card); });
    return card;
  }

  function showResults(body, label) {
    const grid = $("results");
    grid.replaceChildren.apply(grid, body.results.map(function (hit, i) { return renderCard(hit, i + 1); }));
    grid.dataset.count = body.results.length;
    grid.dataset.query = label;
    setStatus(body.results.length + " result(s) for " + body.query + (body.rerank ? ", re-ranked with grounding" : "")
              + " in " + body.took_ms + " ms");
  }

  // The query image beside the form; the <img> exists only while there is one (a src-less image never loads).
  function showQueryImage(url, text) {
    const figure = $("query-image");
    if (figure.dataset.url) URL.revokeObjectURL(figure.dataset.url);
    figure.dataset.url = url && url.startsWith("blob:") ? url : "";
    figure.hidden = !url;
    const old = $("query-preview");
    if (old) old.remove();
    if (url) {
      const img = element("img");
      img.id = "query-preview";
      img.alt = "query image";
      img.src = url;
      figure.prepend(img);
    }
    $("query-label").textContent = text || "";
  }

  // Image -> images: the file itself is the request body; the server checks its bytes, size and pixels.
  async function searchImage(file) {
    if (!file) return;
    lastQuery = "";
    $("q").value = "";
    $("detail").hidden = true;
    showQueryImage(URL.createObjectURL(file), file.name || "dropped image");
    setStatus("searching with the image…");
    try {
      showResults(await getJson("/api/search?" + new URLSearchParams({ k: $("k").value }),
        { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } }),
        "image");
    } catch (error) {
      setStatus("image search failed: " + error.message, true);
    }
  }

  async function similar(id) {
    lastQuery = "";
    $("detail").hidden = true;
    showQueryImage("/api/image/" + id, "more like id " + id);
    setStatus("searching for images like id " + id + "…");
    try {
      showResults(await getJson("/api/similar?" + new URLSearchParams({ id: id, k: $("k").value })), "similar");
    } catch (error) {
      setStatus("more like this failed: " + error.message, true);
    }
  }

  async function search(event) {
    if (event) event.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    lastQuery = q;
    showQueryImage(null);
    setStatus("searching…");
    const params = new URLSearchParams({ q: q, k: $("k").value });
    if ($("rerank").checked && !$("rerank-option").hidden) params.set("rerank", "true");
    try {
      const body = await getJson("/api/search?" + params);
      showResults(Object.assign({}, body, { query: "“" + body.query + "”" }), "text");
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
    const grounded = lastQuery ? " · grounding “" + lastQuery + "”…" : "";
    $("detail-info").textContent = "id " + hit.id + " · " + hit.key + grounded;
    const list = $("detail-captions");
    list.replaceChildren.apply(list, (hit.captions || []).map(function (t) { return element("li", "", t); }));
    const params = new URLSearchParams({ id: hit.id, q: lastQuery });
    const grounding = lastQuery ? getJson("/api/ground?" + params)
      : Promise.resolve({ failed: "an image query has no text to ground" });
    try {
      const [img, ground] = await Promise.all([loadImage(hit.image_url),
        grounding.catch(function (error) { return { failed: error.message }; })]);
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
  $("image-file").addEventListener("change", function () {
    const input = $("image-file");
    searchImage(input.files[0]);
    input.value = "";   // choosing the same file again must fire "change" again
  });
  $("pick-image").addEventListener("click", function () { $("image-file").click(); });
  document.addEventListener("dragover", function (event) {
    event.preventDefault();
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", function (event) {
    if (!event.relatedTarget) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", function (event) {
    event.preventDefault();
    document.body.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length && !$("pick-image").hidden) searchImage(files[0]);
  });
  $("close").addEventListener("click", function () { $("detail").hidden = true; });
  // Hide what this server cannot do (a features-only model takes no query images).
  getJson("/healthz").then(function (health) {
    $("pick-image").hidden = !health.image_search;
    $("rerank-option").hidden = !health.rerank;
    document.body.classList.toggle("no-similar", !health.similar);
  }).catch(function () { /* the first search reports a server that is down */ });
  const initial = new URLSearchParams(window.location.search).get("q");
  if (initial) { $("q").value = initial; search(); }
})();
