/* policylens trajectory explorer (Understanding RL Vision's interface), plain JavaScript, no network.
 *
 * Data files are scripts calling PolicyLensExplorer.load(kind, payload): "manifest" (data/manifest.js, loaded
 * by index.html), then per trajectory "trajectory" (frames as a PNG sprite sheet, value, action
 * probabilities, advantages, bookmarks) and per trajectory and layer "maps" (uint8 attribution maps,
 * deflated, base64). Scripts load over file:// where fetch() would be refused.
 *
 * Every string that comes from data (action names, labels, env names) is shown with textContent.
 * window.explorer exposes the state (frame, features shown, ...) for tests and for the console.
 */
(function () {
  "use strict";

  const R = window.PolicyLensRender;
  const registry = { manifest: null, trajectories: new Map(), maps: new Map(), scripts: new Map() };
  const ACTION_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"];

  window.PolicyLensExplorer = {
    load(kind, payload) {
      if (kind === "manifest") registry.manifest = payload;
      else if (kind === "trajectory") registry.trajectories.set(payload.id, payload);
      else if (kind === "maps") registry.maps.set(payload.trajectory + "/" + payload.layer, payload);
    },
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = String(text);
    return node;
  };
  const safeColor = (c) => (/^#[0-9a-fA-F]{6}$/.test(c || "") ? c : "#888888");
  const safeImage = (u) => (typeof u === "string" && u.startsWith("data:image/png;base64,") ? u : null);
  const fmt = (v, digits) => (v === undefined || v === null || Number.isNaN(v) ? "-" : Number(v).toFixed(digits === undefined ? 3 : digits));

  function loadScript(src) {
    if (!registry.scripts.has(src)) {
      registry.scripts.set(src, new Promise((resolve, reject) => {
        const node = document.createElement("script");
        node.src = src;
        node.onload = () => resolve();
        node.onerror = () => reject(new Error("cannot load " + src));
        document.head.appendChild(node);
      }));
    }
    return registry.scripts.get(src);
  }

  async function inflate(b64) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function loadImage(url) {
    const img = new Image();
    img.src = url;
    return img.decode().then(() => img);
  }

  // ------------------------------------------------------------------------------------------ sources
  /** A recorded trajectory: frames from a sprite sheet, maps decoded per layer. */
  function recordedSource(payload, sheet) {
    const [h, w] = payload.frames.tile, cols = payload.frames.columns;
    return {
      ...payload,
      maps: new Map(),
      tile: (t) => ({ image: sheet, sx: (t % cols) * w, sy: Math.floor(t / cols) * h, w, h }),
      mapSlice(layer, output, t) {
        const o = (this.maps.get(layer) || {})[output];
        if (!o) return null;
        return { q: o.q.subarray(t * o.stride, (t + 1) * o.stride), scale: o.scale, ref: o.scale, totals: o.totals[t] };
      },
    };
  }

  async function loadRecorded(index) {
    const entry = registry.manifest.trajectories[index];
    await loadScript(entry.file);
    const payload = registry.trajectories.get(entry.id);
    if (!payload) throw new Error("trajectory file " + entry.file + " holds no trajectory " + entry.id);
    const image = safeImage(payload.frames.sheet);
    if (!image) throw new Error("trajectory " + entry.id + " has no PNG frames");
    return recordedSource(payload, await loadImage(image));
  }

  async function loadMaps(source, index, layer) {
    if (source.maps.has(layer) || !source.mapFiles) return;
    await loadScript(source.mapFiles[layer]);
    const payload = registry.maps.get(source.id + "/" + layer);
    if (!payload) throw new Error("no maps for trajectory " + source.id + ", layer " + layer);
    const [T, S, F, gh, gw] = payload.shape, stride = S * F * gh * gw, decoded = {};
    for (const [name, o] of Object.entries(payload.outputs)) {
      const q = await inflate(o.data);
      if (q.length !== T * stride) throw new Error("maps of output " + name + " have " + q.length + " bytes, expected " + T * stride);
      decoded[name] = { q, stride, scale: o.scale, totals: o.totals };
    }
    source.maps.set(layer, decoded);
  }

  // ------------------------------------------------------------------------------------------ state
  const state = { traj: 0, frame: 0, layer: 0, output: 0, hover: -1, pinned: -1, hidden: new Set(), playing: false,
    fps: 10, gain: 2, smooth: 1, ready: false, drawn: [] };
  const sources = new Map();
  let source = null, timelineBase = null, timer = null, readyResolve;
  const whenReady = new Promise((resolve) => { readyResolve = resolve; });

  const manifest = () => registry.manifest;
  const transposed = () => Boolean(manifest().view && manifest().view.transposed);
  const layerInfo = () => manifest().layers[state.layer];
  const outputInfo = () => layerInfo().outputs[state.output] || layerInfo().outputs[0];
  const isolated = () => (state.hover >= 0 ? state.hover : state.pinned);
  function visibleFeatures() {
    const n = layerInfo().features.length, iso = isolated();
    if (iso >= 0 && iso < n) return [iso];
    return [...Array(n).keys()].filter((f) => !state.hidden.has(f));
  }

  function showError(err) {
    const box = $("error");
    box.textContent = "explorer: " + (err && err.message ? err.message : String(err));
    box.hidden = false;
  }

  // ------------------------------------------------------------------------------------------ building the page
  function buildSelectors() {
    const m = manifest();
    const tsel = $("trajectory-select");
    tsel.replaceChildren();
    m.trajectories.forEach((t, i) => {
      const label = t.label || ("episode " + t.episode + " (" + t.length + " steps, " + (t.cause || "?") + ")");
      const opt = el("option", "", label);
      opt.value = String(i);
      tsel.appendChild(opt);
    });
    const lsel = $("layer-select");
    lsel.replaceChildren();
    m.layers.forEach((l, i) => { const o = el("option", "", l.name + (l.kind === "attention" ? " (attention)" : "")); o.value = String(i); lsel.appendChild(o); });
    const names = m.action_names || [];
    const legend = $("action-legend");
    legend.replaceChildren();
    names.forEach((name, a) => {
      const li = el("li");
      const sw = el("span", "swatch");
      sw.style.background = ACTION_COLORS[a % ACTION_COLORS.length];
      li.append(sw, el("span", "", name));
      legend.appendChild(li);
    });
    $("title").textContent = m.title || "policylens explorer";
    document.title = (m.title || "policylens") + " - explorer";
  }

  function buildOutputs(keep) {
    const sel = $("output-select");
    keep = keep || (outputInfo() && outputInfo().name);
    sel.replaceChildren();
    const relabel = (source && source.outputLabels) || {};
    layerInfo().outputs.forEach((o, i) => { const opt = el("option", "", relabel[o.name] || o.label); opt.value = String(i); sel.appendChild(opt); });
    const same = layerInfo().outputs.findIndex((o) => o.name === keep);
    state.output = same >= 0 ? same : 0;
    sel.value = String(state.output);
    buildPanels();
  }

  function buildPanels() {
    const panels = $("panels");
    panels.querySelectorAll(".panel.sign").forEach((p) => p.remove());
    outputInfo().signs.forEach((label, s) => {
      const fig = el("figure", "panel sign");
      const screen = el("div", "screen");
      const obs = el("canvas", "obs faded");
      const overlay = el("canvas", "overlay");
      overlay.dataset.sign = String(s);
      screen.append(obs, overlay);
      fig.append(screen, el("figcaption", "", label));
      panels.appendChild(fig);
    });
  }

  function buildLegend() {
    const list = $("legend");
    list.replaceChildren();
    layerInfo().features.forEach((feature, f) => {
      const li = el("li");
      li.dataset.feature = String(f);
      const sw = el("span", "swatch");
      sw.style.background = safeColor(feature.color);
      const url = safeImage(feature.thumbnail);
      let thumb;
      if (url) { thumb = el("img"); thumb.src = url; thumb.alt = ""; } else thumb = el("span", "no-thumb");
      const stable = typeof feature.stability === "number" && Number.isFinite(feature.stability);
      li.append(el("kbd", "key", f < 9 ? String(f + 1) : ""), sw, thumb, el("span", "label", feature.label),
        el("span", "stability", stable ? "stability " + fmt(feature.stability, 2) : ""), el("span", "amount"));
      li.addEventListener("mouseenter", () => { state.hover = f; render(); });
      li.addEventListener("mouseleave", () => { state.hover = -1; render(); });
      li.addEventListener("click", () => { if (state.hidden.has(f)) state.hidden.delete(f); else state.hidden.add(f); render(); });
      list.appendChild(li);
    });
  }

  function buildTrajectoryPanel() {
    const info = $("trajectory-info");
    info.replaceChildren();
    const m = manifest(), src = source, predicted = m.predicted ? "predicted " : "";
    const rows = [["env", m.env], ["agent", m.run], ["episode", src.info && src.info.episode], ["steps", src.length],
      [predicted + "return", fmt(src.info && src.info["return"])], ["end", src.info && src.info.cause], ["level", src.info && src.info.level_seed],
      ["layer", layerInfo().name], ["method", layerInfo().meta && layerInfo().meta.method]];
    for (const [k, v] of rows) if (v !== undefined && v !== null && v !== "") info.append(el("dt", "", k), el("dd", "", v));
    const marks = $("bookmarks");
    marks.replaceChildren();
    for (const b of src.bookmarks || []) {
      const li = el("li"), btn = el("button", b.advantage >= 0 ? "good" : "bad",
        "t=" + b.t + "  A=" + (b.advantage >= 0 ? "+" : "") + fmt(b.advantage));
      btn.type = "button";
      btn.addEventListener("click", () => setFrame(b.t));
      li.appendChild(btn);
      marks.appendChild(li);
    }
    const probs = $("probs");
    probs.replaceChildren();
    (m.action_names || []).forEach((name, a) => {
      const li = el("li"), track = el("span", "track"), fill = el("span", "fill");
      fill.style.background = ACTION_COLORS[a % ACTION_COLORS.length];
      track.appendChild(fill);
      li.append(el("span", "name", name), track, el("span", "p mono"));
      probs.appendChild(li);
    });
  }

  function redrawTimeline() {
    const canvas = $("timeline");
    timelineBase = document.createElement("canvas");
    R.drawTimeline(timelineBase, canvas.clientWidth || 600, source, ACTION_COLORS);
  }

  // ------------------------------------------------------------------------------------------ rendering one frame
  function render() {
    if (!source || !state.ready) return;
    const t = Math.min(state.frame, source.length - 1), m = manifest(), layer = layerInfo(), out = outputInfo();
    const size = 256;
    R.drawFrame($("obs-canvas"), source, t, size, size);
    const slice = source.mapSlice(state.layer, out.name, t);
    const visible = visibleFeatures(), colors = layer.features.map((f) => safeColor(f.color));
    const shape = [out.signs.length, layer.features.length, layer.grid[0], layer.grid[1]];
    const drawn = new Set();
    document.querySelectorAll(".panel.sign").forEach((fig) => {
      R.drawFrame(fig.querySelector("canvas.obs"), source, t, size, size);
      const overlay = fig.querySelector("canvas.overlay");
      const used = R.drawOverlay(overlay, slice, Number(overlay.dataset.sign), shape, visible, colors, state.gain, state.smooth,
        transposed());
      used.forEach((f) => drawn.add(f));
    });
    state.drawn = [...drawn].sort((a, b) => a - b);
    // legend: which features show, and their good / bad news at this frame
    const iso = isolated();
    document.querySelectorAll("#legend li").forEach((li) => {
      const f = Number(li.dataset.feature);
      li.classList.toggle("off", !visible.includes(f));
      li.classList.toggle("isolated", iso === f);
      const amount = li.querySelector(".amount"), tot = slice && slice.totals ? slice.totals.map((s) => s[f]) : [];
      amount.textContent = tot.length === 2 ? "+" + fmt(tot[0]) + " / -" + fmt(tot[1]) : tot.length === 1 ? fmt(tot[0]) : "";
    });
    // frame details
    const names = m.action_names || [], a = source.action[t], info = $("frame-info");
    info.replaceChildren();
    const predicted = m.predicted ? "predicted " : "";  // a simulator's heads, not the game's values
    const rows = [["frame", t + " / " + (source.length - 1)], ["value", fmt(source.value[t])],
      ["action", a === undefined || a === null || a < 0 ? "-" : (names[a] !== undefined ? names[a] : a)],
      [predicted + "reward", fmt(source.reward[t])], ["advantage" + (predicted ? " (of predicted rewards)" : ""), fmt(source.advantages[t])]];
    if (source.done[t]) rows.push(["episode", m.predicted ? "predicted to end here" : "ends here"]);
    for (const [k, v] of rows) info.append(el("dt", "", k), el("dd", "", v));
    const p = source.probs[t] || [];
    document.querySelectorAll("#probs li").forEach((li, i) => {
      li.classList.toggle("taken", i === a);
      li.querySelector(".fill").style.width = (100 * (p[i] || 0)).toFixed(1) + "%";
      li.querySelector(".p").textContent = fmt(p[i], 3);
    });
    $("frame-slider").max = String(source.length - 1);
    $("frame-slider").value = String(t);
    $("frame-label").textContent = t + " / " + (source.length - 1);
    if (timelineBase) R.drawPlayhead($("timeline"), timelineBase, t, source.length);
    const body = document.body.dataset;
    body.frame = String(t); body.trajectory = String(state.traj); body.layer = layer.name; body.output = out.name;
    body.visible = visible.join(",");
    renderTree(t);
  }

  // ------------------------------------------------------------------------------------------ saliency tree
  /** Show the saliency tree of frame t (if the export computed one) as an indented list; hovering a node
   *  outlines its box on the observation. Rebuilt only when the frame or trajectory changes. */
  function renderTree(t) {
    const trees = (source && source.trees) || {}, key = state.traj + "/" + t;
    if (state.treeKey === key) return;
    state.treeKey = key;
    const frames = Object.keys(trees).map(Number).sort((x, y) => x - y);
    const list = $("saliency-tree"), note = $("tree-frames");
    list.replaceChildren();
    note.replaceChildren();
    showTreeBox(null);
    const tree = trees[String(t)];
    if (!tree) {
      note.append(el("span", "", frames.length ? "no tree at this frame; trees at frames " : "no saliency trees in this export"));
      frames.forEach((f) => {
        const b = el("button", "", f);
        b.type = "button";
        b.addEventListener("click", () => setFrame(f));
        note.append(b);
      });
      return;
    }
    const shape = tree.obs_shape || [1, 1];
    note.append(el("span", "", "method " + (tree.method || "-") + ", k = " + (tree.k || "-") + ", layers " + (tree.layers || []).join(" \u2192 ")));
    list.appendChild(treeItem(tree, shape, true));
  }

  function treeItem(node, shape, isRoot) {
    const li = el("li"), label = el("span", "node");
    li.dataset.layer = String(node.layer);
    if (isRoot) label.append(el("span", "", String(node.unit) + " = " + fmt(node.activation)));
    else {
      const unit = Array.isArray(node.unit) ? "[" + node.unit.join(",") + "]" : String(node.unit);
      label.append(el("span", "", node.layer + " " + unit + " "),
        el("span", "share", (100 * Number(node.share)).toFixed(1) + "% "),
        el("span", Number(node.score) < 0 ? "neg" : "", (Number(node.score) >= 0 ? "+" : "") + fmt(node.score, 4)));
      label.title = "activation " + fmt(node.activation, 4) + ", attribution " + fmt(node.score, 4) + ", share of the parent's |attribution| " + fmt(node.share, 3);
    }
    label.addEventListener("mouseenter", () => { label.classList.add("hot"); showTreeBox(node.box, shape); });
    label.addEventListener("mouseleave", () => { label.classList.remove("hot"); showTreeBox(null); });
    li.appendChild(label);
    if (node.children && node.children.length) {
      const ul = el("ul");
      node.children.forEach((c) => ul.appendChild(treeItem(c, shape, false)));
      li.appendChild(ul);
    }
    return li;
  }

  function showTreeBox(box, shape) {
    const hl = $("tree-highlight");
    if (!Array.isArray(box) || box.length !== 4 || !shape) { hl.hidden = true; state.treeBox = null; return; }
    // a box [y0, x0, y1, x1] of the observation's array; over an upright picture of a MiniGrid view ([x, y]
    // arrays) its first axis runs across
    const b = box.map(Number), s = shape.map(Number);
    const [y0, x0, y1, x1] = transposed() ? [b[1], b[0], b[3], b[2]] : b, [H, W] = transposed() ? [s[1], s[0]] : s;
    hl.style.top = (100 * y0 / H) + "%"; hl.style.left = (100 * x0 / W) + "%";
    hl.style.height = (100 * (y1 - y0) / H) + "%"; hl.style.width = (100 * (x1 - x0) / W) + "%";
    hl.hidden = false;
    state.treeBox = [y0, x0, y1, x1];
  }

  // ------------------------------------------------------------------------------------------ actions
  function setFrame(t) {
    if (!source) return;
    state.frame = Math.max(0, Math.min(source.length - 1, Math.round(t)));
    render();
  }
  const step = (d) => setFrame(state.frame + d);

  function setPlaying(on) {
    state.playing = Boolean(on) && Boolean(source);
    $("play").textContent = state.playing ? "\u23F8" : "\u25B6";
    clearTimeout(timer);
    if (state.playing) {
      const tick = () => {
        if (!state.playing) return;
        if (state.frame >= source.length - 1) { setPlaying(false); return; }
        step(1);
        timer = setTimeout(tick, 1000 / state.fps);
      };
      timer = setTimeout(tick, 1000 / state.fps);
    }
  }

  function jumpBookmark(direction) {
    const times = (source.bookmarks || []).map((b) => b.t).sort((x, y) => x - y);
    const t = direction > 0 ? times.find((x) => x > state.frame) : times.reverse().find((x) => x < state.frame);
    if (t !== undefined) setFrame(t);
  }

  function isolate(f) {
    if (f >= layerInfo().features.length) return;
    state.pinned = state.pinned === f ? -1 : f;
    render();
  }

  /** Show trajectory `key` (a recorded trajectory's index, or the key of a source added by addSource). */
  async function selectTrajectory(key) {
    setPlaying(false);
    state.ready = false;
    try {
      if (!sources.has(String(key))) {
        const src = await loadRecorded(Number(key));
        src.mapFiles = manifest().trajectories[Number(key)].maps;
        sources.set(String(key), src);
      }
      source = sources.get(String(key));
      state.traj = typeof key === "number" || /^\d+$/.test(String(key)) ? Number(key) : String(key);
      $("trajectory-select").value = String(key);
      await loadMaps(source, key, state.layer);
      state.frame = Math.min(state.frame, source.length - 1);
      buildOutputs();
      state.ready = true;
      buildTrajectoryPanel();
      redrawTimeline();
      render();
      readyResolve();
    } catch (err) { showError(err); }
  }

  /** Add a trajectory that is not in the manifest (live play) under `key`, listed first as `label`. */
  function addSource(key, label, src) {
    sources.set(String(key), src);
    const opt = el("option", "", label);
    opt.value = String(key);
    $("trajectory-select").prepend(opt);
  }

  async function selectLayer(j) {
    if (!(j >= 0 && j < manifest().layers.length)) return;
    const keep = outputInfo().name;
    state.layer = j;
    $("layer-select").value = String(j);
    state.hover = -1; state.pinned = -1; state.hidden.clear();
    buildOutputs(keep);
    buildLegend();
    state.ready = false;
    try {
      await loadMaps(source, state.traj, j);
      state.ready = true;
      buildTrajectoryPanel();
      render();
    } catch (err) { showError(err); }
  }

  // ------------------------------------------------------------------------------------------ input
  function bindControls() {
    $("trajectory-select").addEventListener("change", (e) => { state.frame = 0; selectTrajectory(e.target.value); });
    $("layer-select").addEventListener("change", (e) => selectLayer(Number(e.target.value)));
    $("output-select").addEventListener("change", (e) => { state.output = Number(e.target.value); buildPanels(); render(); });
    $("gain").addEventListener("input", (e) => { state.gain = Number(e.target.value); render(); });
    $("smooth").addEventListener("input", (e) => { state.smooth = Number(e.target.value); render(); });
    $("fps").addEventListener("change", (e) => { state.fps = Number(e.target.value); });
    $("first").addEventListener("click", () => setFrame(0));
    $("last").addEventListener("click", () => setFrame(source ? source.length - 1 : 0));
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    $("play").addEventListener("click", () => setPlaying(!state.playing));
    $("frame-slider").addEventListener("input", (e) => setFrame(Number(e.target.value)));
    $("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
    $("help-close").addEventListener("click", () => { $("help").hidden = true; });
    const tl = $("timeline");
    let dragging = false;
    const scrub = (e) => {
      const box = tl.getBoundingClientRect();
      if (source) setFrame(R.frameFromX(e.clientX - box.left, box.width, source.length));
    };
    tl.addEventListener("mousedown", (e) => { dragging = true; setPlaying(false); scrub(e); });
    window.addEventListener("mousemove", (e) => { if (dragging) scrub(e); });
    window.addEventListener("mouseup", () => { dragging = false; });
    window.addEventListener("resize", () => { if (source) { redrawTimeline(); render(); } });
    document.addEventListener("keydown", onKey);
    // a chosen option hands the keyboard back to the shortcuts
    for (const id of ["trajectory-select", "layer-select", "output-select", "fps"]) $(id).addEventListener("change", (e) => e.target.blur());
  }

  function onKey(e) {
    const tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" && e.target.type !== "range" || tag === "SELECT" || tag === "TEXTAREA" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (window.PolicyLensLive && window.PolicyLensLive.onKey(e)) { e.preventDefault(); return; }
    const key = e.key;
    if (key === " ") setPlaying(!state.playing);
    else if (key === "ArrowRight") step(1);
    else if (key === "ArrowLeft") step(-1);
    else if (key === "Home") setFrame(0);
    else if (key === "End") setFrame(source ? source.length - 1 : 0);
    else if (key === "]") jumpBookmark(1);
    else if (key === "[") jumpBookmark(-1);
    else if (/^[1-9]$/.test(key)) isolate(Number(key) - 1);
    else if (key === "0" || key === "Escape") { state.pinned = -1; $("help").hidden = true; render(); }
    else if (key === "?") $("help").hidden = !$("help").hidden;
    else return;
    e.preventDefault();
  }

  // ------------------------------------------------------------------------------------------ start
  function init() {
    if (!registry.manifest) { showError(new Error("no data: data/manifest.js is missing or failed to load")); return; }
    if (typeof DecompressionStream === "undefined") { showError(new Error("this browser lacks DecompressionStream (use a current Chromium, Firefox or Safari)")); return; }
    buildSelectors();
    buildOutputs();
    buildLegend();
    bindControls();
    if (window.PolicyLensLive && window.PolicyLensLive.start()) return;  // live mode selects its own source
    if (manifest().trajectories.length) selectTrajectory(0);
    else readyResolve();
  }

  window.explorer = {
    get ready() { return state.ready; },
    get frame() { return state.frame; },
    get trajectory() { return state.traj; },
    get layer() { return layerInfo().name; },
    get output() { return outputInfo().name; },
    get playing() { return state.playing; },
    get isolated() { return isolated(); },
    get length() { return source ? source.length : 0; },
    get drawnFeatures() { return state.drawn.slice(); },
    get treeFrames() { return Object.keys((source && source.trees) || {}).map(Number).sort((x, y) => x - y); },
    get treeBox() { return state.treeBox ? state.treeBox.slice() : null; },
    get view() { return { ...(manifest().view || {}), predicted: Boolean(manifest().predicted) }; },
    get bookmarks() { return source ? (source.bookmarks || []).map((b) => ({ t: b.t, advantage: b.advantage })) : []; },
    whenReady,
    visibleFeatures,
    features: () => layerInfo().features.map((f) => f.label),
    setFrame, step, isolate, render,
    selectTrajectory, selectLayer: (name) => selectLayer(manifest().layers.findIndex((l) => l.name === name)),
    setPlaying,
    // for live.js: add a growing trajectory and redraw it
    internal: { state, sources, addSource, selectTrajectory, redrawTimeline, render, setFrame, manifest, el, showError,
      loadImage, inflate, current: () => source, buildTrajectoryPanel },
  };

  document.addEventListener("DOMContentLoaded", init);
})();
