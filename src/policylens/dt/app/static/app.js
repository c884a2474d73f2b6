// policylens decision-transformer app: draws each VIEW the server sends. Every string goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
// MiniGrid action indices (the env's, whatever the model calls them): 0 turn left, 1 turn right, 2 forward
const KEYS = { ArrowLeft: 0, ArrowRight: 1, ArrowUp: 2 };
const CELL_COLOURS = { red: "#e03131", green: "#2f9e44", blue: "#1c7ed6", purple: "#7048e8", yellow: "#f08c00", grey: "#868e96" };
const DIRS = [[1, 0], [0, 1], [-1, 0], [0, -1]]; // MiniGrid agent_dir: east, south, west, north

let info = null;      // /api/describe
let current = null;   // the last VIEW
let queue = Promise.resolve();
let autoplay = null;
let ended = null;     // the outcome of the move that ended an episode, shown until the next move or reset

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmt(x, digits = 2) { return (x >= 0 ? "+" : "") + Number(x).toFixed(digits); }

function showError(message) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
}

// Requests run one after another, in the order the user made them.
function request(path, body) {
  const run = async () => {
    const started = performance.now();
    const res = await fetch(path, body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) { showError(data.error || res.statusText); return null; }
    showError("");
    if (path !== "/api/describe") render(data, performance.now() - started, path);
    return data;
  };
  queue = queue.then(run, run);
  return queue;
}

// ------------------------------------------------------------------------------------------------ boards
function drawCell(ctx, code, x, y, s) {
  const [obj, colour] = code;
  const name = info.objects[obj] || "unseen";
  const hue = CELL_COLOURS[info.colours[colour]] || "#999";
  ctx.fillStyle = name === "unseen" ? "#000" : "#141414";
  ctx.fillRect(x * s, y * s, s, s);
  if (name === "wall") { ctx.fillStyle = "#6c6c6c"; ctx.fillRect(x * s, y * s, s, s); }
  else if (name === "goal") { ctx.fillStyle = CELL_COLOURS.green; ctx.fillRect(x * s + 2, y * s + 2, s - 4, s - 4); }
  else if (name === "lava") { ctx.fillStyle = "#ff7b00"; ctx.fillRect(x * s, y * s, s, s); }
  else if (name === "ball") { ctx.fillStyle = hue; ctx.beginPath(); ctx.arc((x + 0.5) * s, (y + 0.5) * s, s * 0.32, 0, 2 * Math.PI); ctx.fill(); }
  else if (name !== "empty" && name !== "unseen") { ctx.fillStyle = hue; ctx.fillRect(x * s + s / 4, y * s + s / 4, s / 2, s / 2); }
  ctx.strokeStyle = "#2a2a2a"; ctx.strokeRect(x * s, y * s, s, s);
}

function drawAgent(ctx, x, y, dir, s) {
  const [dx, dy] = DIRS[dir];
  const cx = (x + 0.5) * s, cy = (y + 0.5) * s, r = s * 0.38;
  ctx.fillStyle = "#e03131";
  ctx.beginPath();
  ctx.moveTo(cx + dx * r, cy + dy * r);
  ctx.lineTo(cx - dx * r - dy * r * 0.8, cy - dy * r + dx * r * 0.8);
  ctx.lineTo(cx - dx * r + dy * r * 0.8, cy - dy * r - dx * r * 0.8);
  ctx.closePath();
  ctx.fill();
}

function drawGrid(view) {
  const canvas = $("grid"), ctx = canvas.getContext("2d");
  const w = view.grid.length, h = view.grid[0].length, s = Math.floor(canvas.width / Math.max(w, h));
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) drawCell(ctx, view.grid[x][y], x, y, s);
  // the agent's 7x7 view: ahead along dir, 3 cells either side
  const { x: ax, y: ay, dir } = view.agent, [fx, fy] = DIRS[dir], [rx, ry] = [-fy, fx];
  ctx.fillStyle = "rgba(255, 255, 255, 0.12)";
  for (let a = 0; a < 7; a++) for (let b = -3; b <= 3; b++) {
    const cx = ax + fx * a + rx * b, cy = ay + fy * a + ry * b;
    if (cx >= 0 && cy >= 0 && cx < w && cy < h) ctx.fillRect(cx * s, cy * s, s, s);
  }
  drawAgent(ctx, ax, ay, dir, s);
}

// the state map's colours: blue where a cell pushes the preference's first action, red its second
function heat(v, top) {
  const a = Math.min(1, Math.abs(v) / top) * 0.7;
  return v >= 0 ? `rgba(43, 108, 176, ${a})` : `rgba(197, 48, 48, ${a})`;
}

function drawView(view) {
  const canvas = $("view"), ctx = canvas.getContext("2d");
  const n = view.view.length, s = Math.floor(canvas.width / n);
  for (let x = 0; x < n; x++) for (let y = 0; y < n; y++) drawCell(ctx, view.view[x][y], x, y, s);
  drawAgent(ctx, Math.floor(n / 2), n - 1, 3, s);
  const map = view.analysis.state_map, shown = Boolean(map) && $("show-map").checked;
  $("map-key").hidden = !shown;
  if (!shown) return;
  const top = Math.max(1e-6, ...map.cells.flat().map(Math.abs));
  for (let x = 0; x < n; x++) for (let y = 0; y < n; y++) {
    ctx.fillStyle = heat(map.cells[x][y], top);
    ctx.fillRect(x * s, y * s, s, s);
  }
  drawMapKey(view.analysis.contributions.preference, top);
}

// the key: the colour scale from -top to +top, and what each end means
function drawMapKey([a, b], top) {
  const bar = $("map-key-bar"), ctx = bar.getContext("2d");
  ctx.clearRect(0, 0, bar.width, bar.height);
  for (let i = 0; i < bar.width; i++) {
    ctx.fillStyle = heat(top * ((2 * i + 1) / bar.width - 1), top);
    ctx.fillRect(i, 0, 1, bar.height);
  }
  $("map-key-neg").textContent = `−${top.toFixed(3)} ${b}`;
  $("map-key-pos").textContent = `${a} +${top.toFixed(3)}`;
  $("map-key-note").textContent = `each cell's share of the state token's contribution to ${a} − ${b}: blue favours ${a}, red ${b}`;
}

// ------------------------------------------------------------------------------------------------ analysis
function drawPolicy(analysis) {
  const box = clear($("policy")), p = analysis.policy, u = analysis.unablated;
  info.action_names.forEach((name, a) => {
    const row = el("div", { class: "prob" + (a === p.preferred ? " preferred" : ""), "data-action": name });
    row.appendChild(el("span", { class: "name" }, name));
    const track = el("div", { class: "track" });
    const fill = el("div", { class: "fill" });
    fill.style.width = `${100 * p.probs[a]}%`;
    track.appendChild(fill);
    if (u) { const ghost = el("div", { class: "ghost" }); ghost.style.left = `${100 * u.probs[a]}%`; track.appendChild(ghost); }
    row.appendChild(track);
    row.appendChild(el("span", { class: "mono value" }, p.probs[a].toFixed(3)));
    box.appendChild(row);
  });
  const prefs = clear($("preferences"));
  p.preferences.forEach((q, i) => {
    const was = u ? ` (unablated ${fmt(u.preferences[i].value)})` : "";
    prefs.appendChild(el("div", { class: "preference", "data-pair": q.pair.join("-") },
      `${q.pair[0]} − ${q.pair[1]}: ${fmt(q.value)}${was}`));
  });
}

function drawAblation(analysis) {
  const box = $("ablation");
  if (!box.childElementCount) {
    info.components.forEach((name) => {
      const label = el("label", { class: "toggle" });
      const box_ = el("input", { type: "checkbox", "data-component": name });
      box_.addEventListener("change", () => request("/api/configure", { ablation: checkedComponents() }));
      label.appendChild(box_);
      label.appendChild(document.createTextNode(" " + name));
      box.appendChild(label);
    });
  }
  const on = new Set(analysis.ablation.components);
  box.querySelectorAll("input").forEach((i) => { i.checked = on.has(i.dataset.component); });
  $("mode").value = analysis.ablation.mode;
}

function checkedComponents() {
  return [...$("ablation").querySelectorAll("input:checked")].map((i) => i.dataset.component);
}

function drawPreferenceChoice(analysis) {
  const select = $("preference"), pref = analysis.contributions.preference.join("|");
  if (!select.childElementCount) {
    select.appendChild(el("option", { value: "" }, "the top two actions"));
    const names = info.action_names;
    names.forEach((a) => names.forEach((b) => { if (a !== b) select.appendChild(el("option", { value: `${a}|${b}` }, `${a} − ${b}`)); }));
  }
  if (select.value !== "") select.value = pref;
  select.title = `now: ${pref.replace("|", " − ")}`;
}

function drawContributions(analysis) {
  const c = analysis.contributions, table = clear($("contributions"));
  const head = el("tr");
  [`component (${c.preference[0]} − ${c.preference[1]})`, "", "value", ...info.action_names].forEach((h) => head.appendChild(el("th", {}, h)));
  table.appendChild(head);
  const top = Math.max(1e-6, ...c.on_preference.map(Math.abs));
  const ablated = new Set(analysis.ablation.components);
  c.components.forEach((name, i) => {
    const v = c.on_preference[i];
    const row = el("tr", { "data-component": name, class: ablated.has(name) ? "ablated" : "" });
    row.appendChild(el("td", {}, name));
    const cell = el("td", { class: "barcell" }), bar = el("div", { class: "cbar" }), half = el("div", { class: "half" });
    const width = 50 * Math.abs(v) / top;
    half.style.left = v >= 0 ? "50%" : `${50 - width}%`;
    half.style.width = `${width}%`;
    half.style.background = v >= 0 ? "var(--pos)" : "var(--neg)";
    bar.appendChild(half); bar.appendChild(el("div", { class: "mid" }));
    cell.appendChild(bar); row.appendChild(cell);
    row.appendChild(el("td", { class: "mono" }, fmt(v)));
    c.values[i].forEach((x) => row.appendChild(el("td", { class: "mono" }, fmt(x))));
    table.appendChild(row);
  });
  const total = el("tr");
  total.appendChild(el("th", {}, "logits"));
  total.appendChild(el("th"));
  total.appendChild(el("th", { class: "mono" }, fmt(c.on_preference.reduce((a, b) => a + b, 0))));
  analysis.policy.logits.forEach((x) => total.appendChild(el("th", { class: "mono" }, fmt(x))));
  table.appendChild(total);
}

function drawAttention(analysis) {
  const box = clear($("attention")), labels = analysis.tokens;
  analysis.attention.forEach(({ layer, head, pattern }) => {
    const fig = el("figure", { "data-head": `blocks.${layer}.attn.head${head}` });
    const table = el("table"), top = el("tr");
    top.appendChild(el("th"));
    labels.forEach((l) => top.appendChild(el("th", {}, l)));
    table.appendChild(top);
    pattern.forEach((row, q) => {
      const tr = el("tr");
      tr.appendChild(el("th", {}, labels[q] || q));
      row.forEach((v, k) => {
        const td = el("td", { title: `${labels[q]} → ${labels[k]}: ${v.toFixed(3)}` }, k <= q ? v.toFixed(2) : "");
        td.style.background = `rgba(43, 108, 176, ${v})`;
        td.style.color = v > 0.55 ? "#fff" : "#222";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    fig.appendChild(table);
    fig.appendChild(el("figcaption", {}, `blocks.${layer}.attn.head${head}`));
    box.appendChild(fig);
  });
}

// ------------------------------------------------------------------------------------------------ page
function render(view, roundTrip, path) {
  current = view;
  $("level").textContent = view.level;
  $("t").textContent = view.t;
  $("rtg-fed").textContent = view.rtg.toFixed(3);
  if (document.activeElement !== $("rtg")) $("rtg").value = view.target_rtg;
  $("rtg-slider").value = view.target_rtg;
  $("agent-pos").textContent = `agent (${view.agent.x}, ${view.agent.y}) facing ${["east", "south", "west", "north"][view.agent.dir]}`;
  $("agent-pos").dataset.state = `${view.agent.x},${view.agent.y},${view.agent.dir},${view.t},${view.level}`;
  $("latency").textContent = `analysis ${view.analysis.ms.toFixed(1)} ms · step ${view.ms.toFixed(1)} ms · round trip ${roundTrip.toFixed(0)} ms`;
  // an episode's end is news of the move that ended it: shown until the next move, reset or page load
  const last = view.last;
  if (path === "/api/act") ended = last && last.done ? { ...last.outcome, level: view.level } : null;
  else if (path !== "/api/configure") ended = null;
  const banner = $("banner");
  banner.hidden = !ended && !view.note;
  banner.dataset.kind = ended ? "end" : view.note ? "note" : "";
  banner.textContent = ended ? `Episode over: ${ended.cause} (return ${ended.return}) — level ${ended.level} now.` : view.note || "";
  const list = clear($("outcomes"));
  view.outcomes.forEach((o) => list.appendChild(el("li", {}, `level ${o.level}: ${o.cause}, return ${o.return}, ${o.length} steps (target RTG ${o.target_rtg})`)));
  drawGrid(view);
  drawView(view);
  drawPolicy(view.analysis);
  drawAblation(view.analysis);
  drawPreferenceChoice(view.analysis);
  drawContributions(view.analysis);
  drawAttention(view.analysis);
  document.body.dataset.ready = "1";
}

function act(action) { return request("/api/act", { action }); }

function toggleAutoplay() {
  if (autoplay) { clearInterval(autoplay); autoplay = null; }
  else autoplay = setInterval(() => act(null), 350);
  $("autoplay").textContent = autoplay ? "pause" : "play";
  $("autoplay").classList.toggle("on", !!autoplay);
}

function setRtg(value) {
  const v = Number(value);
  if (Number.isFinite(v)) request("/api/configure", { rtg: v });
}

async function start() {
  info = await request("/api/describe");
  if (!info) return;
  const c = info.model;
  $("model").textContent = `${c.layers} layer(s), ${c.heads} heads, d_model ${c.d_model}, context ${c.context}, ` +
    `${c.state_embedding} state embedding · ${info.env}`;
  const buttons = $("buttons");
  info.action_names.forEach((name, a) => {
    const b = el("button", { "data-action": name }, name);
    b.addEventListener("click", () => act(a));
    buttons.appendChild(b);
  });
  if (!info.mean_ablation) $("mode").querySelector('option[value="mean"]').disabled = true;
  $("model-act").addEventListener("click", () => act(null));
  $("autoplay").addEventListener("click", toggleAutoplay);
  $("restart").addEventListener("click", () => request("/api/reset", { level: null }));
  $("next").addEventListener("click", () => request("/api/reset", { level: current.level + 1 }));
  $("rtg").addEventListener("change", (e) => setRtg(e.target.value));
  $("rtg-slider").addEventListener("change", (e) => setRtg(e.target.value));
  $("mode").addEventListener("change", (e) => request("/api/configure", { mode: e.target.value }));
  $("preference").addEventListener("change", (e) => request("/api/configure", { preference: e.target.value ? e.target.value.split("|") : [] }));
  $("show-map").addEventListener("change", () => current && drawView(current));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "checkbox" || e.target.tagName === "SELECT") return;
    if (e.key in KEYS) act(KEYS[e.key]);
    else if (e.key === " ") act(null);
    else if (e.key === "p") toggleAutoplay();
    else if (e.key === "r") request("/api/reset", { level: null });
    else if (e.key === "n" && current) request("/api/reset", { level: current.level + 1 });
    else return;
    e.preventDefault();
  });
  await request("/api/view");
}

start();
