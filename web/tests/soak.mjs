// Memory of open dashboard pages over time: the overview and one dependency's page stay open,
// refreshing every second against a daemon with live traffic, and every SAMPLE_EVERY seconds
// the script forces a garbage collection in each page and reads the JS heap in use and the
// number of DOM nodes (Chrome DevTools Protocol, `Performance.getMetrics`).
//
//   node tests/soak.mjs BASE_URL [MINUTES] [options]
//
// MINUTES (default 10, fractions allowed) is the time from the first sample to the last; the
// first is taken after a warm-up. Options:
//
//   --no-feed                 post no events (the caller feeds the daemon); otherwise the
//                             script posts calls every second for 20 dependencies
//                             (`soak-svc-00` … `soak-svc-19`, 3 instances in 3 zones each;
//                             `soak-svc-19` fails hard for 60 s of every 180 s)
//   --dependency=NAME         the dependency page to keep open (default soak-svc-00)
//   --warmup=SECONDS          before the first sample (default 30)
//   --sample-every=SECONDS    between samples (default 30)
//   --max-heap-growth-kib=K   allowed growth of the heap after GC, last sample against the
//                             first, per page (default 2048)
//   --max-node-growth=N       allowed growth of the DOM node count, last sample against the
//                             first, per page (default 4). A page's count moves by a node or
//                             two with what it shows (a text node present or not); a leak of
//                             one node per refresh would add one per second.
//
// Prints `SAMPLE {json}` per page and sample, then `SUMMARY {json}` per page (first and last
// heap and nodes, least-squares slopes per hour), then `OK`. Exits 1 when a page's heap after
// GC grew by more than the bound, its DOM node count grew by more than its bound, or a page logged an error.
//
// Run against `graywatch demo --listen 127.0.0.1:PORT` (which adds its own five dependencies
// and a gray failure), see BENCHMARKS.md.
import { chromium } from "playwright-core";

const positional = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const options = Object.fromEntries(process.argv.slice(2).filter((a) => a.startsWith("--")).map((a) => {
  const [k, v] = a.slice(2).split("=");
  return [k, v === undefined ? true : v];
}));
const known = ["no-feed", "dependency", "warmup", "sample-every", "max-heap-growth-kib", "max-node-growth"];
for (const k of Object.keys(options)) if (!known.includes(k)) { console.error(`unknown option --${k}; known: ${known.join(", ")}`); process.exit(2); }
const base = positional[0];
if (!base) { console.error("usage: node tests/soak.mjs BASE_URL [MINUTES] [--no-feed] [--dependency=NAME] [--warmup=S] [--sample-every=S] [--max-heap-growth-kib=K] [--max-node-growth=N]"); process.exit(2); }
const minutes = Number(positional[1] ?? 10);
const feed = !options["no-feed"];
const dependency = options.dependency || "soak-svc-00";
const warmupS = Number(options.warmup ?? 30);
const everyS = Number(options["sample-every"] ?? 30);
const maxGrowth = Number(options["max-heap-growth-kib"] ?? 2048) * 1024;
const maxNodeGrowth = Number(options["max-node-growth"] ?? 4);
if (!(maxNodeGrowth >= 0)) { console.error("--max-node-growth: must be a number >= 0"); process.exit(2); }
for (const [name, v] of [["MINUTES", minutes], ["--warmup", warmupS], ["--sample-every", everyS], ["--max-heap-growth-kib", maxGrowth]]) {
  if (!(v > 0)) { console.error(`${name}: must be a positive number`); process.exit(2); }
}
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------
// Traffic: 20 dependencies, 3 instances each, about 10 calls per instance a second.
// ------------------------------------------------------------------------------------------

let seed = 42;
const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
const FEEDER_DEPS = Array.from({ length: 20 }, (_, i) => ({ name: `soak-svc-${String(i).padStart(2, "0")}`, median: 2 + i * 5 }));
const ZONES = ["zone-a", "zone-b", "zone-c"];
let fed = 0, feedErrors = 0, feeding = feed;
const startedAt = Date.now();

function second() {
  const flapping = (Date.now() - startedAt) / 1000 % 180 < 60;
  const events = [];
  for (const d of FEEDER_DEPS) {
    const failing = flapping && d.name === "soak-svc-19";
    for (let i = 0; i < 3; i++) {
      for (let n = 0; n < 10; n++) {
        events.push({
          dependency: d.name, instance: `${d.name}-${i + 1}`, zone: ZONES[i],
          duration_ms: d.median * Math.exp(0.4 * normal()),
          outcome: failing || random() < 0.01 ? "error" : "ok",
        });
      }
    }
  }
  return events;
}

async function feeder() {
  while (feeding) {
    const t = Date.now();
    try {
      const resp = await fetch(base + "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(second()) });
      if (resp.ok) fed++; else feedErrors++;
      await resp.arrayBuffer();
    } catch (e) {
      feedErrors++;
    }
    await sleep(Math.max(0, 1000 - (Date.now() - t)));
  }
}

// ------------------------------------------------------------------------------------------
// The pages
// ------------------------------------------------------------------------------------------

const problems = [];
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--js-flags=--expose-gc"],
});

// Each page in its own context, so in its own renderer process: each heap is one page's.
async function open(label, path) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(`${label}: console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`${label}: page error: ${e.message}`));
  await page.goto(base + path);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  return { label, path, page, cdp, samples: [] };
}

async function sample(p, t) {
  await p.page.evaluate(() => { gc(); gc(); });
  const { metrics } = await p.cdp.send("Performance.getMetrics");
  const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
  const refreshes = await p.page.evaluate(() => Number(document.body.dataset.refreshes || 0));
  const s = { t_s: Math.round(t), heap: m.JSHeapUsedSize, nodes: m.Nodes, listeners: m.JSEventListeners, refreshes };
  p.samples.push(s);
  console.log("SAMPLE " + JSON.stringify(Object.assign({ page: p.label }, s)));
}

// Least-squares slope of `key` against time, per hour.
function slopePerHour(samples, key) {
  const n = samples.length;
  if (n < 2) return 0;
  const mt = samples.reduce((a, s) => a + s.t_s, 0) / n, mv = samples.reduce((a, s) => a + s[key], 0) / n;
  let num = 0, den = 0;
  for (const s of samples) { num += (s.t_s - mt) * (s[key] - mv); den += (s.t_s - mt) ** 2; }
  return den === 0 ? 0 : (num / den) * 3600;
}

let failed = false;
try {
  const feeding_ = feed ? feeder() : null;
  if (feed) await sleep(3000); // the dependency exists before its page opens
  const pages = [await open("overview", "/"), await open("dependency", "/dependencies/" + encodeURIComponent(dependency))];
  for (const p of pages) await p.page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 2, null, { timeout: 30000 });
  await sleep(warmupS * 1000);
  const t0 = Date.now();
  const count = Math.max(1, Math.round((minutes * 60) / everyS));
  for (let i = 0; i <= count; i++) {
    const due = t0 + i * everyS * 1000;
    await sleep(Math.max(0, due - Date.now()));
    for (const p of pages) await sample(p, (Date.now() - t0) / 1000);
  }
  feeding = false;
  await feeding_;

  const reasons = [];
  for (const p of pages) {
    const first = p.samples[0], last = p.samples[p.samples.length - 1];
    const refreshed = last.refreshes - first.refreshes;
    const summary = {
      page: p.label, path: p.path, minutes: (last.t_s - first.t_s) / 60, samples: p.samples.length, refreshes: refreshed,
      heap_first: first.heap, heap_last: last.heap, heap_growth: last.heap - first.heap,
      heap_min: Math.min(...p.samples.map((s) => s.heap)), heap_max: Math.max(...p.samples.map((s) => s.heap)),
      heap_slope_per_hour: Math.round(slopePerHour(p.samples, "heap")),
      nodes_first: first.nodes, nodes_last: last.nodes, nodes_max: Math.max(...p.samples.map((s) => s.nodes)),
      nodes_slope_per_hour: Math.round(slopePerHour(p.samples, "nodes")),
      listeners_first: first.listeners, listeners_last: last.listeners,
    };
    console.log("SUMMARY " + JSON.stringify(summary));
    if (summary.heap_growth > maxGrowth) reasons.push(`${p.label}: the heap after GC grew by ${summary.heap_growth} bytes (bound ${maxGrowth})`);
    if (last.nodes > first.nodes + maxNodeGrowth) reasons.push(`${p.label}: DOM nodes grew from ${first.nodes} to ${last.nodes} (bound +${maxNodeGrowth})`);
    // A page that stopped refreshing would look flat for the wrong reason.
    const expected = (last.t_s - first.t_s) * 0.8;
    if (refreshed < expected) reasons.push(`${p.label}: only ${refreshed} refreshes in ${last.t_s - first.t_s} s`);
  }
  if (feed) console.log(`FED ${fed} posts, ${feedErrors} failed`);
  if (feed && feedErrors > fed / 100) reasons.push(`${feedErrors} of the feeder's posts failed`);
  reasons.push(...problems);
  if (reasons.length) throw new Error(reasons.join("\n"));
  console.log("OK");
} catch (e) {
  console.error(e.stack || String(e));
  failed = true;
} finally {
  feeding = false;
  await browser.close();
}
process.exit(failed ? 1 : 0);
