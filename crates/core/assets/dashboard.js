// vapi-edge dashboard: reads /api/summary and /api/calls with the token kept in
// this tab's sessionStorage, and refreshes when the relay says a call changed
// (Server-Sent Events from dashboard_relay_url), or every poll_ms when there is
// no relay or it is unreachable. Every value is written with textContent: call
// data never becomes markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("vapi-edge-token") || "",
  etags: new Map(),
  calls: [],          // newest first, every page loaded so far
  cursor: null,       // of the oldest page loaded
  seen: new Set(),    // call ids already shown, to highlight new ones
  stream: null,
  streamUp: false,
  timer: null,
  pollMs: 1000,
  refreshing: null,
  pending: false,
};

async function api(path) {
  const headers = { Authorization: "Bearer " + state.token };
  const etag = state.etags.get(path);
  if (etag) headers["If-None-Match"] = etag;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    signOut(body.error || "The token was refused.");
    throw new Error("refused");
  }
  if (response.status === 304) return null;
  if (!response.ok) throw new Error(path + ": " + response.status);
  const tag = response.headers.get("ETag");
  if (tag) state.etags.set(path, tag);
  return response.json();
}

function filters() {
  const params = new URLSearchParams();
  const status = $("filter-status").value;
  const direction = $("filter-direction").value;
  if (status) params.set("status", status);
  if (direction) params.set("direction", direction);
  return params;
}

function callsPath(cursor) {
  const params = filters();
  params.set("limit", "25");
  if (cursor) params.set("cursor", cursor);
  return "/api/calls?" + params.toString();
}

// One refresh at a time; a request for another while one runs is kept.
function refresh() {
  if (state.refreshing) {
    state.pending = true;
    return state.refreshing;
  }
  state.refreshing = (async () => {
    try {
      const [summary, page] = await Promise.all([api("/api/summary"), api(callsPath(null))]);
      if (summary) renderSummary(summary);
      if (page) mergeFirstPage(page);
    } catch (error) {
      if (error.message !== "refused") console.warn(error);
    } finally {
      state.refreshing = null;
      if (state.pending) {
        state.pending = false;
        refresh();
      }
    }
  })();
  return state.refreshing;
}

function renderSummary(summary) {
  $("calls-today").textContent = summary.calls_today ?? "–";
  $("in-progress").textContent = summary.in_progress ?? "–";
  const hour = summary.last_hour || {};
  $("success").textContent = hour.success_ratio == null ? "–" : (hour.success_ratio * 100).toFixed(1) + " %";
  $("p95").textContent = hour.p95_seconds == null ? "–" : Math.round(hour.p95_seconds * 1000) + " ms";
  const failures = summary.agent_lookup_failures_24h ?? 0;
  $("lookup-failures").textContent = failures;
  $("lookup-failures").classList.toggle("bad", failures > 0);
  // Calls no organisation owns (only an all-organisation token sees them):
  // `vapi-edge-host map-org` attributes them (README, "Who owns a call").
  const unassigned = summary.unassigned_calls ?? 0;
  $("unassigned-card").hidden = summary.scope !== "all";
  $("unassigned").textContent = unassigned;
  $("unassigned").classList.toggle("bad", unassigned > 0);
  renderReconciliation(summary.reconciliation || []);
  $("scope").textContent = summary.scope === "all" ? "all organisations" :
    "organisation " + (summary.scope || []).join(", ");
  drawChart(summary.hourly || []);
  const live = summary.live || {};
  if (live.poll_ms) state.pollMs = live.poll_ms;
  if (live.relay_url && !state.stream) subscribe(live.relay_url);
  schedule();
}

// When reconciliation with Vapi's API last ran and what it found (README,
// "Reconciliation"): calls whose webhooks never came, recorded from Vapi.
function renderReconciliation(scopes) {
  const ran = scopes.filter((s) => s.last_run_at);
  $("reconcile-card").hidden = ran.length === 0;
  if (!ran.length) return;
  const found = ran.reduce((sum, s) => sum + (s.missing || 0), 0);
  const failed = ran.some((s) => s.outcome !== "complete" && s.outcome !== "more");
  $("reconcile").textContent = failed ? "failing" : found + " missing found";
  $("reconcile").classList.toggle("bad", failed || found > 0);
  const last = ran.map((s) => s.last_run_at).sort().pop();
  $("reconcile-when").textContent = "last run " + time(last) +
    (ran.length > 1 ? " · " + ran.length + " scopes" : "");
}

function drawChart(hours) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(1, ...hours.map((h) => h.calls));
  const width = 720 / Math.max(hours.length, 1);
  hours.forEach((h, i) => {
    const height = (h.calls / max) * 96;
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", String(i * width + 2));
    rect.setAttribute("y", String(104 - height));
    rect.setAttribute("width", String(width - 4));
    rect.setAttribute("height", String(height));
    const title = document.createElementNS(ns, "title");
    title.textContent = h.hour.slice(11, 16) + " UTC: " + h.calls + " calls";
    rect.appendChild(title);
    svg.appendChild(rect);
    if (i % 3 === 0) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(i * width + 2));
      label.setAttribute("y", "118");
      label.textContent = h.hour.slice(11, 16);
      svg.appendChild(label);
    }
  });
}

function mergeFirstPage(page) {
  const fresh = page.calls || [];
  const ids = new Set(fresh.map((c) => c.vapi_call_id));
  // The first page replaces what it covers; older pages already loaded stay.
  const oldest = fresh.length ? fresh[fresh.length - 1].created_at : null;
  const older = state.calls.filter((c) => !ids.has(c.vapi_call_id) &&
    oldest !== null && new Date(c.created_at) < new Date(oldest));
  state.calls = fresh.concat(older);
  if (state.cursor === null || !older.length) state.cursor = page.next_cursor;
  renderCalls();
}

async function loadMore() {
  if (!state.cursor) return;
  const page = await api(callsPath(state.cursor));
  if (!page) return;
  const ids = new Set(state.calls.map((c) => c.vapi_call_id));
  state.calls = state.calls.concat((page.calls || []).filter((c) => !ids.has(c.vapi_call_id)));
  state.cursor = page.next_cursor;
  renderCalls();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null || text === "" ? "–" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function time(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

function renderCalls() {
  const body = $("calls");
  const rows = state.calls.map((call) => {
    const row = document.createElement("tr");
    row.dataset.callId = call.vapi_call_id;
    row.dataset.status = call.status || "";
    row.dataset.direction = call.direction || "";
    if (state.seen.size && !state.seen.has(call.vapi_call_id + "|" + call.status)) row.className = "fresh";
    cell(row, time(call.started_at || call.created_at));
    cell(row, call.direction);
    const status = document.createElement("span");
    status.className = "status " + (call.status || "");
    status.textContent = call.status || "–";
    const statusCell = cell(row, "");
    statusCell.replaceChildren(status);
    if (call.reconciled) {
      // Its webhooks never came: recorded from Vapi's API.
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = "reconciled";
      mark.title = "Recorded from Vapi's API: its webhooks never arrived";
      statusCell.appendChild(mark);
    }
    cell(row, call.from_number);
    cell(row, call.to_number);
    cell(row, call.org_id == null ? "no organisation" : call.agent_name, call.org_id == null ? "bad" : "");
    cell(row, call.lead_name || (call.lead_id ? "linked" : null));
    cell(row, call.duration_seconds == null ? null : Math.round(call.duration_seconds) + " s");
    cell(row, call.cost == null ? null : "$" + Number(call.cost).toFixed(2));
    cell(row, call.ended_reason);
    cell(row, call.summary, "summary");
    row.addEventListener("click", () => showDetail(call.vapi_call_id));
    return row;
  });
  body.replaceChildren(...rows);
  state.seen = new Set(state.calls.map((c) => c.vapi_call_id + "|" + c.status));
  $("empty").hidden = state.calls.length > 0;
  $("more").hidden = !state.cursor;
  window.vapiEdgeRenderedAt = performance.now();
}

async function showDetail(id) {
  state.etags.delete("/api/calls/" + encodeURIComponent(id));
  const call = await api("/api/calls/" + encodeURIComponent(id)).catch(() => null);
  if (!call) return;
  $("detail-title").textContent = id;
  const fields = [
    ["Organisation", call.org_id ?? "none yet (vapi-edge-host map-org attributes it)"], ["Direction", call.direction], ["Status", call.status],
    ["From", call.from_number], ["To", call.to_number], ["Agent", call.agent_name],
    ["Lead", call.lead_name || call.lead_id], ["Started", time(call.started_at)],
    ["Ended", time(call.ended_at)], ["Ended reason", call.ended_reason],
    ["Duration", call.duration_seconds == null ? null : call.duration_seconds + " s"],
    ["Cost", call.cost == null ? null : "$" + call.cost],
    ["Success evaluation", call.success_evaluation], ["Summary", call.summary],
  ];
  const list = $("detail-fields");
  list.replaceChildren();
  for (const [label, value] of fields) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value == null || value === "" ? "–" : String(value);
    list.append(dt, dd);
  }
  if (call.recording_url && /^https?:\/\//.test(call.recording_url)) {
    const dt = document.createElement("dt");
    dt.textContent = "Recording";
    const dd = document.createElement("dd");
    const link = document.createElement("a");
    link.href = call.recording_url;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    link.textContent = "listen";
    dd.appendChild(link);
    list.append(dt, dd);
  }
  for (const [label, value] of [["Structured data", call.structured_data], ["Costs", call.costs]]) {
    if (value == null) continue;
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(value, null, 2);
    dd.appendChild(pre);
    list.append(dt, dd);
  }
  const events = (call.events || []).map((e) => {
    const row = document.createElement("tr");
    cell(row, time(e.received_at));
    cell(row, e.message_type);
    cell(row, e.outcome);
    cell(row, e.status_code);
    cell(row, e.duration_ms == null ? null : e.duration_ms.toFixed(1));
    return row;
  });
  $("detail-events").replaceChildren(...events);
  $("detail").hidden = false;
}

// Live updates: the relay's stream when there is one, polling otherwise.
function subscribe(relayUrl) {
  const url = relayUrl.replace(/\/+$/, "") + "/events/stream?token=" + encodeURIComponent(state.token);
  const stream = new EventSource(url);
  state.stream = stream;
  stream.addEventListener("open", () => { state.streamUp = true; showLive(); schedule(); });
  stream.addEventListener("call.event", () => refresh());
  stream.addEventListener("reset", () => refresh());
  stream.addEventListener("error", () => { state.streamUp = false; showLive(); schedule(); });
}

function showLive() {
  const live = $("live");
  live.className = "on";
  live.textContent = state.streamUp ? "live (relay)" : "live (polling every " + state.pollMs / 1000 + " s)";
}

// With the relay up, a slow poll only catches what a dropped stream missed.
function schedule() {
  clearTimeout(state.timer);
  const every = state.streamUp ? 15000 : state.pollMs;
  state.timer = setTimeout(() => refresh().finally(schedule), every);
  showLive();
}

// Forgets everything read with the previous token: its stream, its calls.
function reset() {
  if (state.stream) state.stream.close();
  state.stream = null;
  state.streamUp = false;
  clearTimeout(state.timer);
  state.etags.clear();
  state.calls = [];
  state.cursor = null;
  state.seen = new Set();
}

function signOut(message) {
  sessionStorage.removeItem("vapi-edge-token");
  state.token = "";
  reset();
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("error").textContent = message || "";
}

function start() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  refresh();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  reset();
  state.token = $("token").value.trim();
  sessionStorage.setItem("vapi-edge-token", state.token);
  $("error").textContent = "";
  start();
});
$("signout").addEventListener("click", () => signOut(""));
$("more").addEventListener("click", () => loadMore());
$("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
for (const id of ["filter-status", "filter-direction"]) {
  $(id).addEventListener("change", () => {
    state.calls = []; state.cursor = null; state.seen = new Set(); state.etags.clear(); refresh();
  });
}

if (state.token) start(); else signOut("");
