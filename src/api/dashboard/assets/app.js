// graywatch dashboard: one script for every page. The path names the page; each page builds
// its DOM once, then `refresh` reads the JSON API every second and updates the same nodes
// (rows are kept in maps by name or id, charts redraw their own canvas), so an open page
// neither reloads nor grows.
"use strict";
(function () {
  const POLL_MS = 1000;
  const SLOW_POLL_MS = 15000;

  // ---------------------------------------------------------------------------------------
  // DOM and formatting helpers
  // ---------------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c != null) el.append(c);
    return el;
  }
  const setText = (el, t) => { if (el.textContent !== t) el.textContent = t; };
  const setAttr = (el, name, v) => { if (el.getAttribute(name) !== v) el.setAttribute(name, v); };

  const fmtMs = (v) => v == null ? "–" : v >= 10000 ? (v / 1000).toFixed(1) + " s" : v >= 100 ? v.toFixed(0) + " ms" : v >= 10 ? v.toFixed(1) + " ms" : v.toFixed(2) + " ms";
  const fmtPct = (v) => v == null ? "–" : v === 0 ? "0 %" : v * 100 < 0.01 ? "<0.01 %" : (v * 100).toFixed(v * 100 < 10 ? 2 : 1) + " %";
  const fmtRate = (v) => v == null ? "–" : (v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : v.toFixed(0)) + " /s";
  const fmtRatio = (v) => v == null || !isFinite(v) ? "" : "×" + (v < 10 ? v.toFixed(1) : v.toFixed(0));
  const words = (s) => String(s == null ? "unknown" : s).replace(/_/g, " ");

  const toMs = (t) => typeof t === "number" ? t : Date.parse(t);
  const utc = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const local = (ms) => new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  // A <time> in the viewer's zone, with UTC on hover.
  function timeEl(t) {
    if (t == null) return h("span", { class: "muted", text: "–" });
    const ms = toMs(t);
    return h("time", { datetime: new Date(ms).toISOString(), title: utc(ms), text: local(ms) });
  }
  function setTime(el, t) {
    const ms = toMs(t);
    const iso = new Date(ms).toISOString();
    if (el.getAttribute("datetime") === iso) return;
    el.setAttribute("datetime", iso); el.title = utc(ms); el.textContent = local(ms);
  }
  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // Health, alert and breaker states: the word always, a colour and a symbol beside it.
  function setBadge(el, state, prefix) {
    const cls = "health " + String(state || "unknown").replace(/[^a-z_]/gi, "");
    if (el.className !== cls) el.className = cls;
    setText(el, (prefix || "") + words(state));
  }
  const badge = (state, prefix) => { const el = h("span"); setBadge(el, state, prefix); return el; };

  class HttpError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
  // With authentication on, a page opened with a session cookie carries the session's CSRF
  // value; requests that change state send it back (another site cannot read it).
  const csrfMeta = document.querySelector('meta[name="graywatch-csrf"]');
  const CSRF = csrfMeta ? csrfMeta.content : null;
  async function api(path, opts) {
    const o = Object.assign({}, opts);
    o.headers = Object.assign({ accept: "application/json" }, CSRF ? { "x-graywatch-csrf": CSRF } : {}, (opts && opts.headers) || {});
    const resp = await fetch(path, o);
    if (resp.status === 401) { showSignIn(); throw new HttpError(401, "signed out: sign in to go on"); }
    if (resp.status === 204) return null;
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!resp.ok) throw new HttpError(resp.status, (body && body.error) || resp.status + " " + resp.statusText);
    return body;
  }
  const send = (method, path, body) => api(path, { method, headers: { "content-type": "application/json" }, body: body == null ? undefined : JSON.stringify(body) });

  // The session ended (or never began): the sign-in form, posting the token to /session,
  // which sets the cookie and brings the browser back here.
  let signingIn = false;
  function showSignIn() {
    if (signingIn) return;
    signingIn = true;
    markNav("");
    document.title = "Sign in · graywatch";
    const main = document.getElementById("main");
    main.replaceChildren(h("h1", { text: "Sign in" }),
      h("p", { class: "muted", text: "graywatch needs a token with the read scope. The browser keeps a session cookie, not the token." }),
      h("form", { id: "signin", class: "inline panel", method: "post", action: "/session" },
        h("label", {}, "Token", h("input", { type: "password", name: "token", autocomplete: "current-password", required: true })),
        h("input", { type: "hidden", name: "next", value: location.pathname + location.search }),
        h("button", { type: "submit", class: "primary", text: "Sign in" })));
  }
  const enc = encodeURIComponent;

  // Keyed rows: creates a row for a new key, updates existing ones, puts them in the given
  // order (moving only rows out of place) and drops rows whose key is gone. `draw`, when
  // given, paints a row's canvases after every row's text is written: a canvas reads its
  // laid-out size, and reading a layout between writes would lay out the table once per row.
  class Rows {
    constructor(tbody, create, update, draw) { this.tbody = tbody; this.create = create; this.update = update; this.draw = draw; this.map = new Map(); }
    sync(items, keyOf) {
      this.place(items, keyOf);
      if (this.draw) for (const item of items) this.draw(this.map.get(keyOf(item)), item);
    }
    place(items, keyOf) {
      const seen = new Set();
      let i = 0;
      for (const item of items) {
        const key = keyOf(item);
        seen.add(key);
        let row = this.map.get(key);
        if (!row) { row = this.create(item); this.map.set(key, row); }
        this.update(row, item);
        if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
        i++;
      }
      for (const [key, row] of this.map) if (!seen.has(key)) { row.tr.remove(); this.map.delete(key); }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Polling
  // ---------------------------------------------------------------------------------------

  const live = document.getElementById("live");
  let refreshes = 0;
  // Runs `page.refresh` every second, never two at once; the status line says when the data
  // was last read, or that reading failed.
  async function poll(page) {
    for (;;) {
      const started = Date.now();
      try {
        await page.refresh();
        refreshes++;
        document.body.dataset.refreshes = String(refreshes);
        // How long the last refresh took (request, rows, charts), read by the benchmark.
        document.body.dataset.refreshMs = (Date.now() - started).toFixed(0);
        live.classList.remove("stale");
        setText(live, "Live · updated " + new Date().toLocaleTimeString());
        live.title = "Refreshes every second";
      } catch (e) {
        live.classList.add("stale");
        setText(live, "Not updating: " + e.message);
        if (e.status === 401) return;
      }
      await new Promise((r) => setTimeout(r, Math.max(100, POLL_MS - (Date.now() - started))));
    }
  }

  const main = document.getElementById("main");
  function markNav(which) {
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.nav === which) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Overview: every dependency, worst first
  // ---------------------------------------------------------------------------------------

  function overviewPage() {
    markNav("overview");
    document.title = "Dependencies · graywatch";
    const filter = h("input", { type: "search", id: "filter", placeholder: "name contains…", "aria-describedby": "counts" });
    const counts = h("p", { id: "counts", class: "muted", "aria-live": "polite" });
    const tbody = h("tbody");
    const cols = [["Dependency"], ["Health"], ["Breaker"], ["Calls", "num"], ["Errors", "num"], ["Timeouts", "num"], ["p50", "num"], ["p99", "num"], ["Baseline p99", "num"], ["p99, 15 min"], ["Errors, 15 min"], ["Firing", "num"]];
    main.replaceChildren(
      h("h1", { text: "Dependencies" }),
      h("div", { class: "toolbar" }, h("label", { for: "filter", text: "Filter" }), filter, counts),
      h("div", { class: "scroll" }, h("table", { id: "overview" },
        h("caption", { class: "muted", style: "text-align:left", text: "Last minute; latencies are of successful calls; sorted worst first: failing, degraded, then by distance from the baseline." }),
        h("thead", {}, h("tr", {}, cols.map(([t, c]) => h("th", { class: c, scope: "col", text: t })))),
        tbody)));
    let last = [];
    const rows = new Rows(tbody, (d) => {
      const cell = (cls) => h("td", { class: cls });
      const r = { name: cell(), health: badge("unknown"), breaker: badge("closed"), calls: cell("num"), err: cell("num"), tmo: cell("num"), p50: cell("num"), p99: cell("num"), base: cell("num"), firing: cell("num") };
      r.link = h("a", { href: "/dependencies/" + enc(d.name), text: d.name });
      r.name.append(r.link);
      const sp = h("canvas", { class: "spark", role: "img" }), se = h("canvas", { class: "spark", role: "img" });
      r.sparkP99 = new GWCharts.Sparkline(sp, "--c1");
      r.sparkErr = new GWCharts.Sparkline(se, "--c4");
      r.spCanvas = sp; r.seCanvas = se;
      r.tr = h("tr", { "data-name": d.name }, r.name, h("td", {}, r.health), h("td", {}, r.breaker), r.calls, r.err, r.tmo, r.p50, r.p99, r.base, h("td", {}, sp), h("td", {}, se), r.firing);
      return r;
    }, (r, d) => {
      const s = d.stats;
      setBadge(r.health, d.health.state);
      setBadge(r.breaker, d.breaker, d.breaker_forced ? "forced " : "");
      setText(r.calls, fmtRate(s.rate_per_s));
      setText(r.err, fmtPct(s.error_rate));
      setText(r.tmo, fmtPct(s.timeout_rate));
      setText(r.p50, fmtMs(s.p50));
      setText(r.p99, fmtMs(s.p99));
      const b = d.baseline;
      const ratio = b && s.p99 != null ? s.p99 / b.p99 : null;
      setText(r.base, b ? fmtMs(b.p99) + (ratio ? " (now " + fmtRatio(ratio) + ")" : "") : "learning");
      r.base.classList.toggle("worse", ratio != null && ratio >= 1.5);
      setText(r.firing, String(d.firing));
      r.firing.classList.toggle("worse", d.firing > 0);
      setAttr(r.spCanvas, "aria-label", "p99 over 15 minutes, now " + fmtMs(s.p99));
      setAttr(r.seCanvas, "aria-label", "error rate over 15 minutes, now " + fmtPct(s.error_rate));
    }, (r, d) => {
      r.sparkP99.setData(d.spark.p99, d.baseline ? d.baseline.p99 : null);
      r.sparkErr.setData(d.spark.error_rate, null);
    });
    const applyFilter = () => {
      const q = filter.value.trim().toLowerCase();
      let shown = 0;
      for (const [name, r] of rows.map) { const hide = q !== "" && !name.toLowerCase().includes(q); r.tr.hidden = hide; if (!hide) shown++; }
      const by = (st) => last.filter((d) => d.health.state === st).length;
      setText(counts, `${last.length} dependencies (${by("failing")} failing, ${by("degraded")} degraded)` + (q ? `; ${shown} match “${filter.value.trim()}”` : ""));
    };
    filter.addEventListener("input", applyFilter);
    let first = true;
    return {
      async refresh() {
        const t0 = performance.now();
        const data = await api("/v1/overview");
        const t1 = performance.now();
        last = data.dependencies;
        rows.sync(last, (d) => d.name);
        applyFilter();
        if (first) {
          first = false;
          // Measured for BENCHMARKS.md: the request, and building and drawing every row.
          window.__gwFirstRender = { fetch_ms: t1 - t0, render_ms: performance.now() - t1, rows: last.length };
        }
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // Dependency page
  // ---------------------------------------------------------------------------------------

  // Breaker changes shown on a dependency's page (graywatch keeps up to 100).
  const HISTORY_SHOWN = 20;
  const RANGES = { "10m": [600000, "1m"], "1h": [3600000, "1m"], "6h": [21600000, "5m"], "24h": [86400000, "15m"], "7d": [604800000, "2h"] };

  function chartBox(id, title, series, unit) {
    const canvas = h("canvas", { id, role: "img" });
    const legend = h("div", { class: "legend" }, series.map((s) => h("span", { class: s.dash ? "dash" : null, style: `--k: var(${s.color})`, text: s.label })));
    const box = h("div", { class: "panel chart" }, h("figure", {}, h("figcaption", { text: title }), canvas, legend));
    return { box, chart: new GWCharts.LineChart(canvas, { series, unit }) };
  }

  function peerTable(kind) {
    const tbody = h("tbody");
    const table = h("table", { id: kind },
      h("thead", {}, h("tr", {}, [kind === "instances" ? "Instance" : "Zone", "Health", "Calls", "Errors", "Timeouts", "p50", "p99", "p99, 15 min", "Stands out"].map((t, i) => h("th", { scope: "col", class: i >= 2 && i <= 6 ? "num" : null, text: t })))),
      tbody);
    const rows = new Rows(tbody, (p) => {
      const cell = (cls) => h("td", { class: cls });
      const r = { name: cell(), health: badge("healthy"), calls: cell("num"), err: cell("num"), tmo: cell("num"), p50: cell("num"), p99: cell("num"), why: cell("wrap") };
      const c = h("canvas", { class: "spark", role: "img" });
      r.spark = new GWCharts.Sparkline(c, "--c1"); r.canvas = c;
      r.tr = h("tr", { "data-name": p.name }, r.name, h("td", {}, r.health), r.calls, r.err, r.tmo, r.p50, r.p99, h("td", {}, c), r.why);
      return r;
    }, (r, p) => {
      setText(r.name, p.name + (p.zone ? " (" + p.zone + ")" : ""));
      setBadge(r.health, p.health);
      const s = p.stats;
      setText(r.calls, fmtRate(s.rate_per_s)); setText(r.err, fmtPct(s.error_rate)); setText(r.tmo, fmtPct(s.timeout_rate));
      setText(r.p50, fmtMs(s.p50)); setText(r.p99, fmtMs(s.p99));
      setText(r.why, p.outlier ? "Outlier: " + p.outlier : "no");
      r.tr.classList.toggle("outlier", !!p.outlier);
      setAttr(r.canvas, "aria-label", "p99 over 15 minutes, now " + fmtMs(s.p99));
    }, (r, p) => r.spark.setData(p.spark.p99, null));
    return { table, rows };
  }

  // Evidence as words: nested keys joined, numbers with the unit their name implies.
  function evidenceList(evidence) {
    const dl = h("dl", { class: "kv" });
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj || {})) {
        const label = (prefix ? prefix + " › " : "") + words(k);
        if (v && typeof v === "object" && !Array.isArray(v)) { walk(v, label); continue; }
        let text;
        if (typeof v === "number") {
          if (/_ms$|^p\d+$|^p\d+_ms$|^max$|^mean$/.test(k)) text = fmtMs(v);
          else if (/p_value|alpha/.test(k)) text = v.toExponential(2);
          else if (/rate|share/.test(k)) text = fmtPct(v);
          else if (/per_s$/.test(k)) text = fmtRate(v);
          else text = v.toLocaleString();
        } else if (Array.isArray(v)) text = v.map((x) => typeof x === "object" ? JSON.stringify(x) : String(x)).join(", ");
        else text = v == null ? "–" : String(v);
        dl.append(h("dt", { text: label }), h("dd", { text }));
      }
    };
    walk(evidence, "");
    return dl;
  }

  const detectorsOf = (a) => Array.isArray(a.detectors) && a.detectors.length ? a.detectors.map(words).join(", ") : words(a.detector);
  const statusOf = (a) => a.status || a.state;
  const whereOf = (a) => a.instance ? "instance " + a.instance : a.zone ? "zone " + a.zone : a.source ? "caller " + a.source : "whole dependency";

  // The matchers that silence what an alert is about.
  function silenceFromAlert(a, durationText) {
    const body = { dependency: a.dependency, duration: durationText || "1h", comment: `Silenced from alert #${a.id}: ${a.summary}`.slice(0, 500) };
    if (a.instance) body.instance = a.instance;
    if (a.zone) body.zone = a.zone;
    if (a.source) body.source = a.source;
    // An alert naming several detectors is one incident: silence it whatever detector fires.
    if (!(Array.isArray(a.detectors) && a.detectors.length > 1) && a.detector) body.detector = a.detector;
    return send("POST", "/v1/silences", body);
  }

  function dependencyPage(name) {
    markNav("");
    document.title = name + " · graywatch";
    const health = badge("unknown"), breakerBadge = badge("closed", "breaker ");
    const summary = h("dl", { class: "kv", id: "summary" });
    const rangeBtns = Object.keys(RANGES).map((r) => h("button", { type: "button", "data-range": r, "aria-pressed": "false", text: r }));
    let range = new URLSearchParams(location.search).get("range");
    if (!RANGES[range]) range = "1h";
    const lat = chartBox("latency", "Latency of successful calls", [
      { label: "p50", color: "--c5" }, { label: "p90", color: "--c2" }, { label: "p99", color: "--c1", width: 2.2 },
      { label: "p99.9", color: "--c3" }, { label: "baseline p99", color: "--c4", dash: true }], "ms");
    const heatCanvas = h("canvas", { id: "heatmap", role: "img" });
    const heat = new GWCharts.Heatmap(heatCanvas);
    const heatBox = h("div", { class: "panel chart" }, h("figure", {}, h("figcaption", { text: "Latency heatmap of successful calls (calls per band, darker is more)" }), heatCanvas));
    const calls = chartBox("calls", "Calls per second", [{ label: "calls/s", color: "--c1" }], "/s");
    const rates = chartBox("rates", "Errors and timeouts", [{ label: "error rate", color: "--c4" }, { label: "timeout rate", color: "--c3" }], "%");
    const inst = peerTable("instances"), zones = peerTable("zones");
    const breakerBody = h("tbody");
    const breakerMsg = h("p", { class: "muted", role: "status" });
    const historyBody = h("tbody");
    const form = h("form", { class: "inline", id: "override" },
      h("label", {}, "State", h("select", { name: "state" }, h("option", { value: "open", text: "open" }), h("option", { value: "closed", text: "closed" }))),
      h("label", {}, "Instance (optional)", h("input", { type: "text", name: "instance" })),
      h("label", {}, "Reason", h("input", { type: "text", name: "reason", required: true, value: "" })),
      h("label", {}, "For", h("input", { type: "text", name: "ttl", value: "30m", size: 6 })),
      h("button", { type: "submit", class: "primary", text: "Force breaker" }),
      h("button", { type: "button", id: "remove-override", text: "Remove override" }));
    const timeline = h("ol", { class: "timeline", id: "timeline" });
    const silenceList = h("ul", { id: "dep-silences" });
    const note = h("p", { class: "error", role: "alert" });
    main.replaceChildren(
      h("p", {}, h("a", { href: "/", text: "← All dependencies" })),
      h("h1", {}, h("span", { text: name }), health, breakerBadge),
      note, summary,
      h("div", { class: "toolbar", role: "group", "aria-label": "Time range" }, h("span", { class: "muted", text: "Range" }), rangeBtns),
      h("div", { class: "charts" }, lat.box, heatBox, calls.box, rates.box),
      h("h2", { text: "Instances" }), h("div", { class: "scroll" }, inst.table),
      h("h2", { text: "Zones" }), h("div", { class: "scroll" }, zones.table),
      h("div", { class: "grid2" },
        h("section", {}, h("h2", { text: "Alerts" }), timeline),
        h("section", {}, h("h2", { text: "Breaker" }),
          h("table", { id: "breakers" }, h("thead", {}, h("tr", {}, ["Breaker", "State", "Reason", "Since", "Override until"].map((t) => h("th", { scope: "col", text: t })))), breakerBody),
          breakerMsg, form,
          h("h3", { text: "Breaker history" }),
          h("table", { id: "breaker-history" },
            h("caption", { class: "muted", style: "text-align:left", text: `The last ${HISTORY_SHOWN} changes, newest first; kept in memory since graywatch started.` }),
            h("thead", {}, h("tr", {}, ["Time", "Breaker", "State", "Reason", "Forced"].map((t) => h("th", { scope: "col", text: t })))), historyBody),
          h("h2", { text: "Silences" }), silenceList)));

    let seriesAt = 0, seriesKey = "", timelineKey = "", silenceKey = "", breakerKey = "", historyKey = "";
    const selectRange = (r) => {
      range = r; seriesAt = 0;
      for (const b of rangeBtns) b.setAttribute("aria-pressed", String(b.dataset.range === r));
      const u = new URL(location.href); u.searchParams.set("range", r); history.replaceState(null, "", u);
    };
    rangeBtns.forEach((b) => b.addEventListener("click", () => { selectRange(b.dataset.range); page.refresh().catch(() => {}); }));
    selectRange(range);

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const body = { state: f.get("state"), reason: f.get("reason") || "forced from the dashboard", ttl: f.get("ttl") || "30m" };
      if (f.get("instance")) body.instance = f.get("instance");
      try { await send("PUT", "/v1/breakers/" + enc(name), body); breakerMsg.className = "notice"; setText(breakerMsg, "Override set."); breakerKey = ""; }
      catch (e) { breakerMsg.className = "error"; setText(breakerMsg, "Could not set the override: " + e.message); }
    });
    form.querySelector("#remove-override").addEventListener("click", async () => {
      const inst = new FormData(form).get("instance");
      try { await send("DELETE", "/v1/breakers/" + enc(name) + (inst ? "?instance=" + enc(inst) : "")); breakerMsg.className = "notice"; setText(breakerMsg, "Override removed."); breakerKey = ""; }
      catch (e) { breakerMsg.className = "error"; setText(breakerMsg, "Could not remove the override: " + e.message); }
    });

    const drawSeries = (s, baseline) => {
      const xs = s.points.map((p) => p.t_ms);
      const col = (k) => s.points.map((p) => p.total > 0 ? p[k] : null);
      lat.chart.setData(xs, [col("p50"), col("p90"), col("p99"), col("p999"), xs.map(() => baseline ? baseline.p99 : null)]);
      calls.chart.setData(xs, [s.points.map((p) => p.rate_per_s)]);
      rates.chart.setData(xs, [col("error_rate"), col("timeout_rate")]);
      if (s.heatmap) heat.setData(xs, s.heatmap.bounds_ms, s.heatmap.counts);
    };

    const page = {
      async refresh() {
        let ov;
        try { ov = await api("/v1/overview/" + enc(name)); }
        catch (e) {
          if (e.status === 404) { setText(note, `No events from ${name} in the last hour.`); setBadge(health, "no_data"); return; }
          throw e;
        }
        setText(note, "");
        setBadge(health, ov.health.state);
        const s = ov.stats, b = ov.baseline;
        const items = [["Calls, last minute", fmtRate(s.rate_per_s)], ["Errors, last minute", fmtPct(s.error_rate)], ["Timeouts, last minute", fmtPct(s.timeout_rate)], ["p50 of successful calls, last minute", fmtMs(s.p50)], ["p99 of successful calls, last minute", fmtMs(s.p99)],
          ["Baseline p99", b ? `${fmtMs(b.p99)} (errors ${fmtPct(b.error_rate)}, ${b.minutes} healthy minutes)` : "still learning (needs 5 healthy minutes)"]];
        const key = JSON.stringify(items);
        if (summary.dataset.key !== key) { summary.dataset.key = key; summary.replaceChildren(...items.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])); }
        inst.rows.sync(ov.instances, (p) => p.name);
        zones.rows.sync(ov.zones, (p) => p.name);
        const [span, step] = RANGES[range];
        const slow = span > 3600000;
        const jobs = [
          api(`/v1/alerts?dependency=${enc(name)}&limit=50`),
          api("/v1/silences"),
          api("/v1/breakers/" + enc(name)).catch((e) => { if (e.status === 404) return { breakers: [] }; throw e; }),
          api(`/v1/breakers/${enc(name)}/history?limit=${HISTORY_SHOWN}`).catch((e) => { if (e.status === 404) return { changes: [] }; throw e; }),
        ];
        const wantSeries = !slow || Date.now() - seriesAt > SLOW_POLL_MS;
        if (wantSeries) jobs.push(api(`/v1/dependencies/${enc(name)}/series?from=${ov.now_ms - span}&to=${ov.now_ms}&step=${step}&heatmap=true`));
        const [alerts, silences, breakers, changes, series] = await Promise.all(jobs);
        if (series) { seriesAt = Date.now(); seriesKey = range; drawSeries(series, b); }

        const bkey = JSON.stringify(breakers.breakers);
        if (bkey !== breakerKey) {
          breakerKey = bkey;
          setBadge(breakerBadge, (breakers.breakers[0] || { state: "closed" }).state, "breaker ");
          breakerBody.replaceChildren(...(breakers.breakers.length ? breakers.breakers.map((v) => h("tr", {},
            h("td", { text: v.instance ? "instance " + v.instance : "dependency" }), h("td", {}, badge(v.state, v.forced ? "forced " : "")),
            h("td", { class: "wrap", text: v.reason }), h("td", {}, timeEl(v.since)), h("td", {}, v.override_expires_at ? timeEl(v.override_expires_at) : "–"))) :
            [h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No breaker yet: closed." }))]));
        }
        const hkey = JSON.stringify(changes.changes);
        if (hkey !== historyKey) {
          historyKey = hkey;
          historyBody.replaceChildren(...(changes.changes.length ? changes.changes.map((c) => h("tr", {},
            h("td", {}, timeEl(c.at)), h("td", { text: c.instance ? "instance " + c.instance : "dependency" }),
            h("td", {}, c.before === c.after ? badge(c.after) : h("span", {}, words(c.before) + " → ", badge(c.after))),
            h("td", { class: "wrap", text: c.reason }), h("td", { text: c.forced ? "yes" : "no" }))) :
            [h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No changes since graywatch started." }))]));
        }
        const tkey = JSON.stringify(alerts.alerts.map((a) => [a.id, statusOf(a), a.resolved_at, a.detectors]));
        if (tkey !== timelineKey) {
          timelineKey = tkey;
          timeline.replaceChildren(...(alerts.alerts.length ? alerts.alerts.map((a) => h("li", { class: statusOf(a) },
            h("p", {}, badge(statusOf(a)), " ", h("a", { href: "/alerts/" + a.id, text: `#${a.id} ${detectorsOf(a)}` }), ` (${words(a.severity)}, ${whereOf(a)}) `, timeEl(a.started_at),
              a.resolved_at ? h("span", {}, " → ", timeEl(a.resolved_at)) : null, a.source ? h("span", { class: "muted", text: " · source " + a.source }) : null),
            h("p", { text: a.summary }),
            h("details", {}, h("summary", { text: "Evidence" }), evidenceList(a.evidence)))) : [h("li", { class: "muted", text: "No alerts." })]));
        }
        const mine = silences.silences.filter((x) => !x.dependency || x.dependency === name);
        const skey = JSON.stringify(mine);
        if (skey !== silenceKey) {
          silenceKey = skey;
          silenceList.replaceChildren(...(mine.length ? mine.map((x) => h("li", {}, `#${x.id} ${matchersText(x)} until `, timeEl(x.ends_at), ` — ${x.comment} (${x.created_by})`)) : [h("li", { class: "muted", text: "None." })]));
        }
      },
    };
    return page;
  }

  function matchersText(s) {
    return ["dependency", "instance", "zone", "source", "detector"].filter((k) => s[k]).map((k) => `${k}=${s[k]}`).join(", ");
  }

  // ---------------------------------------------------------------------------------------
  // Alerts
  // ---------------------------------------------------------------------------------------

  function deliverySummary(list) {
    if (!list || !list.length) return "none";
    return list.map((n) => `${n.notifier}: ${words(n.status)}${n.status === "delivered" ? "" : ` (${n.attempts} attempts)`}`).join("; ");
  }

  function alertsPage() {
    markNav("alerts");
    document.title = "Alerts · graywatch";
    const msg = h("p", { role: "status" });
    const table = (id) => {
      const tbody = h("tbody");
      const el = h("table", { id }, h("thead", {}, h("tr", {}, ["Alert", "State", "Dependency", "Where", "Detectors", "Severity", "Started", "Resolved", "Summary", "Notifications", ""].map((t) => h("th", { scope: "col", text: t })))), tbody);
      const rows = new Rows(tbody, (a) => {
        const r = { state: badge("firing"), started: h("span"), resolved: h("span"), summary: h("td", { class: "wrap" }), delivery: h("td", { class: "wrap" }), detectors: h("td") };
        const btn = h("button", { type: "button", class: "silence", text: "Silence 1 h" });
        btn.addEventListener("click", async () => {
          btn.disabled = true;
          try { const s = await silenceFromAlert(r.alert); msg.className = "notice"; msg.replaceChildren(`Silence #${s.id} created (${matchersText(s)}). `, h("a", { href: "/silences", text: "See silences" })); }
          catch (e) { msg.className = "error"; setText(msg, "Could not create the silence: " + e.message); }
          btn.disabled = false;
        });
        r.tr = h("tr", { "data-id": String(a.id) }, h("td", {}, h("a", { href: "/alerts/" + a.id, text: "#" + a.id })), h("td", {}, r.state),
          h("td", {}, h("a", { href: "/dependencies/" + enc(a.dependency), text: a.dependency })), h("td", { text: whereOf(a) }), r.detectors,
          h("td", { text: words(a.severity) }), h("td", {}, r.started), h("td", {}, r.resolved), r.summary, r.delivery, h("td", {}, btn));
        return r;
      }, (r, a) => {
        r.alert = a;
        setBadge(r.state, statusOf(a));
        setText(r.detectors, detectorsOf(a) + (a.source ? " · source " + a.source : ""));
        r.started.replaceChildren(timeEl(a.started_at));
        r.resolved.replaceChildren(a.resolved_at ? timeEl(a.resolved_at) : "–");
        setText(r.summary, a.summary);
        setText(r.delivery, deliverySummary(r.notes));
      });
      return { el, rows };
    };
    const firing = table("firing"), resolved = table("resolved");
    main.replaceChildren(h("h1", { text: "Alerts" }), msg,
      h("h2", { text: "Firing" }), h("div", { class: "scroll" }, firing.el),
      h("h2", { text: "Recently resolved" }), h("div", { class: "scroll" }, resolved.el));
    return {
      async refresh() {
        const [f, r, n] = await Promise.all([api("/v1/alerts?state=firing&limit=200"), api("/v1/alerts?state=resolved&limit=100"), api("/v1/notifications?limit=1000")]);
        const byAlert = new Map();
        for (const x of n.notifications) if (x.alert_id != null) { if (!byAlert.has(x.alert_id)) byAlert.set(x.alert_id, []); byAlert.get(x.alert_id).push(x); }
        for (const [t, list] of [[firing, f.alerts], [resolved, r.alerts]]) {
          for (const a of list) { const row = t.rows.map.get(a.id); if (row) row.notes = byAlert.get(a.id); }
          t.rows.sync(list, (a) => a.id);
          for (const a of list) { const row = t.rows.map.get(a.id); row.notes = byAlert.get(a.id); setText(row.delivery, deliverySummary(row.notes)); }
        }
      },
    };
  }

  function alertPage(id) {
    markNav("alerts");
    document.title = `Alert #${id} · graywatch`;
    const state = badge("unknown");
    const facts = h("dl", { class: "kv", id: "facts" });
    const summary = h("p", { id: "alert-summary" });
    const evidence = h("div", { id: "evidence" });
    const notes = h("tbody");
    const msg = h("p", { role: "status" });
    const dur = h("select", { id: "silence-duration", "aria-label": "Silence for" }, ["1h", "4h", "24h"].map((d) => h("option", { value: d, text: d })));
    const btn = h("button", { type: "button", class: "primary", id: "silence", text: "Silence this alert" });
    let alert = null, key = "";
    btn.addEventListener("click", async () => {
      if (!alert) return;
      btn.disabled = true;
      try { const s = await silenceFromAlert(alert, dur.value); msg.className = "notice"; msg.replaceChildren(`Silence #${s.id} created (${matchersText(s)}) until `, timeEl(s.ends_at), ". ", h("a", { href: "/silences", text: "See silences" })); }
      catch (e) { msg.className = "error"; setText(msg, "Could not create the silence: " + e.message); }
      btn.disabled = false;
    });
    main.replaceChildren(h("p", {}, h("a", { href: "/alerts", text: "← All alerts" })),
      h("h1", {}, h("span", { text: `Alert #${id}` }), state), summary,
      h("div", { class: "toolbar" }, btn, h("label", { for: "silence-duration", text: "for" }), dur), msg,
      facts, h("h2", { text: "Evidence" }), evidence,
      h("h2", { text: "Notifications" }),
      h("table", { id: "notifications" }, h("thead", {}, h("tr", {}, ["Notifier", "Kind", "Status", "Attempts", "Last error", "Created", "Delivered"].map((t) => h("th", { scope: "col", text: t })))), notes));
    return {
      async refresh() {
        const [a, n] = await Promise.all([api("/v1/alerts/" + enc(id)), api(`/v1/notifications?alert=${enc(id)}&limit=100`)]);
        alert = a;
        setBadge(state, statusOf(a));
        const k = JSON.stringify([a, n]);
        if (k === key) return;
        key = k;
        setText(summary, a.summary);
        const rows = [["Dependency", h("a", { href: "/dependencies/" + enc(a.dependency), text: a.dependency })], ["Where", whereOf(a)], ["Detectors", detectorsOf(a)],
          ["Severity", words(a.severity)], ["Started", timeEl(a.started_at)], ["Resolved", a.resolved_at ? timeEl(a.resolved_at) : "not yet"],
          ["Lasted", duration((a.resolved_at ? toMs(a.resolved_at) : Date.now()) - toMs(a.started_at)) + (a.resolved_at ? "" : " so far")]];
        if (a.source) rows.push(["Source", a.source]);
        facts.replaceChildren(...rows.flatMap(([k2, v]) => [h("dt", { text: k2 }), h("dd", {}, v)]));
        evidence.replaceChildren(evidenceList(a.evidence));
        notes.replaceChildren(...(n.notifications.length ? n.notifications.map((x) => h("tr", {}, h("td", { text: x.notifier }), h("td", { text: words(x.kind) }), h("td", {}, badge(x.status === "delivered" ? "resolved" : x.status === "pending" ? "degraded" : "failing"), " ", words(x.status)),
          h("td", { class: "num", text: String(x.attempts) }), h("td", { class: "wrap", text: x.last_error || "–" }), h("td", {}, timeEl(x.created_at)), h("td", {}, x.delivered_at ? timeEl(x.delivered_at) : "–"))) :
          [h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No notifications (no notifier is configured, or routing sends this alert nowhere)." }))]));
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // Silences
  // ---------------------------------------------------------------------------------------

  function silencesPage() {
    markNav("silences");
    document.title = "Silences · graywatch";
    const msg = h("p", { role: "status" });
    const field = (label, name, attrs) => h("label", {}, label, h("input", Object.assign({ type: "text", name }, attrs || {})));
    const form = h("form", { class: "inline panel", id: "new-silence" },
      field("Dependency", "dependency"), field("Instance", "instance"), field("Zone", "zone"), field("Source", "source"), field("Detector", "detector"),
      field("For", "duration", { value: "1h", size: 6, required: true }), field("Comment", "comment", { required: true }),
      h("button", { type: "submit", class: "primary", text: "Create silence" }));
    const tbody = h("tbody");
    const rows = new Rows(tbody, (s) => {
      const btn = h("button", { type: "button", class: "expire", text: "Expire now" });
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try { await send("DELETE", "/v1/silences/" + s.id); msg.className = "notice"; setText(msg, `Silence #${s.id} expired.`); }
        catch (e) { msg.className = "error"; setText(msg, "Could not expire the silence: " + e.message); btn.disabled = false; }
      });
      const r = { ends: h("span"), starts: h("span") };
      r.tr = h("tr", { "data-id": String(s.id) }, h("td", { text: "#" + s.id }), h("td", { text: matchersText(s) }), h("td", {}, r.starts), h("td", {}, r.ends),
        h("td", { class: "wrap", text: s.comment }), h("td", { text: s.created_by }), h("td", {}, btn));
      return r;
    }, (r, s) => { r.starts.replaceChildren(timeEl(s.starts_at)); r.ends.replaceChildren(timeEl(s.ends_at)); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const [k, v] of new FormData(form)) if (String(v).trim()) body[k] = String(v).trim();
      try { const s = await send("POST", "/v1/silences", body); msg.className = "notice"; setText(msg, `Silence #${s.id} created.`); form.reset(); page.refresh().catch(() => {}); }
      catch (e) { msg.className = "error"; setText(msg, "Could not create the silence: " + e.message); }
    });
    main.replaceChildren(h("h1", { text: "Silences" }), h("p", { class: "muted", text: "Silenced alerts are recorded but not notified. Give at least one matcher." }), form, msg,
      h("h2", { text: "Active and scheduled" }),
      h("table", { id: "silences" }, h("thead", {}, h("tr", {}, ["Silence", "Matches", "Starts", "Ends", "Comment", "Created by", ""].map((t) => h("th", { scope: "col", text: t })))), tbody));
    const page = {
      async refresh() {
        const data = await api("/v1/silences");
        rows.sync(data.silences, (s) => s.id);
        if (!data.silences.length && !tbody.querySelector(".empty")) tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 7, class: "muted", text: "No active silences." })));
        if (data.silences.length) tbody.querySelectorAll(".empty").forEach((e) => e.remove());
      },
    };
    return page;
  }

  // ---------------------------------------------------------------------------------------
  // Routing
  // ---------------------------------------------------------------------------------------

  function route(path) {
    let m;
    if (path === "/") return overviewPage();
    if ((m = path.match(/^\/dependencies\/([^/]+)$/))) return dependencyPage(decodeURIComponent(m[1]));
    if (path === "/alerts") return alertsPage();
    if ((m = path.match(/^\/alerts\/([^/]+)$/))) return alertPage(decodeURIComponent(m[1]));
    if (path === "/silences") return silencesPage();
    main.replaceChildren(h("h1", { text: "No such page" }), h("p", {}, h("a", { href: "/", text: "Back to the overview" })));
    return null;
  }

  const page = route(location.pathname);
  if (page) poll(page);
})();
