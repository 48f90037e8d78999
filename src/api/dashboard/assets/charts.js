// graywatch charts: line charts, a latency heatmap and sparklines on <canvas>, without a
// library. Each chart owns one canvas and redraws it in place when given new data, so a page
// that refreshes every second keeps the same nodes and buffers for as long as it is open.
// A canvas carries `data-points` (how many values it drew) and an `aria-label` in words.
"use strict";
(function () {
  // Theme colours, read once: reading a computed style after the page changed its DOM forces
  // a style recalculation, and a table of a thousand rows draws two thousand sparklines a
  // second. Forgotten when the colour scheme changes.
  const colours = new Map();
  // Counts colour-scheme changes, so that sparklines drawn in the old colours draw again.
  let theme = 0;
  const css = (name) => {
    let v = colours.get(name);
    if (v === undefined) {
      v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
      if (v) colours.set(name, v);
    }
    return v;
  };
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      colours.clear();
      theme++;
    });
  }

  // Sizes the canvas backing store to its CSS box (times the device pixel ratio) and returns
  // a 2D context in CSS pixels, or null while the canvas is not laid out.
  function prepare(canvas, size) {
    const dpr = window.devicePixelRatio || 1;
    const { w, h } = size || { w: canvas.clientWidth, h: canvas.clientHeight };
    if (!w || !h) return null;
    const bw = Math.round(w * dpr), bh = Math.round(h * dpr);
    if (canvas.width !== bw || canvas.height !== bh) { canvas.width = bw; canvas.height = bh; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  // A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmtAxis(v, unit) {
    if (unit === "%") return (v * 100).toFixed(v * 100 < 1 && v > 0 ? 2 : v * 100 < 10 ? 1 : 0) + " %";
    if (unit === "ms") return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + " s" : (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms";
    if (unit === "/s") return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " /s";
    return String(v);
  }

  function fmtTick(ms, spanMs) {
    const d = new Date(ms);
    if (spanMs > 2 * 86400000) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  const PAD = { l: 62, r: 10, t: 10, b: 22 };

  function axes(ctx, w, h, xs, yMax, unit) {
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = css("--muted");
    ctx.strokeStyle = css("--line");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      const y = PAD.t + (h - PAD.t - PAD.b) * (1 - i / 4);
      ctx.beginPath(); ctx.moveTo(PAD.l, Math.round(y) + 0.5); ctx.lineTo(w - PAD.r, Math.round(y) + 0.5); ctx.stroke();
      ctx.fillText(fmtAxis(v, unit), PAD.l - 6, y);
    }
    if (xs.length > 1) {
      const span = xs[xs.length - 1] - xs[0];
      const n = Math.max(2, Math.min(6, Math.floor((w - PAD.l) / 110)));
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (let i = 0; i < n; i++) {
        const t = xs[0] + (span * i) / (n - 1);
        const x = PAD.l + ((w - PAD.l - PAD.r) * i) / (n - 1);
        ctx.fillText(fmtTick(t, span), Math.min(Math.max(x, PAD.l + 20), w - 30), h - PAD.b + 5);
      }
    }
  }

  // A time chart of several lines sharing one y axis. `series`: [{label, color (a CSS
  // variable), dash}]; `setData(xs, ys)` with ys[i] the values of series i (null: no data).
  class LineChart {
    constructor(canvas, { series, unit }) {
      this.canvas = canvas; this.series = series; this.unit = unit;
      this.xs = []; this.ys = [];
    }
    setData(xs, ys) { this.xs = xs; this.ys = ys; this.draw(); }
    draw() {
      const c = prepare(this.canvas);
      if (!c) return;
      const { ctx, w, h } = c;
      let max = 0, points = 0;
      for (const s of this.ys) for (const v of s) if (v != null && isFinite(v)) { max = Math.max(max, v); points++; }
      const yMax = niceMax(max * 1.05);
      axes(ctx, w, h, this.xs, yMax, this.unit);
      const x0 = this.xs[0], span = Math.max(1, this.xs[this.xs.length - 1] - x0);
      const X = (t) => PAD.l + ((w - PAD.l - PAD.r) * (t - x0)) / span;
      const Y = (v) => PAD.t + (h - PAD.t - PAD.b) * (1 - v / yMax);
      this.series.forEach((s, i) => {
        const vals = this.ys[i] || [];
        ctx.strokeStyle = css(s.color); ctx.fillStyle = ctx.strokeStyle;
        ctx.lineWidth = s.width || 1.6;
        ctx.setLineDash(s.dash ? [5, 4] : []);
        ctx.beginPath();
        let pen = false;
        vals.forEach((v, j) => {
          if (v == null || !isFinite(v)) { pen = false; return; }
          const x = X(this.xs[j]), y = Y(v);
          if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
          pen = true;
          const lone = (j === 0 || vals[j - 1] == null) && (j === vals.length - 1 || vals[j + 1] == null);
          if (lone) ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
        });
        ctx.stroke();
      });
      ctx.setLineDash([]);
      this.canvas.dataset.points = String(points);
      const last = this.series.map((s, i) => {
        const v = (this.ys[i] || []).filter((x) => x != null).pop();
        return s.label + " " + (v == null ? "no data" : fmtAxis(v, this.unit));
      });
      this.canvas.setAttribute("aria-label", "Latest: " + last.join(", "));
    }
  }

  // Calls per latency band over time: darker cells hold more calls (log scale).
  class Heatmap {
    constructor(canvas) { this.canvas = canvas; this.xs = []; this.bounds = []; this.counts = []; }
    setData(xs, bounds, counts) { this.xs = xs; this.bounds = bounds; this.counts = counts; this.draw(); }
    draw() {
      const c = prepare(this.canvas);
      if (!c) return;
      const { ctx, w, h } = c;
      const bands = Math.max(0, this.bounds.length - 1);
      let max = 0, cells = 0;
      for (const row of this.counts) for (const n of row) { if (n > max) max = n; if (n > 0) cells++; }
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = css("--muted");
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      const ih = h - PAD.t - PAD.b, iw = w - PAD.l - PAD.r;
      axes(ctx, w, h, this.xs, 1, "none-y");
      ctx.clearRect(0, 0, PAD.l - 1, h - PAD.b);
      ctx.fillStyle = css("--muted"); ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (let i = 0; i <= bands; i += Math.max(1, Math.floor(bands / 4))) {
        const y = PAD.t + ih * (1 - i / Math.max(1, bands));
        ctx.fillText(fmtAxis(this.bounds[i], "ms"), PAD.l - 6, y);
      }
      const rgb = css("--heat");
      const cw = iw / Math.max(1, this.counts.length), ch = ih / Math.max(1, bands);
      const lmax = Math.log1p(max);
      this.counts.forEach((row, j) => {
        row.forEach((n, b) => {
          if (!n) return;
          ctx.fillStyle = `rgba(${rgb}, ${(0.12 + 0.88 * Math.log1p(n) / lmax).toFixed(3)})`;
          ctx.fillRect(PAD.l + j * cw, PAD.t + ih - (b + 1) * ch, Math.ceil(cw), Math.ceil(ch));
        });
      });
      this.canvas.dataset.points = String(cells);
      this.canvas.setAttribute("aria-label", `Latency heatmap: ${cells} cells with calls, from ${fmtAxis(this.bounds[0] || 0, "ms")} to ${fmtAxis(this.bounds[bands] || 0, "ms")}`);
    }
  }

  // The CSS size of every sparkline (`canvas.spark` has a fixed one), read from the first
  // sparkline drawn: reading each canvas's size after the previous one resized its backing
  // store would lay the page out once per sparkline.
  let sparkSize = null;
  window.addEventListener("resize", () => { sparkSize = null; });

  // Sparklines are drawn only while on screen (or near it): an overview of a thousand rows
  // shows a few dozen at a time, and each refresh would otherwise redraw two thousand
  // canvases. One that scrolls into view draws its latest data then.
  const sparkOf = new WeakMap();
  const onScreen = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        const s = sparkOf.get(e.target);
        if (!s) continue;
        s.visible = e.isIntersecting;
        if (s.visible) s.draw();
      }
    }, { rootMargin: "300px 0px" })
    : null;

  // A small line without axes; `reference` draws a dashed level (the baseline).
  class Sparkline {
    constructor(canvas, color) {
      this.canvas = canvas; this.color = color;
      this.values = []; this.reference = null; this.drawn = null;
      this.visible = !onScreen;
      if (onScreen) { sparkOf.set(canvas, this); onScreen.observe(canvas); }
    }
    setData(values, reference) {
      this.values = values; this.reference = reference;
      if (this.visible) this.draw();
    }
    // Draws the data unless the canvas already shows it: most rows of a large overview do
    // not change from one second to the next.
    draw() {
      const { values, reference } = this;
      const key = values.join(",") + "|" + (reference ?? "") + "|" + (window.devicePixelRatio || 1) + "|" + theme;
      if (key === this.drawn) return;
      if (!sparkSize) {
        const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
        if (!w || !h) return;
        sparkSize = { w, h };
      }
      const c = prepare(this.canvas, sparkSize);
      if (!c) return;
      this.drawn = key;
      const { ctx, w, h } = c;
      let max = reference || 0, points = 0;
      for (const v of values) if (v != null) { if (v > max) max = v; points++; }
      max = max > 0 ? max * 1.1 : 1;
      const X = (i) => 1 + ((w - 2) * i) / Math.max(1, values.length - 1);
      const Y = (v) => h - 2 - (h - 4) * (v / max);
      if (reference) {
        ctx.strokeStyle = css("--muted"); ctx.lineWidth = 1; ctx.setLineDash([3, 3]);
        ctx.beginPath(); ctx.moveTo(0, Y(reference)); ctx.lineTo(w, Y(reference)); ctx.stroke();
        ctx.setLineDash([]);
      }
      ctx.strokeStyle = css(this.color); ctx.fillStyle = ctx.strokeStyle; ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        if (pen) ctx.lineTo(X(i), Y(v)); else ctx.moveTo(X(i), Y(v));
        pen = true;
      });
      ctx.stroke();
      const last = values.length ? values[values.length - 1] : null;
      if (last != null) ctx.fillRect(X(values.length - 1) - 1.5, Y(last) - 1.5, 3, 3);
      this.canvas.dataset.points = String(points);
    }
  }

  window.GWCharts = { LineChart, Heatmap, Sparkline, fmtAxis };
})();
