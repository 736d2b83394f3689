// The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core.
// dashboard/tests/browser.rs seeds a Redis application, serves the dashboard three times
// (actions on, read-only, with a token) and runs this script with their addresses; it prints
// one line per check and exits non-zero at the first failure.
//
// Task values carry HTML and script payloads: a page that ran any of them would set
// `window.__xss` or open an alert. Every page is checked for both.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("BASE"); // e.g. http://127.0.0.1:PORT/admin/queues
const RO_BASE = env("RO_BASE");
const AUTH_BASE = env("AUTH_BASE");
const TOKEN = env("TOKEN");
const QUEUE = env("QUEUE");
const ARCHIVED = env("ARCHIVED_ID");
const DONE = env("DONE_ID");
const FLAKY = env("FLAKY_ID");
const SLOW = env("SLOW_ID");
const SHOTS = env("SHOTS");

let step = "start";
const ok = (what) => console.log(`ok ${what}`);
function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
  ok(what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext();
const page = await context.newPage();
const alerts = [];
const cspViolations = [];
page.on("dialog", async (d) => {
  // The bulk buttons ask for a confirmation (accepted); any other dialog is a payload running.
  if (d.type() === "confirm") return d.accept();
  alerts.push(`${d.type()}: ${d.message()}`);
  return d.dismiss();
});
page.on("console", (m) => {
  if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
});

async function open(url) {
  const res = await page.goto(url);
  return res;
}

/** A screenshot of the page as it is, under SHOTS. */
async function shot(name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Reloads `url` until its state badge says `state` (a worker acts meanwhile), for up to 15 s. */
async function until(url, state) {
  for (let i = 0; i < 75; i++) {
    await open(url);
    if ((await page.locator("h1 .badge").innerText()) === state) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** No payload ran on the page: no `window.__xss`, no alert, no injected element. */
async function clean(where) {
  const xss = await page.evaluate(() => window.__xss);
  const injected = await page.locator('img[src="x"], body script:not([src])').count();
  check(xss === undefined && alerts.length === 0 && injected === 0,
    `no payload ran on ${where} (xss=${xss}, alerts=${alerts.join("|")}, injected=${injected})`);
}

try {
  step = "overview";
  let res = await open(BASE);
  check(res.status() === 200, "overview loads");
  const h = res.headers();
  check(h["content-security-policy"]?.includes("script-src 'self'") && !h["content-security-policy"].includes("unsafe-inline"),
    "a strict Content-Security-Policy");
  check(h["x-frame-options"] === "DENY" && h["x-content-type-options"] === "nosniff" && h["referrer-policy"] === "same-origin",
    "the usual security headers");
  check(await page.locator(`table.queues a:text-is("${QUEUE}")`).count() === 1, "the queue is listed");
  check(await page.locator("figure.chart").count() === 3, "three history charts");
  check(!(await page.content()).includes("S3cret"), "no password on the page");
  await clean("the overview");
  await shot("overview");

  step = "tabs";
  await open(`${BASE}/queues/${QUEUE}`);
  const count = (state) => page.locator(`nav.tabs a:has-text("${state}") .count`).innerText();
  check(await count("pending") === "3" && await count("scheduled") === "1" && await count("archived") === "1",
    "a tab per state, with its count");
  await shot("queue-pending");
  await open(`${BASE}/queues/flaky?state=retry`);
  check(await page.locator("table.tasks tbody tr").count() === 1, "the retry tab lists the task waiting for its retry");
  check((await page.locator("table.tasks td.error").first().innerText()).includes("<i>rate limited</i>"), "with its error, as text");
  await open(`${BASE}/queues/slow?state=active`);
  check(await page.locator(`table.tasks a[href$="/tasks/${SLOW}"]`).count() === 1, "the active tab lists the running task");
  await open(`${BASE}/queues/${QUEUE}?state=completed`);
  check(await page.locator(`table.tasks a[href$="/tasks/${DONE}"]`).count() === 1, "the completed tab lists the completed task");
  await clean("the tabs");

  step = "workers";
  await open(`${BASE}/workers`);
  check(await page.locator("section.worker").count() === 1, "the running worker process is listed");
  // Workers write their entry every 5 s: the running task shows from the next beat.
  let seen = false;
  for (let i = 0; i < 60 && !seen; i++) {
    await open(`${BASE}/workers`);
    seen = await page.locator(`section.worker a[href$="/tasks/${SLOW}"]`).count() === 1;
    if (!seen) await new Promise((r) => setTimeout(r, 250));
  }
  check(seen, "with the task it runs (from its next heartbeat)");
  await shot("workers");

  step = "scheduler";
  await open(`${BASE}/scheduler`);
  check(await page.locator('a:text-is("nightly-report")').count() === 1, "the periodic entry is listed");
  await page.click('a:text-is("nightly-report")');
  check(await page.locator("table tbody tr").count() >= 1, "with its fire history");
  await shot("scheduler");

  step = "archived tab";
  await open(BASE);
  await page.click(`table.queues a:text-is("${QUEUE}")`);
  await page.click('nav.tabs a:has-text("archived")');
  check(await page.locator(`table.tasks a[href$="/tasks/${ARCHIVED}"]`).count() === 1, "the archived task is listed");
  const errorCell = await page.locator("table.tasks td.error").first().innerText();
  check(errorCell.includes("<script>"), "the error is shown as text, escaped");
  await clean("the archived tab");
  await shot("queue-archived");

  step = "failures";
  await page.click('a:has-text("Failures by reason")');
  check(await page.locator("table.groups tbody tr").count() >= 1, "failures are grouped by reason");
  await clean("the failures page");
  await shot("failures");

  step = "task page";
  await open(`${BASE}/tasks/${ARCHIVED}`);
  const body = await page.locator("main").innerText();
  check(body.includes("<script>window.__xss=1</script>"), "the arguments are shown as formatted JSON text");
  check(await page.locator("ol.timeline li").count() === 1, "the attempt timeline has the failed attempt");
  check(await page.locator("ol.timeline li .badge.archived").count() === 1, "the attempt ended archived");
  check(body.includes("onerror=window.__xss=5"), "the headers are shown as text");
  await clean("the archived task's page");
  await shot("task-archived");

  step = "completed task";
  await open(`${BASE}/tasks/${DONE}`);
  check((await page.locator("main").innerText()).includes("window.__xss=6"), "the result is shown as text");
  await clean("the completed task's page");

  step = "run again";
  await open(`${BASE}/tasks/${ARCHIVED}`);
  await Promise.all([page.waitForLoadState("load"), page.click('button:has-text("Run again")')]);
  check((await page.locator("h1 .badge").innerText()) === "pending", "Run again: the task is pending");

  step = "run again and complete";
  await open(`${BASE}/tasks/${FLAKY}`);
  await Promise.all([page.waitForLoadState("load"), page.click('button:has-text("Run again")')]);
  check(await until(`${BASE}/tasks/${FLAKY}`, "completed"), "an archived task run again completes (the worker ran it)");
  const outcomes = await page.locator("ol.timeline li .badge").allInnerTexts();
  check(outcomes.join(",") === "archived,completed", `its attempt timeline: ${outcomes.join(", ")}`);
  await shot("task");

  step = "cancel";
  await open(`${BASE}/tasks/${SLOW}`);
  await Promise.all([page.waitForLoadState("load"), page.click('button:has-text("Cancel")')]);
  check(await until(`${BASE}/tasks/${SLOW}`, "archived"), "a running task cancelled from its page ends archived");
  check((await page.locator("main").innerText()).includes("cancelled by operator"), "as cancelled by operator");

  step = "search";
  await page.fill('form.search input[name="id"]', DONE);
  await Promise.all([page.waitForURL(`**/tasks/${DONE}`), page.press('form.search input[name="id"]', "Enter")]);
  ok("the search box opens a task by id");

  step = "bulk archive";
  await open(`${BASE}/queues/${QUEUE}?state=pending`);
  const pending = await page.locator('table.tasks input[name="id"]').count();
  check(pending >= 3, `pending tasks are listed (${pending})`);
  await page.check("input.select-all");
  await Promise.all([page.waitForLoadState("load"), page.click('div.actions button[value="archive"]')]);
  await open(`${BASE}/queues/${QUEUE}?state=pending`);
  check(await page.locator('table.tasks input[name="id"]').count() === 0, "bulk archive of the selected: none pending left");

  step = "delete all";
  await open(`${BASE}/queues/${QUEUE}?state=archived`);
  await Promise.all([page.waitForLoadState("load"), page.click('button:has-text("Delete all")')]);
  check((await page.locator("p.question").innerText()).includes("all"), "delete all asks for a confirmation first");
  await Promise.all([page.waitForLoadState("load"), page.click('button:has-text("Yes, do it")')]);
  check((await page.locator("nav.tabs a.on .count").innerText()) === "0", "delete all: the archive is empty");

  step = "pause";
  await open(BASE);
  await Promise.all([page.waitForLoadState("load"), page.click(`tr:has(a:text-is("${QUEUE}")) button:has-text("Pause")`)]);
  check(await page.locator(`tr:has(a:text-is("${QUEUE}")) .badge.paused`).count() === 1, "pause: the queue shows paused");
  await Promise.all([page.waitForLoadState("load"), page.click(`tr:has(a:text-is("${QUEUE}")) button:has-text("Resume")`)]);
  check(await page.locator(`tr:has(a:text-is("${QUEUE}")) .badge.paused`).count() === 0, "resume: no longer paused");

  step = "refresh";
  await page.click('.refresh a:text-is("5s")');
  check(await page.locator('meta[http-equiv="refresh"][content="5"]').count() === 1, "the refresh picker sets live refresh");
  await page.click('.refresh a:text-is("off")');
  check(await page.locator('meta[http-equiv="refresh"]').count() === 0, "and pauses it");

  step = "forgery";
  const api = context.request;
  let r = await api.post(`${BASE}/queues/${QUEUE}/pause`, { form: { back: "/" }, maxRedirects: 0 });
  check(r.status() === 403, `a post without the form token is refused (${r.status()})`);
  r = await api.post(`${BASE}/queues/${QUEUE}/pause`, { form: { csrf: "0".repeat(64) }, headers: { Origin: "https://evil.example" }, maxRedirects: 0 });
  check(r.status() === 403, `a cross-site post is refused (${r.status()})`);

  step = "read-only";
  await open(RO_BASE);
  check(await page.locator('form[method="post"]').count() === 0, "read-only: the overview has no action");
  await open(`${RO_BASE}/tasks/${DONE}`);
  check(await page.locator('form[method="post"]').count() === 0, "read-only: a task page has no action");
  r = await api.post(`${RO_BASE}/queues/${QUEUE}/pause`, { form: {}, maxRedirects: 0 });
  check(r.status() === 404 || r.status() === 405, `read-only: no action route (${r.status()})`);

  step = "token";
  res = await open(AUTH_BASE);
  check(res.status() === 401, "with a token: refused without it");
  res = await open(`${AUTH_BASE}?token=${encodeURIComponent(TOKEN)}`);
  check(res.status() === 200 && !page.url().includes("token="), "the token once: kept in a cookie, out of the address");
  res = await open(`${AUTH_BASE}/workers`);
  check(res.status() === 200, "then every page opens");

  check(cspViolations.length === 0, `no Content-Security-Policy violation (${cspViolations.join("|")})`);
  console.log("all checks passed");
  await browser.close();
} catch (e) {
  console.log(`FAILED at ${step}: ${e.message}`);
  try { await page.screenshot({ path: process.env.SCREENSHOT || "/tmp/conveyor-dashboard-failure.png", fullPage: true }); } catch {}
  await browser.close();
  process.exit(1);
}
