// What a person sees on the graywatch dashboard, checked in a real browser (Debian's
// chromium, driven by playwright-core). Started by tests/dashboard.rs, which runs the daemon
// with a manual clock and feeds it events:
//
//   node tests/dashboard.mjs live  BASE_URL SCREENSHOT_DIR FAILING SLOW
//   node tests/dashboard.mjs bench BASE_URL SCREENSHOT_DIR
//   node tests/dashboard.mjs signin BASE_URL SCREENSHOT_DIR TOKEN DEPENDENCY
//
// `signin` runs against a daemon with tokens: the first page is the sign-in form; signing in
// with TOKEN leads to the overview listing DEPENDENCY, and the silences page can create a
// silence for it (with the session's CSRF header); it prints `SILENCE <id>`.
//
// `live` prints `READY` once the overview is checked; the Rust side then makes SLOW slow
// and the script prints `SEEN <epoch ms>` when its row shows `degraded` (without a reload).
// It goes on through the dependency page (forcing SLOW's breaker open and back, which its
// breaker history lists), the alerts and silences pages and prints `SILENCE <id>` for
// the silence it created from FAILING's alert, then `OK`. Any failed check, page error or
// console error exits 1 with the reason on stderr.
import { chromium } from "playwright-core";

const [mode, base, shots, failing, slow] = process.argv.slice(2);
const [token, dependency] = [failing, slow];
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const problems = [];
function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on("console", (m) => {
  // Before signing in, the page itself answers 401, which chromium reports as a console error.
  if (mode === "signin" && /status of 401/.test(m.text())) return;
  if (m.type() === "error") problems.push("console error: " + m.text());
});
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("requestfailed", (r) => { if (r.url().startsWith(base)) problems.push("request failed: " + r.url()); });
page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) problems.push("request outside graywatch: " + r.url()); });

const shot = (name, fullPage = true) => page.screenshot({ path: `${shots}/${name}.png`, fullPage });

// Rows of the overview as shown: name and health word.
const overviewRows = () => page.$$eval("#overview tbody tr:not([hidden])", (trs) =>
  trs.map((tr) => ({ name: tr.dataset.name, health: tr.querySelector(".health").textContent })));

// Non-transparent pixels of a canvas: a drawn chart, not an empty box.
const inked = (sel) => page.$eval(sel, (c) => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
});

async function live() {
  // Overview: every dependency, worst first.
  await page.goto(base + "/");
  await page.waitForSelector("#overview tbody tr");
  await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 2);
  // The page shows the order of /v1/overview. Rows of one health are ordered by how far
  // their last minute is from the baseline, which moves every second: read the page right
  // after one of its refreshes and compare with the API's answer of the same second, a few
  // times if a second turned in between.
  let api, rows;
  for (let attempt = 0; attempt < 5; attempt++) {
    const n = Number(await page.evaluate(() => document.body.dataset.refreshes));
    await page.waitForFunction((n) => Number(document.body.dataset.refreshes) > n, n);
    [api, rows] = await Promise.all([
      page.request.get(base + "/v1/overview").then((r) => r.json()),
      overviewRows(),
    ]);
    if (JSON.stringify(rows.map((r) => r.name)) === JSON.stringify(api.dependencies.map((d) => d.name))) break;
  }
  check(rows.length === api.dependencies.length, `${rows.length} rows for ${api.dependencies.length} dependencies`);
  check(rows[0].name === failing && rows[0].health === "failing", `the failing dependency comes first: ${JSON.stringify(rows)}`);
  const rank = { failing: 0, degraded: 1, healthy: 2 };
  for (let i = 1; i < rows.length; i++) {
    check((rank[rows[i - 1].health] ?? 3) <= (rank[rows[i].health] ?? 3), `sorted worst first: ${JSON.stringify(rows)}`);
  }
  check(JSON.stringify(rows.map((r) => r.name)) === JSON.stringify(api.dependencies.map((d) => d.name)), "the order of /v1/overview");
  // Sparklines drew their 15 minutes.
  check(Number(await page.$eval(`#overview tr[data-name="${slow}"] canvas`, (c) => c.dataset.points)) > 3, "the p99 sparkline has points");
  // The filter box narrows the table.
  await page.fill("#filter", slow);
  const filtered = await overviewRows();
  check(filtered.length === 1 && filtered[0].name === slow, `the filter shows ${slow} only: ${JSON.stringify(filtered)}`);
  await page.fill("#filter", "");
  await shot("overview");

  // A gray failure injected now turns the row degraded without a reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  console.log("READY");
  await page.waitForFunction((name) => {
    const tr = document.querySelector(`#overview tr[data-name="${name}"]`);
    return tr && tr.querySelector(".health").textContent === "degraded";
  }, slow, { timeout: 120000, polling: 50 });
  console.log("SEEN " + Date.now());
  check(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
  await page.waitForTimeout(1200);
  await shot("overview-degraded");

  // The dependency page: charts with data, instances, the alert timeline.
  await page.goto(`${base}/dependencies/${encodeURIComponent(slow)}?range=1h`);
  await page.waitForFunction(() => ["latency", "heatmap", "calls", "rates"].every((id) => Number(document.getElementById(id).dataset.points) > 0), null, { timeout: 15000 });
  for (const id of ["latency", "heatmap", "calls", "rates"]) {
    const n = await inked("#" + id);
    check(n > 500, `#${id} is drawn (${n} inked pixels)`);
  }
  await page.waitForSelector("#instances tbody tr");
  await page.waitForSelector("#timeline li.firing");
  const latestPoints = Number(await page.$eval("#latency", (c) => c.dataset.points));
  check(latestPoints >= 5 * 8, `the latency chart has its points (${latestPoints})`);
  await page.click('button[data-range="10m"]');
  await page.waitForFunction(() => new URL(location.href).searchParams.get("range") === "10m");

  // The breaker: forced open from the page, then the override removed; the history lists both
  // changes, newest first, in words.
  await page.fill('#override input[name="reason"]', "browser check");
  await page.click('#override button[type="submit"]');
  await page.waitForSelector("text=Override set.");
  await page.waitForSelector("#breaker-history tbody tr time");
  await page.click("#remove-override");
  await page.waitForSelector("text=Override removed.");
  await page.waitForFunction(() => document.querySelectorAll("#breaker-history tbody tr time").length >= 2, null, { timeout: 5000 });
  const history = await page.$$eval("#breaker-history tbody tr", (trs) => trs.map((tr) => Array.from(tr.cells, (td) => td.textContent)));
  check(history.length === 2, `two breaker changes: ${JSON.stringify(history)}`);
  check(history[1][2] === "closed → open" && history[1][4] === "yes" && history[1][3].includes("browser check"), `forced open: ${JSON.stringify(history[1])}`);
  check(history[0][2] === "open → closed" && history[0][4] === "no", `then closed: ${JSON.stringify(history[0])}`);
  const at = await page.$eval("#breaker-history tbody tr time", (t) => t.title);
  check(/UTC$/.test(at), `UTC on hover: ${at}`);
  await page.waitForTimeout(1500);
  await shot("dependency");

  // Alerts: the failing dependency's alert, its page, one click to silence it.
  await page.goto(base + "/alerts");
  const link = await page.waitForSelector(`#firing tbody tr:has(a[href="/dependencies/${failing}"]) a[href^="/alerts/"]`);
  await shot("alerts");
  await link.click();
  await page.waitForSelector("#facts dt");
  await page.waitForSelector("#evidence dd");
  await page.click("#silence");
  const created = await page.waitForSelector("text=/Silence #\\d+ created/");
  const id = Number((await created.textContent()).match(/Silence #(\d+)/)[1]);
  await shot("alert");

  await page.goto(base + "/silences");
  await page.waitForSelector(`#silences tr[data-id="${id}"]`);
  const text = await page.$eval(`#silences tr[data-id="${id}"]`, (tr) => tr.textContent);
  check(text.includes("dependency=" + failing), `the silence matches ${failing}: ${text}`);
  await shot("silences");
  console.log("SILENCE " + id);

  // Keyboard: the first Tab reaches the skip link, and it is visible when focused.
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.classList.contains("skip")), "Tab reaches the skip link first");
}

async function bench() {
  await page.goto(base + "/");
  await page.waitForFunction(() => window.__gwFirstRender, null, { timeout: 30000 });
  const first = await page.evaluate(() => window.__gwFirstRender);
  // Steady state: each refresh after the first updates every row and redraws the sparklines
  // whose data changed. The slowest of refreshes 2-6.
  let slowest = 0;
  for (let n = 2; n <= 6; n++) {
    await page.waitForFunction((n) => Number(document.body.dataset.refreshes) >= n, n);
    slowest = Math.max(slowest, await page.evaluate(() => Number(document.body.dataset.refreshMs)));
  }
  const rows = (await overviewRows()).length;
  await shot("overview-large", false);
  console.log("RENDER " + JSON.stringify(Object.assign({ rows_shown: rows, refresh_ms_max: slowest }, first)));
}

async function signin() {
  await page.goto(base + "/");
  await page.waitForSelector("form#signin");
  check(await page.$("#overview") === null, "no overview before signing in");
  await shot("signin");
  await page.fill('form#signin input[name="token"]', token);
  await Promise.all([page.waitForNavigation(), page.click('form#signin button[type="submit"]')]);
  await page.waitForSelector(`#overview tr[data-name="${dependency}"]`);
  check(new URL(page.url()).pathname === "/", `back on the overview: ${page.url()}`);
  await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 2);

  // A change of state from the page: the script sends the session's CSRF value.
  await page.goto(base + "/silences");
  await page.waitForSelector("form#new-silence");
  await page.fill('form#new-silence input[name="dependency"]', dependency);
  await page.fill('form#new-silence input[name="comment"]', "signed-in browser check");
  await page.click('form#new-silence button[type="submit"]');
  const created = await page.waitForSelector("text=/Silence #\\d+ created/");
  console.log("SILENCE " + (await created.textContent()).match(/Silence #(\d+)/)[1]);
}

try {
  if (mode === "signin") await signin();
  else if (mode === "live") await live();
  else if (mode === "bench") await bench();
  else throw new Error("mode: live, bench or signin");
  if (problems.length) throw new Error(problems.join("\n"));
  console.log("OK");
  await browser.close();
} catch (e) {
  console.error(e.stack || String(e));
  if (problems.length) console.error(problems.join("\n"));
  try { await shot("failure"); } catch (_) { /* the page may be gone */ }
  await browser.close();
  process.exit(1);
}
