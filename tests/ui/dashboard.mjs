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
  const row = page.locator('#deployments tr[data-slug="support"]');
  await row.waitFor();
  assert.equal(await row.locator('[data-field="stage"]').textContent(), "canary-1");
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
  await page.waitForSelector("#live tbody tr td.num");
  const liveRows = await page.locator("#live > tbody > tr").count();
  assert.ok(liveRows >= 1, "live counts of the current stage");
  step(`ramp curve drawn, ${stages} stages listed, ${liveRows} live rows`);

  // The forest plot draws exactly the gate's evidence intervals (shadow stage: 10 users a side).
  await page.click('#stages tr[data-stage="0"] a');
  // A horizontal line has no height: "attached", not "visible".
  await page.waitForSelector("#forest svg line.ci[data-lo]", { state: "attached" });
  const drawn = await page.$$eval("#forest svg line.ci[data-lo]", (ls) => ls.map((l) => ({
    metric: l.dataset.metric, cohort: l.dataset.cohort, lo: Number(l.dataset.lo), hi: Number(l.dataset.hi), verdict: l.dataset.verdict })));
  const reports = await page.evaluate(async (key) => (await (await fetch("/v1/deployments/support/reports",
    { headers: { Authorization: `Bearer ${key}` } })).json()).reports, process.env.ADMIN_KEY);
  // JSON has no infinity: an unbounded interval (too little data) is [null, null], not drawn.
  const evidence = reports[0].decision.evidence.filter((e) => e.interval && e.interval.every(Number.isFinite));
  assert.equal(drawn.length, evidence.length, JSON.stringify({ drawn, evidence }));
  for (const e of evidence) {
    const d = drawn.find((x) => x.metric === e.metric && x.cohort === e.cohort);
    assert.ok(d, `${e.metric}/${e.cohort} drawn`);
    assert.deepEqual([d.lo, d.hi, d.verdict], [e.interval[0], e.interval[1], e.verdict]);
  }
  const errorRate = evidence.find((e) => e.metric === "error_rate");
  assert.ok(errorRate, "error rate is plotted");
  step(`the forest plot draws the gate's ${evidence.length} evidence intervals, e.g. error_rate [${errorRate.interval}] at α ${errorRate.alpha}`);

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
  const popupForest = await popup.$$eval('svg[data-chart="forest"] line.ci[data-lo]', (ls) => ls.map((l) => [l.dataset.metric, Number(l.dataset.lo), Number(l.dataset.hi)]));
  assert.deepEqual(popupForest, evidence.map((e) => [e.metric, e.interval[0], e.interval[1]]), "the report draws the same intervals");
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

  // Roll back with a reason: the state shown changes.
  await page.click('#actions button[data-action="rollback"]');
  await page.waitForSelector("#reason-dialog[open]");
  await page.fill("#reason-input", "e2e: rolled back from the dashboard");
  await page.click("#reason-confirm");
  await page.waitForSelector("#detail-state[data-state='rolled_back']");
  assert.equal(await page.isVisible("#error"), false, await page.textContent("#error"));
  assert.equal(await page.locator('#actions button[data-action="promote"]').isDisabled(), true);
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
