// canarist dashboard: a client of the admin API. No framework, no build step, no external assets.
// The key lives in sessionStorage (this tab only) and is sent as a bearer token. The selected
// deployment and stage live in the URL (#/deployments/NAME/stages/K), so a view can be shared
// and an alert can link to it; …/stages/K/report opens that stage's report under its own
// short-lived signed URL (asked of the admin API with the key; the key never goes in a URL).
"use strict";

const KEY_STORE = "canarist.key";
const LIVE_EVERY_MS = 3000;
const STAGES_EVERY_MS = 15000;

const state = { key: sessionStorage.getItem(KEY_STORE) || "", role: null, selected: null,
  stage: null, liveTimer: null, stagesTimer: null, listTimer: null, reportOpened: null,
  reports: [] };

// --- the URL ----------------------------------------------------------------------------------

function parseRoute(hash) {
  const m = /^#\/deployments\/([^/]+)(?:\/stages\/(\d+)(\/report)?)?$/.exec(hash || "");
  if (!m) return null;
  let slug;
  try { slug = decodeURIComponent(m[1]); } catch (_) { return null; }
  return { slug, stage: m[2] === undefined ? null : Number(m[2]), report: Boolean(m[3]) };
}

function routeHash(slug, stage) {
  const base = `#/deployments/${encodeURIComponent(slug)}`;
  return stage === null || stage === undefined ? base : `${base}/stages/${stage}`;
}

// Shows the view the URL names (after a key is in use).
async function applyRoute() {
  const route = parseRoute(location.hash);
  if (!route || !state.role) return;
  if (state.selected !== route.slug) {
    await select(route.slug, route.stage);
  } else if (state.stage !== route.stage) {
    state.stage = route.stage;
    markStage();
    const shown = route.stage ?? null;
    if (shown !== null) await loadCharts(route.slug, shown).catch(showError);
  }
  if (route.report && route.stage !== null) {
    const key = `${route.slug}/${route.stage}`;
    if (state.reportOpened === key) return;
    state.reportOpened = key;
    // Back from the report returns to the stage, not to this link again.
    history.replaceState(null, "", routeHash(route.slug, route.stage));
    try {
      const link = await reportLink(route.slug, route.stage);
      location.assign(link);
    } catch (e) {
      showError(e);
    }
  }
}

function markStage() {
  for (const tr of $("stages").querySelectorAll("tbody > tr")) {
    const on = state.stage !== null && tr.dataset.stage === String(state.stage);
    tr.classList.toggle("selected", on);
    if (on) tr.scrollIntoView({ block: "nearest" });
  }
}

const $ = (id) => document.getElementById(id);

// Builds an element; children are nodes or strings (always inserted as text, never as HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = {
  num: (v, d = 0) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toFixed(d),
  pct: (v) => (v === null || v === undefined) ? "–" : `${Number(v).toFixed(v < 1 ? 2 : 1)}%`,
  // A configured share with as few decimals as it needs (100%, 10%, 0.5%), as the reports print it.
  share: (v) => (v === null || v === undefined) ? "–" : `${Number(Number(v).toFixed(2))}%`,
  // One time format everywhere (the reports' too): ISO 8601 UTC; local time on hover (`when`).
  time: (t) => t ? new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z") : "–",
  local: (t) => t ? new Date(t).toLocaleString() : "",
  rate: (n, d) => d ? `${(100 * n / d).toFixed(1)}%` : "–",
  dur: (s) => {
    if (s === null || s === undefined) return "–";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h > 0 ? `${h}h ${m % 60}m` : m > 0 ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
  },
};

// A shadow stage's split as the config says it (the reports' words): "mirrored 100% / served 0%".
const shadowSplit = (pct) => `mirrored ${fmt.share(pct)} / served 0%`;

// A <time> in UTC ISO with the local time as its tooltip.
function when(t) {
  return t ? el("time", { datetime: t, title: `${fmt.local(t)} (local)` }, fmt.time(t)) : "–";
}

// A reason without the action word its badge already shows ("promote: …" after "promote").
const because = (reason) => String(reason || "")
  .replace(/^(rolled back at stage|promoted to stage|promoted at stage) \d+: /, "")
  .replace(/^(promote|roll back|rollback|hold): /, "");

// Inserts SVG markup the admin API rendered (report::svg_*: no script, labels escaped) as a
// node: parsed into an inert document, never assigned to innerHTML of the live page.
function svgNode(markup) {
  const doc = new DOMParser().parseFromString(String(markup), "text/html");
  const node = doc.body.querySelector("svg");
  if (!node) return el("p", { class: "muted" }, "No chart.");
  for (const s of node.querySelectorAll("script, foreignObject")) s.remove();
  return document.importNode(node, true);
}

// --- errors -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function showError(e) {
  const box = $("error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  let text;
  if (e instanceof ApiError) {
    const hint = e.status === 401 ? " — check the key"
      : e.status === 403 ? " — this key's role may not do that"
      : e.status === 429 ? " — rate limited, retrying shortly" : "";
    text = `HTTP ${e.status}${e.code ? ` ${e.code}` : ""}: ${e.message}${hint}`;
  } else {
    text = `Cannot reach the gateway: ${e.message || e}`;
  }
  box.textContent = text;
  box.hidden = false;
}

// --- API --------------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { "Authorization": `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = res.headers.get("content-type") || "";
  if (!res.ok) {
    let code = null, message = res.statusText || "request failed";
    if (type.includes("json")) {
      try {
        const j = await res.json();
        if (j && j.error) { message = j.error.message || message; code = j.error.code || j.error.type || null; }
      } catch (_) { /* keep the status text */ }
    }
    throw new ApiError(res.status, code, message);
  }
  return type.includes("json") ? res.json() : res.text();
}

// --- key --------------------------------------------------------------------------------------

async function useKey(key) {
  state.key = key.trim();
  if (!state.key) { forgetKey(); return; }
  sessionStorage.setItem(KEY_STORE, state.key);
  try {
    const me = await api("GET", "/v1/admin/whoami");
    state.role = me.role;
    $("whoami").textContent = `${me.id} · ${me.role}`;
    showError(null);
    await loadList();
    clearInterval(state.listTimer);
    state.listTimer = setInterval(() => loadList().catch(showError), STAGES_EVERY_MS);
    // A new key may have another role: show the route's view again for it.
    state.selected = null;
    await applyRoute();
  } catch (e) {
    state.role = null;
    $("whoami").textContent = "";
    showError(e);
  }
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  Object.assign(state, { key: "", role: null, selected: null });
  for (const t of ["liveTimer", "stagesTimer", "listTimer"]) clearInterval(state[t]);
  $("key-input").value = "";
  $("whoami").textContent = "";
  $("deployments").hidden = true;
  $("list-empty").hidden = false;
  $("detail").hidden = true;
  showError(null);
}

const canAct = () => state.role === "admin" || state.role === "owner";

// --- list -------------------------------------------------------------------------------------

const MODE_TEXT = { off: "stable only", shadow: "shadow", live: "live canary" };
const MODE_TITLES = { off: "mode off: every request goes to stable, nothing is mirrored",
  shadow: "the candidate is mirrored; clients always get stable",
  live: "the candidate serves its share of units" };

async function loadList() {
  const data = await api("GET", "/v1/deployments");
  const body = $("deployments").querySelector("tbody");
  body.replaceChildren(...data.deployments.map((d) => el("tr", {
    "data-slug": d.slug,
    class: d.slug === state.selected ? "selected" : null,
    onclick: () => {
      const h = routeHash(d.slug, null);
      if (location.hash === h) select(d.slug, null).catch(showError); else location.hash = h;
    },
  },
    el("td", {}, el("strong", {}, d.slug)),
    el("td", {}, d.model),
    el("td", { "data-field": "models" }, `${d.stable.model} → `,
      d.challengers.length
        ? d.challengers.map((c) => `${c.model_id}${c.model_id === c.id ? "" : ` (${c.id})`} ${d.mode === "shadow" ? shadowSplit(c.traffic_pct) : `served ${fmt.share(c.traffic_pct)}`}${c.is_active ? "" : ", not routed"}`).join("; ")
        : el("span", { class: "muted" }, "no candidate routed")),
    el("td", {}, el("span", { class: `badge mode-${d.mode}`, "data-field": "mode", title: MODE_TITLES[d.mode] || "" }, MODE_TEXT[d.mode] || d.mode)),
    el("td", { "data-field": "stage" }, d.stage),
    el("td", { class: "num" }, `v${d.config_version}`),
  )));
  $("deployments").hidden = data.deployments.length === 0;
  $("list-empty").hidden = data.deployments.length !== 0;
  $("list-empty").textContent = "No deployments configured.";
}

async function select(slug, stage = null) {
  state.selected = slug;
  state.stage = stage;
  const want = routeHash(slug, stage);
  const route = parseRoute(location.hash);
  if (!route || route.slug !== slug) history.replaceState(null, "", want);
  for (const tr of $("deployments").querySelectorAll("tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.slug === slug);
  }
  $("detail").hidden = false;
  $("detail-title").textContent = slug;
  $("actions").hidden = !canAct();
  clearInterval(state.liveTimer);
  clearInterval(state.stagesTimer);
  await refreshDetail();
  state.liveTimer = setInterval(() => loadLive(slug).catch(showError), LIVE_EVERY_MS);
  state.stagesTimer = setInterval(() => loadStages(slug).catch(showError), STAGES_EVERY_MS);
}

async function refreshDetail() {
  const slug = state.selected;
  if (!slug) return;
  try {
    await Promise.all([loadLive(slug), loadStages(slug)]);
    showError(null);
  } catch (e) {
    showError(e);
  }
}

// --- live -------------------------------------------------------------------------------------

async function loadLive(slug) {
  const s = await api("GET", `/v1/deployments/${encodeURIComponent(slug)}`);
  if (state.selected !== slug) return;
  const r = s.rollout;
  const badge = $("detail-state");
  const shown = r ? r.state : s.deployment.mode;
  badge.textContent = shown;
  badge.className = `badge ${shown}`;
  badge.dataset.state = shown;
  const cand = r && s.deployment.challengers.find((c) => c.id === r.candidate);
  $("detail-rollout").replaceChildren(...(r
    ? [`stable ${s.deployment.stable.model} → candidate ${cand ? cand.model_id : `variant ${r.candidate}`}`,
      cand && cand.model_id !== r.candidate ? ` (variant ${r.candidate})` : "",
      ` · stage ${r.stage_index} (${s.deployment.stage}) since `, when(r.stage_started_at), ` · config v${r.config_version}`]
    : [`No rollout started · ${MODE_TITLES[s.deployment.mode] || s.deployment.mode}, stage ${s.deployment.stage}`]));
  for (const b of $("actions").querySelectorAll("button")) {
    const why = disabledBecause(b.dataset.action, r ? r.state : null);
    b.disabled = why !== null;
    b.title = why === null ? TITLES[b.dataset.action] : `${TITLES[b.dataset.action]}: not now — ${why}`;
  }
  $("approval-note").hidden = !(r && r.state === "awaiting_approval");
  $("live").querySelector("tbody").replaceChildren(...s.live.map((v) => el("tr", {},
    el("td", {}, v.variant), el("td", {}, v.role),
    el("td", { class: "num" }, v.requests), el("td", { class: "num" }, v.units),
    el("td", { class: "num" }, v.served), el("td", { class: "num" }, v.served_units),
    el("td", { class: "num", title: `${v.errors} of ${v.requests} requests` }, `${fmt.rate(v.errors, v.requests)} (${v.errors})`),
    el("td", { class: "num" }, v.mean_latency_ms === null ? "–" : `${fmt.num(v.mean_latency_ms, 1)} ms`),
    el("td", { class: "num" }, `${v.prompt_tokens} / ${v.completion_tokens}`),
  )));
  if (s.live.length === 0) {
    $("live").querySelector("tbody").append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No requests in this stage yet.")));
  }
  $("live-pairs").textContent = `${s.pairs} matched pairs captured in this stage so far (judged pairs, which the gate counts, are in the stage report)`;
  $("live-updated").replaceChildren("updated ", when(new Date().toISOString()));
  const d = s.latest_decision;
  $("live-decision").replaceChildren(d ? el("p", {},
    "Last transition: ", el("strong", {}, `${d.from_state} → ${d.to_state}`),
    ` by ${d.actor} at `, when(d.at), `: ${because(d.reason)}`) : "");
}

// Why an action button is disabled in a rollout state (null: it is enabled).
function disabledBecause(action, st) {
  if (!st) return "no rollout started";
  if (st === "rolled_back") return "the rollout was rolled back (start a new rollout to try again)";
  if (st === "promoted") return "the rollout is done: the candidate was promoted";
  if (action === "resume" && st !== "paused") return "the rollout is not paused";
  if (action === "pause" && st === "paused") return "the rollout is already paused";
  if (action === "pause" && st === "awaiting_approval") return "the stage is waiting for approval";
  if (action === "approve" && st !== "awaiting_approval") return "no stage is waiting for approval";
  return null;
}

// --- stages and ramp --------------------------------------------------------------------------

async function loadStages(slug) {
  let data;
  try {
    data = await api("GET", `/v1/deployments/${encodeURIComponent(slug)}/reports`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code === "rollout_not_found") {
      $("stages").querySelector("tbody").replaceChildren();
      $("stages-note").textContent = "No rollout yet: nothing to report.";
      $("ramp").replaceChildren();
      state.reports = [];
      return;
    }
    throw e;
  }
  if (state.selected !== slug) return;
  const reports = data.reports;
  state.reports = reports;
  $("stages-note").textContent = reports.length ? `Rollout ${reports[0].rollout.id} of ${reports[0].rollout.candidate}` : "";
  $("stages").querySelector("tbody").replaceChildren(...reports.map((r) => stageRow(slug, r)));
  markStage();
  const last = reports[reports.length - 1];
  // The selected stage's charts, else the current one's ("you are here" is the same on both).
  const shown = reports.find((r) => r.stage.index === state.stage) || last;
  if (shown) await loadCharts(slug, shown.stage.index);
}

// The summary card and the charts of a stage, as the admin API renders them for its report.
async function loadCharts(slug, index) {
  const c = await api("GET", `/v1/deployments/${encodeURIComponent(slug)}/reports/${index}/charts`);
  if (state.selected !== slug) return;
  const sum = c.summary;
  const card = $("summary");
  card.hidden = false;
  card.dataset.status = sum.status;
  $("summary-status").textContent = sum.status.replace("_", " ");
  $("summary-status").className = `badge ${sum.status}`;
  $("summary-headline").textContent = sum.headline;
  $("summary-stage").hidden = !sum.stage_line;
  $("summary-stage").textContent = sum.stage_line || "";
  $("summary-evidence").querySelector(".when").textContent = sum.evidence_when || "no decision";
  $("summary-evidence").querySelector(".line").textContent = sum.evidence;
  $("summary-banners").replaceChildren(...(sum.banners || []).map((b) => el("p", { class: "banner", role: "alert" }, b)));
  $("ramp").replaceChildren(svgNode(c.ramp));
  $("ramp-note").textContent = "shadow = mirrored, 0% served";
  $("forest").replaceChildren(c.forest ? svgNode(c.forest) : el("p", { class: "muted" }, "No gate interval for this stage yet."));
  $("forest-note").textContent = `stage ${index}: the intervals the gate decided on (its α after the Bonferroni split)`;
  // Which stage the charts below show (a test waits for the one it selected).
  for (const id of ["forest", "evidence", "history"]) $(id).dataset.stage = String(index);
  const report = state.reports.find((r) => r.stage.index === index);
  const d = report && report.decision;
  $("evidence").replaceChildren(d && d.evidence.length ? evidenceTable(d.evidence)
    : el("p", { class: "muted" }, "No evidence recorded."));
  $("evidence-note").textContent = d ? (d.source === "recomputed" ? "recomputed now (no decision was recorded)"
    : "as recorded by the controller") : "";
  $("history").replaceChildren(c.history ? svgNode(c.history)
    : el("p", { class: "muted" }, "No gate evaluation recorded for this stage yet."));
  $("history-note").textContent = report
    ? `stage ${index}: ${(report.gate_history || []).length} recorded evaluations, then the decision's evidence` : "";
}

// What an evidence row's counts are (as the reports print them, report::format::evidence_counts).
function evidenceCounts(e) {
  if (e.method === "chi_square_srm") {
    return e.units ? `units cand ${e.units[0]} / stable ${e.units[1]} (requests ${e.candidate_n} / ${e.stable_n})`
      : `requests cand ${e.candidate_n} / stable ${e.stable_n}`;
  }
  if (e.method === "abstention_rate") return `${e.candidate_n} of ${e.stable_n} attempts abstained`;
  return e.units ? `cand ${e.candidate_n} / stable ${e.stable_n} (${e.units[0]} / ${e.units[1]} units)`
    : `cand ${e.candidate_n} / stable ${e.stable_n}`;
}

const alphaText = (e) => (e.method === "abstention_rate" || !(e.alpha > 0)) ? "–"
  : e.alpha < 0.0001 ? e.alpha.toExponential(1) : e.alpha.toFixed(4);

// A one-line cell: the text clipped to the column with an ellipsis, the whole on hover.
const clip = (text, title) => el("span", { class: "clip", title: title || text }, text);

// The gate's evidence, one line per row (the long texts clipped, whole on hover).
function evidenceTable(evidence) {
  return el("table", { class: "evidence", id: "evidence-table" },
    el("thead", {}, el("tr", {}, ["Metric", "Cohort", "Estimate", "Interval (at α)", "Bound", "Counts", "Unit · method", "α", "Verdict"].map((h) => el("th", {}, h)))),
    el("tbody", {}, evidence.map((e) => el("tr", { "data-metric": e.metric, "data-cohort": e.cohort },
      el("td", {}, clip(e.metric)), el("td", {}, clip(e.cohort)),
      el("td", { class: "num" }, fmt.num(e.estimate, 4)),
      el("td", { class: "num" }, intervalText(e.interval)),
      el("td", { class: "num" }, fmt.num(e.bound, 4)),
      el("td", {}, clip(evidenceCounts(e))),
      el("td", { class: "method" }, clip(`${(e.unit || "none").replace("_", " ")} · ${e.method.replaceAll("_", " ")}`, e.method.replaceAll("_", " "))),
      el("td", { class: "num" }, alphaText(e)),
      el("td", { class: `verdict-${e.verdict}` }, clip(e.verdict.replaceAll("_", " ") + (e.note ? ` (${e.note})` : ""),
        e.note ? `${e.verdict.replaceAll("_", " ")}: ${e.note}` : e.verdict.replaceAll("_", " "))),
    ))));
}

// JSON has no infinity: an interval unbounded for lack of data comes as [null, null].
function intervalText(iv) {
  if (!iv) return "–";
  const end = (v, inf) => (v === null || v === undefined) ? inf : fmt.num(v, 4);
  const text = `[${end(iv[0], "−∞")}, ${end(iv[1], "+∞")}]`;
  return iv.some((v) => v === null || v === undefined) ? el("span", { title: "unbounded: too little data" }, text) : text;
}

// How a stage ended: its outcome is the state the rollout moved to, so a stage left for the
// next one reads "promoted → canary", not "canary".
function endedAs(s) {
  if (!s.outcome) return el("span", { class: "badge running" }, "running");
  if (s.outcome === "rolled_back") return el("span", { class: "badge rolled_back" }, "rolled back");
  if (s.outcome === "promoted") return el("span", { class: "badge promoted" }, "promoted (rollout done)");
  if (s.outcome === "paused") return el("span", { class: "badge paused" }, "paused");
  return el("span", {}, el("span", { class: "badge promote" }, "promoted"), ` → ${s.outcome.replace("_", " ")}`);
}

function stageRow(slug, r) {
  const s = r.stage;
  const d = r.decision;
  // One line; the whole reason on hover, the evidence in the "Gate evidence" card (the stage's link).
  const decision = d
    ? el("span", { class: "decision-line" }, el("span", { class: `badge ${d.action}` }, d.action), " ",
      clip(because(d.reason) || d.action, `${d.action}: ${because(d.reason)}${d.source === "recomputed" ? " (recomputed now)" : ""}`))
    : el("span", { class: "muted" }, "–");
  return el("tr", { "data-stage": s.index },
    el("td", { class: "num" }, el("a", { href: routeHash(slug, s.index), title: "Link to this stage" }, s.index)),
    el("td", {}, `${s.name} (${s.mode})`),
    el("td", { class: "num" }, s.mode === "shadow"
      ? shadowSplit(s.configured_percent ?? s.observed_percent)
      : `served ${fmt.share(s.configured_percent ?? s.observed_percent)}`),
    el("td", {}, when(s.started_at)),
    el("td", {}, fmt.dur(s.duration_seconds)),
    el("td", { "data-field": "outcome" }, endedAs(s)),
    el("td", {}, decision),
    el("td", {}, el("button", { type: "button", class: "secondary", onclick: () => openReport(slug, s.index) }, "HTML report")),
  );
}

// A short-lived signed URL for one stage's report (asked with the key; the URL carries none).
async function reportLink(slug, index) {
  const link = await api("POST", `/v1/deployments/${encodeURIComponent(slug)}/reports/${index}/link`);
  return new URL(link.url, location.origin).toString();
}

// Opens a stage's HTML report in a new tab, under its own URL.
async function openReport(slug, index) {
  const tab = window.open("", "_blank");
  try {
    const url = await reportLink(slug, index);
    if (tab) tab.location = url; else window.location = url;
  } catch (e) {
    if (tab) tab.close();
    showError(e);
  }
}

// --- actions ----------------------------------------------------------------------------------

const TITLES = { promote: "Promote to the next stage", rollback: "Roll back (candidate traffic to zero)",
  pause: "Pause the rollout", resume: "Resume the rollout", approve: "Approve this stage" };

function askReason(action) {
  return new Promise((resolve) => {
    const dialog = $("reason-dialog");
    $("reason-title").textContent = `${TITLES[action]}: ${state.selected}`;
    $("reason-input").value = "";
    const done = (value) => {
      $("reason-form").onsubmit = null;
      $("reason-cancel").onclick = null;
      dialog.close();
      resolve(value);
    };
    $("reason-form").onsubmit = (ev) => {
      ev.preventDefault();
      const reason = $("reason-input").value.trim();
      if (reason) done(reason);
    };
    $("reason-cancel").onclick = () => done(null);
    dialog.showModal();
    $("reason-input").focus();
  });
}

async function act(action) {
  const slug = state.selected;
  const reason = await askReason(action);
  if (!reason) return;
  try {
    await api("POST", `/v1/deployments/${encodeURIComponent(slug)}/rollout/${action}`, { reason });
    showError(null);
  } catch (e) {
    showError(e);
  }
  await Promise.all([loadList().catch(showError), refreshDetail()]);
}

// --- start ------------------------------------------------------------------------------------

$("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); useKey($("key-input").value); });
$("key-forget").addEventListener("click", forgetKey);
for (const b of $("actions").querySelectorAll("button")) b.addEventListener("click", () => act(b.dataset.action));
window.addEventListener("hashchange", () => applyRoute().catch(showError));
if (state.key) useKey(state.key);
