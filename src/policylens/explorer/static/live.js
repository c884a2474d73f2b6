/* policylens explorer: live mode (page served by `policylens explore RUN --serve`; does nothing from disk).
 *
 * A "live play" trajectory grows one frame per step: the user presses an action (arrow keys or the action
 * buttons) or lets the agent act; the server plays the env and sends the new frame with its value, policy
 * and attribution maps, which are drawn like a recorded trajectory's, and its value's saliency tree. Action maps
 * are for the agent's most probable action at that frame.
 */
(function () {
  "use strict";
  if (document.body.dataset.mode !== "live") return;

  const $ = (id) => document.getElementById(id);
  const X = () => window.explorer.internal;
  const ARROWS = { ArrowLeft: ["left"], ArrowRight: ["right"], ArrowUp: ["up", "forward"], ArrowDown: ["down"] };
  let live = null, busy = false, auto = false, episode = 0, lastCause = "";

  function newSource() {
    return {
      id: "live", length: 0, value: [], probs: [], action: [], reward: [], done: [], advantages: [], bookmarks: [],
      info: { episode: "live" }, images: [], perFrame: [], refs: {}, maps: new Map(), trees: {},
      outputLabels: { action: "most probable action's logit (live)" },
      tile(t) {
        const img = this.images[t];
        return img ? { image: img, sx: 0, sy: 0, w: img.naturalWidth, h: img.naturalHeight } : null;
      },
      mapSlice(layer, output, t) {
        const o = ((this.perFrame[t] || [])[layer] || {})[output];
        if (!o) return null;
        return { q: o.q, scale: o.scale, ref: this.refs[layer + "/" + output] || o.scale, totals: o.totals };
      },
    };
  }

  async function addFrame(frame) {
    if (typeof frame.image !== "string" || !frame.image.startsWith("data:image/png;base64,")) throw new Error("live frame without a PNG image");
    const image = await X().loadImage(frame.image);
    const maps = [];
    for (const [j, layerMaps] of frame.maps.entries()) {
      const decoded = {};
      for (const [name, o] of Object.entries(layerMaps)) {
        decoded[name] = { q: await X().inflate(o.data), scale: o.scale, totals: o.totals };
        const key = j + "/" + name;
        live.refs[key] = Math.max(live.refs[key] || 0, o.scale);  // shown relative to the largest so far
      }
      maps.push(decoded);
    }
    if (frame.tree) live.trees[String(live.length)] = frame.tree;
    live.images.push(image); live.perFrame.push(maps);
    live.value.push(frame.value); live.probs.push(frame.probs); live.action.push(-1);
    live.reward.push(0); live.done.push(0); live.advantages.push(0);
    live.length += 1;
    episode = frame.episode;
  }

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function show() {
    X().state.frame = live.length - 1;
    X().buildTrajectoryPanel();
    X().redrawTimeline();
    X().render();
    const t = live.length - 1, names = X().manifest().action_names || [];
    const last = t > 0 ? live.action[t - 1] : -1;
    $("live-status").textContent = "episode " + episode + "  step " + t +
      (last >= 0 ? "  last action " + (names[last] !== undefined ? names[last] : last) + "  reward " + live.reward[t - 1] : "") +
      (lastCause ? "  (previous episode ended: " + lastCause + ")" : "");
  }

  async function run(task) {
    if (busy) return false;
    busy = true;
    try { await task(); return true; } catch (err) { X().showError(err); auto = false; return false; } finally { busy = false; }
  }

  function act(action) {  // action index, or null: the agent samples from its policy
    return run(async () => {
      const data = await post("/api/live/step", { action });
      const taken = data.taken;
      live.action[taken.t] = taken.action; live.reward[taken.t] = taken.reward; live.done[taken.t] = taken.done ? 1 : 0;
      if (taken.done) lastCause = String(taken.cause || "ended");
      await addFrame(data.frame);
      if (X().current() === live) show();
    });
  }

  function reset() {
    return run(async () => {
      const data = await post("/api/live/reset", {});
      live = newSource();
      X().sources.set("live", live);
      X().state.treeKey = null;  // frame 0 of the new episode is not the old one's
      await addFrame(data.frame);
      await X().selectTrajectory("live");
      show();
    });
  }

  async function autoplay(on) {
    auto = on;
    $("live-auto").classList.toggle("on", auto);
    while (auto) {
      if (!(await act(null))) break;
      await new Promise((resolve) => setTimeout(resolve, 1000 / (X().state.fps || 10)));
    }
  }

  function buildButtons() {
    const row = $("live-actions");
    row.replaceChildren();
    (X().manifest().action_names || []).forEach((name, a) => {
      const b = X().el("button", "", name);
      b.type = "button";
      b.addEventListener("click", () => act(a));
      row.appendChild(b);
    });
    $("live-reset").addEventListener("click", () => reset());
    $("live-agent").addEventListener("click", () => act(null));
    $("live-auto").addEventListener("click", () => autoplay(!auto));
  }

  window.PolicyLensLive = {
    start() {
      $("live").hidden = false;
      buildButtons();
      live = newSource();
      X().addSource("live", "live play", live);
      reset();
      return true;
    },
    onKey(e) {
      if (!live || X().current() !== live) return false;
      const names = (X().manifest().action_names || []).map((n) => String(n).toLowerCase());
      if (ARROWS[e.key]) {
        const a = names.findIndex((n) => ARROWS[e.key].includes(n));
        if (a >= 0) { act(a); return true; }
        return false;
      }
      if (e.key === "a") { act(null); return true; }
      if (e.key === "p") { autoplay(!auto); return true; }
      return false;
    },
    act, reset, autoplay,
    get busy() { return busy; },
  };
})();
