/* policylens explorer: drawing. Pure functions over plain arrays; no DOM lookups, no data strings shown.
 *
 * Attribution overlays follow Understanding RL Vision: each feature's map (one value per position of the
 * hidden layer) is upsampled, smoothed over nearby positions so that the area a blob covers shows its
 * strength, and drawn in the feature's colour with opacity min(1, gain * value).
 */
(function () {
  "use strict";

  const OVERLAY_TARGET = 64; // overlay pixels along the longer side (about the observation's resolution)
  const MAX_ALPHA = 0.9; // the observation always shows through a little

  function hexToRgb(hex) {
    const m = /^#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})$/.exec(hex || "");
    return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : [136, 136, 136];
  }

  /** Bilinear upsampling of one (gh, gw) map (values at cell centres) to (gh*cell, gw*cell). */
  function upsample(q, offset, gh, gw, cell, factor, out) {
    const rw = gw * cell, rh = gh * cell;
    const axis = (n, size) => {
      const i0 = new Int32Array(size), i1 = new Int32Array(size), w = new Float32Array(size);
      for (let p = 0; p < size; p++) {
        const g = Math.min(n - 1, Math.max(0, (p + 0.5) / cell - 0.5));
        i0[p] = Math.floor(g); i1[p] = Math.min(n - 1, i0[p] + 1); w[p] = g - i0[p];
      }
      return [i0, i1, w];
    };
    const [y0, y1, wy] = axis(gh, rh), [x0, x1, wx] = axis(gw, rw);
    for (let py = 0; py < rh; py++) {
      const r0 = offset + y0[py] * gw, r1 = offset + y1[py] * gw, a = wy[py];
      for (let px = 0; px < rw; px++) {
        const top = q[r0 + x0[px]] * (1 - wx[px]) + q[r0 + x1[px]] * wx[px];
        const bottom = q[r1 + x0[px]] * (1 - wx[px]) + q[r1 + x1[px]] * wx[px];
        out[py * rw + px] = (top * (1 - a) + bottom * a) * factor;
      }
    }
  }

  /** In-place separable Gaussian blur of a (h, w) field, zero outside; keeps the total mass inside. */
  function blur(field, w, h, sigma) {
    if (!(sigma > 0.3)) return field;
    const radius = Math.ceil(3 * sigma), kernel = new Float32Array(2 * radius + 1);
    let sum = 0;
    for (let i = -radius; i <= radius; i++) { kernel[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma)); sum += kernel[i + radius]; }
    for (let i = 0; i < kernel.length; i++) kernel[i] /= sum;
    const tmp = new Float32Array(field.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let k = -radius; k <= radius; k++) { const xx = x + k; if (xx >= 0 && xx < w) acc += field[y * w + xx] * kernel[k + radius]; }
        tmp[y * w + x] = acc;
      }
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let k = -radius; k <= radius; k++) { const yy = y + k; if (yy >= 0 && yy < h) acc += tmp[yy * w + x] * kernel[k + radius]; }
        field[y * w + x] = acc;
      }
    }
    return field;
  }

  /** The (n, h, w) maps in q as (n, w, h): each map's rows become its columns. */
  function transpose(q, n, h, w) {
    const out = new Uint8Array(n * h * w);
    for (let k = 0; k < n; k++) {
      const base = k * h * w;
      for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out[base + j * h + i] = q[base + i * w + j];
    }
    return out;
  }

  /**
   * Draw one sign's overlay of one frame into `canvas` (resized to the overlay resolution).
   * slice: {q: Uint8Array (S, F, gh, gw), scale, ref}: values are q / 255 * scale, shown relative to ref.
   * transposed: the maps are laid out [x, y] (MiniGrid's arrays) under an upright picture: drawn transposed.
   * Returns the features that put any colour on the canvas.
   */
  function drawOverlay(canvas, slice, sign, shape, visible, colors, gain, smooth, transposed) {
    let [S, F, gh, gw] = shape;
    if (transposed) {
      if (slice) slice = { ...slice, q: transpose(slice.q, S * F, gh, gw) };
      [gh, gw] = [gw, gh];
    }
    const cell = Math.max(1, Math.round(OVERLAY_TARGET / Math.max(gh, gw)));
    const rw = gw * cell, rh = gh * cell, n = rw * rh;
    if (canvas.width !== rw || canvas.height !== rh) { canvas.width = rw; canvas.height = rh; }
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(rw, rh);
    const drawn = [];
    if (slice && slice.ref > 0 && sign < S) {
      const acc = new Float32Array(n * 4), field = new Float32Array(n);
      const factor = slice.scale / slice.ref / 255;
      for (const f of visible) {
        if (f < 0 || f >= F) continue;
        const offset = (sign * F + f) * gh * gw;
        let any = false;
        for (let i = 0; i < gh * gw; i++) if (slice.q[offset + i] !== 0) { any = true; break; }
        if (!any) continue;
        upsample(slice.q, offset, gh, gw, cell, factor, field);
        blur(field, rw, rh, smooth * cell * 0.5);
        const [r, g, b] = hexToRgb(colors[f]);
        let used = false;
        for (let i = 0; i < n; i++) {
          const a = Math.min(1, gain * field[i]);
          if (a <= 0) continue;
          acc[4 * i] += a * r; acc[4 * i + 1] += a * g; acc[4 * i + 2] += a * b; acc[4 * i + 3] += a;
          used = used || a > 1 / 255;
        }
        if (used) drawn.push(f);
      }
      const px = image.data;
      for (let i = 0; i < n; i++) {
        const a = acc[4 * i + 3];
        if (a <= 0) continue;
        px[4 * i] = acc[4 * i] / a; px[4 * i + 1] = acc[4 * i + 1] / a; px[4 * i + 2] = acc[4 * i + 2] / a;
        px[4 * i + 3] = Math.round(255 * Math.min(MAX_ALPHA, a));
      }
    }
    ctx.putImageData(image, 0, 0);
    return drawn;
  }

  /** Draw frame t of a trajectory (a sprite sheet or one image per frame) over the whole canvas. */
  function drawFrame(canvas, source, t, width, height) {
    const ctx = canvas.getContext("2d");
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, width, height);
    const tile = source.tile(t);
    if (tile) ctx.drawImage(tile.image, tile.sx, tile.sy, tile.w, tile.h, 0, 0, width, height);
  }

  const TIMELINE_HEIGHT = 200;
  const ROWS = { film: [0, 36], value: [36, 56], probs: [92, 44], action: [136, 12], advantage: [148, 48] };

  /** The frame under x (CSS pixels from the timeline's left edge). */
  function frameFromX(x, width, length) {
    return Math.min(length - 1, Math.max(0, Math.floor((x / width) * length)));
  }

  /** The timeline's static part: filmstrip, value, stacked action probabilities, sampled action, advantage. */
  function drawTimeline(canvas, cssW, source, actionColors) {
    const dpr = window.devicePixelRatio || 1, cssH = TIMELINE_HEIGHT;
    canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const T = source.length;
    if (!T) return;
    const xOf = (t) => (t / T) * cssW, colW = cssW / T;
    // filmstrip: compressed observations
    const [fy, fh] = ROWS.film, tile0 = source.tile(0);
    if (tile0) {
      const thumbW = Math.max(8, fh * (tile0.w / tile0.h)), count = Math.max(1, Math.floor(cssW / thumbW));
      ctx.imageSmoothingEnabled = true;
      for (let i = 0; i < count; i++) {
        const t = Math.min(T - 1, Math.floor(((i + 0.5) / count) * T)), tile = source.tile(t);
        if (tile) ctx.drawImage(tile.image, tile.sx, tile.sy, tile.w, tile.h, (i * cssW) / count, fy + 2, cssW / count - 1, fh - 4);
      }
    }
    // value curve
    const [vy, vh] = ROWS.value, values = source.value;
    let lo = Infinity, hi = -Infinity;
    for (let t = 0; t < T; t++) { lo = Math.min(lo, values[t]); hi = Math.max(hi, values[t]); }
    const pad = (hi - lo) * 0.1 || 0.5;
    lo -= pad; hi += pad;
    ctx.strokeStyle = "#2b6cb0"; ctx.lineWidth = 1.5; ctx.beginPath();
    for (let t = 0; t < T; t++) {
      const x = xOf(t + 0.5), y = vy + vh - ((values[t] - lo) / (hi - lo)) * vh;
      if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
    // action probabilities, stacked; the sampled action below
    const [py, ph] = ROWS.probs, [ay, ah] = ROWS.action;
    for (let t = 0; t < T; t++) {
      let y = py + ph;
      const p = source.probs[t] || [];
      for (let a = 0; a < p.length; a++) {
        const hgt = p[a] * ph;
        ctx.fillStyle = actionColors[a % actionColors.length];
        ctx.fillRect(xOf(t), y - hgt, Math.max(colW, 0.5), hgt);
        y -= hgt;
      }
      const act = source.action[t];
      if (act !== undefined && act !== null && act >= 0) {
        ctx.fillStyle = actionColors[act % actionColors.length];
        ctx.fillRect(xOf(t), ay + 1, Math.max(colW, 0.5), ah - 2);
      }
    }
    // advantage bars around zero, rewards and episode ends as ticks
    const [gy, gh] = ROWS.advantage, adv = source.advantages;
    let most = 1e-9;
    for (let t = 0; t < T; t++) most = Math.max(most, Math.abs(adv[t] || 0));
    const mid = gy + gh / 2;
    ctx.fillStyle = "#ccc"; ctx.fillRect(0, mid, cssW, 0.5);
    for (let t = 0; t < T; t++) {
      const a = adv[t] || 0, hgt = (Math.abs(a) / most) * (gh / 2 - 2);
      ctx.fillStyle = a >= 0 ? "#2f855a" : "#c53030";
      ctx.fillRect(xOf(t), a >= 0 ? mid - hgt : mid, Math.max(colW, 0.5), hgt);
      if (source.reward[t]) { ctx.fillStyle = "#d69e2e"; ctx.fillRect(xOf(t), gy, Math.max(colW, 1.5), 4); }
      if (source.done[t]) { ctx.fillStyle = "#000"; ctx.fillRect(xOf(t + 1) - 1, vy, 1, gy + gh - vy); }
    }
    // bookmarks: triangles over the value row
    for (const b of source.bookmarks || []) {
      const x = xOf(b.t + 0.5);
      ctx.fillStyle = b.advantage >= 0 ? "#2f855a" : "#c53030";
      ctx.beginPath(); ctx.moveTo(x - 4, vy); ctx.lineTo(x + 4, vy); ctx.lineTo(x, vy + 7); ctx.fill();
    }
  }

  /** The playhead at frame t over a copy of the static timeline `base` (an offscreen canvas). */
  function drawPlayhead(canvas, base, t, length) {
    const ctx = canvas.getContext("2d"), dpr = window.devicePixelRatio || 1;
    if (canvas.width !== base.width || canvas.height !== base.height) { canvas.width = base.width; canvas.height = base.height; }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(base, 0, 0);
    if (!length) return;
    const x = ((t + 0.5) / length) * canvas.width;
    ctx.fillStyle = "rgba(0, 0, 0, 0.75)";
    ctx.fillRect(Math.round(x - dpr), 0, Math.max(1, Math.round(2 * dpr)), canvas.height);
  }

  window.PolicyLensRender = { drawOverlay, transpose, drawFrame, drawTimeline, drawPlayhead, frameFromX, hexToRgb, blur, upsample };
})();
