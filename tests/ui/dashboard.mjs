// Browser test of the dashboard at /ui (run by scripts/e2e-ui.sh against a running gateway with a
// rollout of `support` in its canary stage). Headless Debian Chromium through playwright-core.
// Env: BASE, ADMIN_KEY, VIEWER_KEY, PLAYWRIGHT_DIR (where playwright-core is installed), ARTIFACTS.
// It also receives the gateway's alert webhook (127.0.0.1:18282) and opens the links it carries.
import { createRequire } from "node:module";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const require = createRequire(join(process.env.PLAYWRIGHT_DIR, "package.json"));
const { chromium } = require("playwright-core");

const BASE = process.env.BASE;
const ARTIFACTS = process.env.ARTIFACTS;
const profile = mkdtempSync(join(tmpdir(), "canarist-ui-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1280, height: 1000 },
});
const page = context.pages()[0] ?? await context.newPage();
const external = [];
page.on("request", (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith("blob:")) external.push(r.url()); });
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

// The alert webhook receiver: every JSON body POSTed to it.
const alerts = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => { body += c; });
  req.on("end", () => {
    try { alerts.push(JSON.parse(body)); } catch (_) { /* not JSON: ignored */ }
    res.end("ok");
  });
});
await new Promise((resolve) => receiver.listen(18282, "127.0.0.1", resolve));
async function waitForAlert(pred) {
  for (let i = 0; i < 200; i++) {
    const found = alerts.find(pred);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no matching alert in ${JSON.stringify(alerts)}`);
}

const step = (name) => console.log(`ok - ${name}`);
try {
  await page.goto(`${BASE}/ui`);
  assert.equal(await page.title(), "canarist · rollouts");
  step("the page loads");

  // A wrong key is refused and the API's error is shown.
  await page.fill("#key-input", "cnr_not-a-key");
  await page.click("#key-save");
  await page.waitForSelector("#error:not([hidden])");
  const err = await page.textContent("#error");
  assert.match(err, /HTTP 401/);
  step(`a bad key shows the error: ${err.trim()}`);

  // A viewer sees the deployment but no action buttons.
  await page.fill("#key-input", process.env.VIEWER_KEY);
  await page.click("#key-save");
  await page.waitForSelector('#deployments tr[data-slug="support"]');
  await page.click('#deployments tr[data-slug="support"]');
  await page.waitForSelector("#detail:not([hidden])");
  assert.equal(await page.isVisible("#actions"), false);
  assert.ok(page.url().endsWith("/ui#/deployments/support"), page.url());
  step("a viewer sees the deployment without action buttons; the URL names it");

  // An admin: the deployment is listed, its rollout is in the canary stage.
  await page.fill("#key-input", process.env.ADMIN_KEY);
  await page.click("#key-save");
  await page.waitForSelector("#whoami:has-text('admin')");
  // The new key's role shows at once on the deployment already selected: no reselecting.
  await page.waitForSelector("#actions:not([hidden])");
  step("switching from a viewer key to an admin key shows the action buttons without reselecting");
  const row = page.locator('#deployments tr[data-slug="support"]');
  await row.waitFor();
  assert.equal(await row.locator('[data-field="stage"]').textContent(), "canary-1");
  assert.match(await row.locator('[data-field="models"]').textContent(), /mock-candidate-good \(cand\) served 10%/);
  await row.click();
  await page.waitForSelector("#detail-state[data-state='canary']");
  await page.waitForSelector("#actions:not([hidden])");
  step("an admin sees the deployment in stage canary-1 with the action buttons");

  // The summary card names both upstream models and where the rollout is.
  await page.waitForSelector("#summary:not([hidden])");
  const headline = await page.textContent("#summary-headline");
  assert.match(headline, /^stable mock-stable → candidate mock-candidate-good \(variant cand\) \(config v\d+\): at stage 1 canary-1, 10% live/, headline);
  assert.equal(await page.getAttribute("#summary", "data-status"), "running");
  step(`the summary card reads: ${headline}`);

  // The ramp chart (rendered by the server, as in the reports): every stage of the ramp, shadow
  // as a hatched band at 0% served, "you are here" on the current stage.
  await page.waitForSelector("#ramp svg path");
  assert.equal(await page.getAttribute("#ramp svg", "data-stages"), "3", "the axis ends at the last stage of the ramp");
  await page.waitForSelector('#ramp svg rect.shadow-band[data-stage="0"][data-served="0"]');
  await page.waitForSelector('#ramp svg rect.here[data-stage="1"]');
  assert.match(await page.textContent("#ramp svg"), /you are here/);
  step("the ramp has 3 stages, shadow drawn as 0% served, you are here on stage 1");
  const stages = await page.locator("#stages > tbody > tr").count();
  assert.equal(stages, 2, "two stages so far: shadow and canary-1");
  // The shadow split in the config's words, not "configured 100% / 0%".
  assert.equal((await page.textContent('#stages tr[data-stage="0"] td:nth-child(3)')).trim(), "mirrored 100% / served 0%");
  await page.waitForSelector("#live tbody tr td.num");
  const liveRows = await page.locator("#live > tbody > tr").count();
  assert.ok(liveRows >= 1, "live counts of the current stage");
  step(`ramp curve drawn, ${stages} stages listed, ${liveRows} live rows`);

  // The forest plot draws exactly the gate's evidence intervals (shadow stage: 10 users a side).
  await page.click('#stages tr[data-stage="0"] a');
  // A horizontal line has no height: "attached", not "visible".
  await page.waitForSelector('#forest[data-stage="0"] svg line.ci[data-lo]', { state: "attached" });
  const drawn = await page.$$eval('#forest[data-stage="0"] svg line.ci[data-lo]', (ls) => ls.map((l) => ({
    metric: l.dataset.metric, cohort: l.dataset.cohort, lo: Number(l.dataset.lo), hi: Number(l.dataset.hi),
    verdict: l.dataset.verdict, unbounded: l.dataset.unbounded || null })));
  const reports = await page.evaluate(async (key) => (await (await fetch("/v1/deployments/support/reports",
    { headers: { Authorization: `Bearer ${key}` } })).json()).reports, process.env.ADMIN_KEY);
  // JSON has no infinity: an interval unbounded for lack of data is [null, null]; a gate metric
  // without data has none. Both are drawn, as unbounded, with arrows to the axis' edges.
  const plotted = reports[0].decision.evidence.filter((e) => e.interval || e.method === "none");
  const finite = plotted.filter((e) => e.interval && e.interval.every(Number.isFinite));
  assert.equal(drawn.length, plotted.length, JSON.stringify({ drawn, plotted }));
  for (const e of plotted) {
    const d = drawn.find((x) => x.metric === e.metric && x.cohort === e.cohort);
    assert.ok(d, `${e.metric}/${e.cohort} drawn`);
    if (finite.includes(e)) {
      assert.deepEqual([d.lo, d.hi, d.verdict, d.unbounded], [e.interval[0], e.interval[1], e.verdict, null]);
    } else {
      assert.ok(d.unbounded, `${e.metric}/${e.cohort} drawn as unbounded: ${JSON.stringify(d)}`);
    }
  }
  const errorRate = finite.find((e) => e.metric === "error_rate");
  assert.ok(errorRate, "error rate is plotted");
  step(`the forest plot draws the gate's ${plotted.length} evidence intervals (${plotted.length - finite.length} unbounded), e.g. error_rate [${errorRate.interval}] at α ${errorRate.alpha}`);

  // The chart over time: each gate cell's recorded intervals, the last one the decision's.
  await page.waitForSelector('#history[data-stage="0"] svg[data-chart="history"] line.ci.last', { state: "attached" });
  const series = await page.$$eval('#history[data-stage="0"] svg g.series', (gs) => gs.map((g) => {
    const l = g.querySelector("line.ci.last");
    return { metric: g.dataset.metric, cohort: g.dataset.cohort, points: Number(g.dataset.points),
      lo: l.dataset.lo, hi: l.dataset.hi, verdict: l.dataset.verdict };
  }));
  const history = await page.evaluate(async (key) => (await (await fetch("/v1/deployments/support/reports/0/history",
    { headers: { Authorization: `Bearer ${key}` } })).json()), process.env.ADMIN_KEY);
  assert.ok(history.points.length >= 1, `the controller recorded the shadow stage's evaluations: ${JSON.stringify(history)}`);
  const charted = reports[0].decision.evidence.filter((e) => e.method !== "chi_square_srm" && e.method !== "abstention_rate");
  assert.equal(series.length, charted.length, JSON.stringify({ series, charted }));
  for (const e of charted) {
    const s = series.find((x) => x.metric === e.metric && x.cohort === e.cohort);
    assert.ok(s, `${e.metric}/${e.cohort} charted over time`);
    const want = e.interval && e.interval.every(Number.isFinite) ? [String(e.interval[0]), String(e.interval[1])]
      : [e.interval && e.interval[0] !== null ? String(e.interval[0]) : "-inf", e.interval && e.interval[1] !== null ? String(e.interval[1]) : "inf"];
    assert.deepEqual([s.lo, s.hi, s.verdict], [...want, e.verdict], JSON.stringify({ s, e }));
    assert.ok(s.points >= 1);
  }
  step(`the chart over time has ${series.length} cells from ${history.points.length} recorded evaluations; each ends on the gate's evidence interval`);

  // At 1200 px the gate table is one line per row and fits its card (details on hover).
  await page.setViewportSize({ width: 1200, height: 1000 });
  await page.waitForSelector('#evidence[data-stage="0"] #evidence-table tbody tr');
  const layout = await page.evaluate(() => {
    const table = document.getElementById("evidence-table");
    const card = document.getElementById("evidence-card");
    const line = parseFloat(getComputedStyle(table.querySelector("td")).lineHeight) || 18;
    return { rows: [...table.querySelectorAll("tbody tr")].map((r) => r.getBoundingClientRect().height),
      line, width: table.scrollWidth, room: card.clientWidth,
      page: document.documentElement.scrollWidth, viewport: window.innerWidth };
  });
  assert.ok(layout.page <= layout.viewport, `the dashboard does not overflow at 1200 px: ${JSON.stringify(layout)}`);
  for (const h of layout.rows) assert.ok(h < 2 * layout.line + 8, `one line per row: ${JSON.stringify(layout)}`);
  assert.ok(layout.width <= layout.room, `the table fits its card: ${JSON.stringify(layout)}`);
  step(`at 1200 px the gate table's ${layout.rows.length} rows are one line each (${Math.max(...layout.rows)} px), ${layout.width} of ${layout.room} px wide`);

  // The first stage's HTML report opens in a new tab, under its own signed, short-lived URL.
  const [popup] = await Promise.all([
    context.waitForEvent("page"),
    page.locator('#stages tr[data-stage="0"] button').click(),
  ]);
  await popup.waitForFunction(() => document.body && document.body.innerText.includes("shadow"));
  assert.match(await popup.title(), /support/);
  const card = await popup.textContent("#summary .headline");
  assert.match(card, /stable mock-stable → candidate mock-candidate-good/, card);
  assert.match(card, /at stage 1 canary-1/, card);
  await popup.waitForSelector('svg[data-chart="ramp"] rect.here[data-stage="1"]');
  await popup.waitForSelector('svg[data-chart="ramp"] rect.shadow-band[data-served="0"]');
  const popupForest = await popup.$$eval('svg[data-chart="forest"] line.ci[data-lo]:not(.unbounded)', (ls) => ls.map((l) => [l.dataset.metric, Number(l.dataset.lo), Number(l.dataset.hi)]));
  assert.deepEqual(popupForest, finite.map((e) => [e.metric, e.interval[0], e.interval[1]]), "the report draws the same intervals");
  await popup.waitForSelector('svg[data-chart="history"] line.ci.last', { state: "attached" });
  assert.match(await popup.textContent("body"), /mirrored 100% \/ served 0%/);
  await popup.setViewportSize({ width: 1200, height: 1000 });
  const reportLayout = await popup.evaluate(() => {
    const table = document.querySelector("table.evidence");
    const line = parseFloat(getComputedStyle(table.querySelector("td")).lineHeight) || 18;
    return { rows: [...table.querySelectorAll("tbody tr")].map((r) => r.getBoundingClientRect().height),
      line, width: table.scrollWidth, room: table.parentElement.clientWidth,
      page: document.documentElement.scrollWidth, viewport: window.innerWidth };
  });
  assert.ok(reportLayout.page <= reportLayout.viewport, `the report does not overflow at 1200 px: ${JSON.stringify(reportLayout)}`);
  for (const h of reportLayout.rows) assert.ok(h < 2 * reportLayout.line + 8, `one line per row: ${JSON.stringify(reportLayout)}`);
  assert.ok(reportLayout.width <= reportLayout.room, `the report's gate table fits: ${JSON.stringify(reportLayout)}`);
  await popup.screenshot({ path: join(ARTIFACTS, "report.png"), fullPage: true });
  step(`the report's summary card names both models; screenshot ${join(ARTIFACTS, "report.png")}`);
  assert.match(popup.url(), new RegExp(`^${BASE}/reports/support/0\\?exp=\\d+&sig=[A-Za-z0-9_-]+$`));
  const signed = popup.url();
  await popup.close();
  // The signed URL names one report: another stage with the same signature is refused.
  const forged = await fetch(signed.replace("/reports/support/0?", "/reports/support/1?"));
  assert.equal(forged.status, 401);
  step(`the stage report opens as HTML at ${new URL(signed).pathname}; a forged link is refused`);

  // A stage's own link selects it.
  await page.click('#stages tr[data-stage="1"] a');
  await page.waitForSelector('#stages tr[data-stage="1"].selected');
  assert.ok(page.url().endsWith("#/deployments/support/stages/1"), page.url());
  step("a stage link keeps the stage in the URL");
  // Stage 1 has too few candidate units for a variance yet: its unbounded intervals are drawn
  // (dashed to the axis' edges, labelled), one per evidence row without finite ends.
  await page.waitForSelector('#forest[data-stage="1"]');
  const stage1 = await page.evaluate(async (key) => (await (await fetch("/v1/deployments/support/reports",
    { headers: { Authorization: `Bearer ${key}` } })).json()).reports[1].decision.evidence, process.env.ADMIN_KEY);
  const open = stage1.filter((e) => (e.interval && !e.interval.every(Number.isFinite)) || (!e.interval && e.method === "none"));
  const openDrawn = await page.$$eval('#forest[data-stage="1"] svg line.ci.unbounded[data-unbounded]', (ls) => ls.map((l) => `${l.dataset.metric}/${l.dataset.cohort}`));
  assert.deepEqual(openDrawn.sort(), open.map((e) => `${e.metric}/${e.cohort}`).sort());
  if (open.length) assert.match(await page.textContent('#forest[data-stage="1"] svg'), /unbounded \(too little data\)/);
  step(`stage 1's forest plot draws its ${open.length} unbounded intervals, labelled`);

  // Roll back with a reason: the state shown changes.
  await page.click('#actions button[data-action="rollback"]');
  await page.waitForSelector("#reason-dialog[open]");
  await page.fill("#reason-input", "e2e: rolled back from the dashboard");
  await page.click("#reason-confirm");
  await page.waitForSelector("#detail-state[data-state='rolled_back']");
  assert.equal(await page.isVisible("#error"), false, await page.textContent("#error"));
  // Nothing to promote or approve after a rollback: disabled, looking so, saying why on hover.
  for (const action of ["promote", "approve"]) {
    const b = page.locator(`#actions button[data-action="${action}"]`);
    await page.waitForFunction((a) => document.querySelector(`#actions button[data-action="${a}"]`).disabled, action);
    assert.match(await b.getAttribute("title"), /rolled back/);
    assert.equal(await b.evaluate((n) => getComputedStyle(n).cursor), "not-allowed");
  }
  await page.waitForSelector("#live-decision:has-text('rolled_back')");
  await page.waitForSelector("#summary[data-status='rolled_back']");
  const after = await page.textContent("#summary-headline");
  assert.match(after, /rolled back at stage 1 canary-1 by [^,]+, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, because manual rollback: e2e: rolled back from the dashboard$/, after);
  step(`a rollback click changes the state shown to rolled_back: ${after}`);

  // The rollback's alert links to the stage in the dashboard: opened in a fresh tab (no key
  // yet), it lands on the deployment and stage once a key is entered.
  const alert = await waitForAlert((a) => a.event === "rolled_back");
  assert.equal(alert.links.stage, `${BASE}/ui#/deployments/support/stages/1`, JSON.stringify(alert));
  const linked = await context.newPage();
  linked.on("pageerror", (e) => consoleErrors.push(String(e)));
  await linked.goto(alert.links.stage);
  await linked.fill("#key-input", process.env.VIEWER_KEY);
  await linked.click("#key-save");
  await linked.waitForSelector('#stages tr[data-stage="1"].selected');
  assert.equal(await linked.textContent("#detail-title"), "support");
  await linked.waitForSelector("#detail-state[data-state='rolled_back']");
  step(`the alert's link ${alert.links.stage} lands on deployment support, stage 1`);

  // Its report link opens that stage's report under a signed URL.
  await linked.goto(alert.links.report);
  await linked.waitForURL(/\/reports\/support\/1\?exp=/);
  await linked.waitForFunction(() => document.body && document.body.innerText.includes("canary-1"));
  step(`the alert's report link opens ${new URL(linked.url()).pathname}`);
  await linked.goBack();
  await linked.waitForURL(/#\/deployments\/support\/stages\/1$/);
  await linked.close();

  await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
  step(`screenshot saved to ${join(ARTIFACTS, "dashboard.png")}`);
  assert.deepEqual(external, [], "no request leaves the gateway");
  assert.deepEqual(consoleErrors, [], "no script errors");
  step("no external requests, no script errors");
} catch (e) {
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-failure.png"), fullPage: true }).catch(() => {});
  console.error(`not ok - ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  receiver.close();
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
