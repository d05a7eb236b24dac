// postroom dashboard: polls the admin JSON API with the operator's bearer token.
// Every value from the API is written with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "postroom.admin.token";
const POLL_MS = 2000;
const PAGE_SIZE = 25;
const FAILED = "dead-lettered";
// The tabs of a queue; "dead-lettered" lists the dead letters (tracebacks, retry, remove).
const STATES = ["queued", "deferred", "running", "retrying", "complete", "failed", FAILED, "cancelled"];

const view = { page: "queues", queue: null, state: FAILED, offset: 0, job: null, group: null };
// The audit page's filters and where its current page starts (null: the newest records).
const audit = { filters: {}, cursor: null, next: null };
let polling = null;
let inFlight = false;
let again = false; // a refresh was asked for while one ran: run another after it
let errorSource = null;
let stats = new Map(); // queue name -> its last QueueStats
// Whether the session's token may change things (GET session); a read-only one may not, so
// every change control is disabled. The API refuses its changes whatever the page shows.
let mayChange = false;
let sessionKnown = false; // GET session answered (else it is asked again at each refresh)
const READ_ONLY_TIP = "read-only token: changes need an operator token";
// Tabs whose count a queue's numbers give exactly.
// A job in one of these states can still be cancelled.
const CANCELLABLE = ["queued", "deferred", "retrying", "running"];
const TAB_COUNTS = { queued: "waiting", running: "active", [FAILED]: "dead_lettered_now" };

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else node[name] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

// Props of an element that opens something: by click, or by Enter from the keyboard.
function opens(open) {
  return {
    tabIndex: 0,
    on: {
      click: open,
      keydown: (event) => {
        if (event.key === "Enter" && event.target === event.currentTarget) open();
      },
    },
  };
}

// A control that changes something (marked data-change): disabled, with the reason as its
// tooltip, for a read-only session.
function guard(button) {
  button.dataset.change = "";
  button.disabled = !mayChange;
  button.title = mayChange ? "" : READ_ONLY_TIP;
  return button;
}

function changeButton(props, label) {
  return guard(el("button", { type: "button", ...props }, label));
}

function guardAll() {
  for (const button of document.querySelectorAll("[data-change]")) guard(button);
}

// ---- the API ----

class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

function errorDetail(body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return body ? JSON.stringify(body) : "";
}

async function api(method, path, query) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  // The audit trail records calls from this page as `via: dashboard`.
  const headers = { Accept: "application/json", "X-Postroom-Client": "dashboard" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const params = query ? `?${new URLSearchParams(query)}` : "";
  let response;
  try {
    // No leading slash: relative to the page, so a mount prefix is kept.
    response = await fetch(path + params, {
      method,
      headers,
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(`${method} ${path}: cannot reach the admin API (${err.message})`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (response.status === 401) {
    logout(`The token was refused (${response.status}): ${errorDetail(body)}`);
    throw new ApiError("unauthorized");
  }
  if (response.status === 403) {
    // A read-only token: it may look, so stay logged in and say why the change was refused.
    throw new ApiError(`${method} ${path}: refused (403): ${errorDetail(body)}`, 403);
  }
  if (!response.ok) {
    throw new ApiError(
      `${method} ${path}: ${response.status} ${errorDetail(body) || response.statusText}`,
      response.status,
    );
  }
  return body;
}

// Lists come bare or as a page object; take the items either way.
function itemsOf(data) {
  if (Array.isArray(data)) return data;
  for (const name of ["items", "jobs", "dead_letters", "queues"]) {
    if (data && Array.isArray(data[name])) return data[name];
  }
  return [];
}

const enc = encodeURIComponent;

// ---- errors ----

function showError(message, source = "action") {
  errorSource = source;
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError(source) {
  if (source && errorSource !== source) return;
  errorSource = null;
  $("error").hidden = true;
}

// ---- formatting ----

function when(value) {
  if (value === null || value === undefined || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString();
}

function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

function stateBadge(state) {
  return el("span", { className: `state state-${state}`, dataset: { testid: "state" } }, state);
}

// Replace a list's children, reusing the nodes whose data did not change (keeps <details> open).
function reconcile(list, items, keyOf, render) {
  const old = new Map([...list.children].map((node) => [node.dataset.key, node]));
  const nodes = items.map((item) => {
    const key = keyOf(item);
    // The selection is drawn into the nodes, so a change of it redraws them too.
    const stamp = JSON.stringify([item, view.queue, view.job]);
    const existing = old.get(key);
    if (existing && existing._stamp === stamp) return existing;
    const node = render(item);
    node.dataset.key = key;
    node._stamp = stamp;
    if (existing && existing.querySelector("details[open]")) {
      const details = node.querySelector("details");
      if (details) details.open = true;
    }
    return node;
  });
  list.replaceChildren(...nodes);
}

// ---- queues ----

function renderQueues(queues) {
  stats = new Map(queues.map((q) => [q.queue, q]));
  reconcile($("queues").tBodies[0], queues, (q) => q.queue, (q) => {
    const action = q.paused ? "resume" : "pause";
    const row = el("tr", {
      className: q.queue === view.queue ? "selected" : "",
      dataset: { testid: "queue-row", queue: q.queue },
      ...opens(() => openQueue(q.queue)),
    });
    const name = el("td", { className: "name" }, q.queue);
    if (q.paused) name.append(" ", el("span", { className: "badge", dataset: { testid: "paused" } }, "paused"));
    row.append(name);
    for (const field of ["waiting", "active", "delayed", "dead_lettered_now", "completed", "failed", "retried", "cancelled", "deferred"]) {
      row.append(el("td", { className: "count", dataset: { testid: `count-${field}` } }, q[field] ?? 0));
    }
    const button = changeButton({
      dataset: { testid: `queue-${action}` },
      on: {
        click: (event) => {
          event.stopPropagation();
          act(() => api("POST", `queues/${enc(q.queue)}/${action}`));
        },
      },
    }, action === "pause" ? "Pause" : "Resume");
    row.append(el("td", {}, button));
    return row;
  });
}

// ---- rate limits ----

function renderRateLimits(limits) {
  const table = $("rate-limits");
  table.hidden = limits.length === 0;
  reconcile(table.tBodies[0], limits, (l) => l.name, (l) => {
    const row = el("tr", { dataset: { testid: "rate-limit-row", limit: l.name } });
    row.append(el("td", { className: "name" }, l.name));
    row.append(el("td", { dataset: { testid: "rate-limit-limit" } }, l.limit));
    row.append(el("td", { className: "count", dataset: { testid: "rate-limit-rate" } }, l.rate.toFixed(2)));
    row.append(el("td", { dataset: { testid: "rate-limit-at-limit" } }, l.at_limit ? "yes" : "no"));
    for (const field of ["throttled", "waiting", "held"]) {
      row.append(el("td", { className: "count", dataset: { testid: `rate-limit-${field}` } }, l[field] ?? 0));
    }
    return row;
  });
}

function openQueue(queue) {
  if (view.queue !== queue) Object.assign(view, { queue, offset: 0 });
  navigate();
}

function renderTabs() {
  const numbers = stats.get(view.queue) || {};
  const label = (state) => (state in TAB_COUNTS ? `${state} (${numbers[TAB_COUNTS[state]] ?? 0})` : state);
  const tabs = STATES.map((state) => el("button", {
    type: "button",
    role: "tab",
    className: state === view.state ? "active" : "",
    ariaSelected: String(state === view.state),
    dataset: { testid: `tab-${state}`, state },
    on: { click: () => { Object.assign(view, { state, offset: 0 }); navigate(); } },
  }, label(state)));
  $("state-tabs").replaceChildren(...tabs);
}

// ---- a queue's jobs ----

function renderJob(job) {
  const item = el("li", {
    className: `job ${job.job_id === view.job ? "selected" : ""}`,
    dataset: { testid: "job-row", jobId: job.job_id },
    ...opens(() => openJob(job.job_id)),
  });
  item.append(
    el("code", { className: "id" }, job.job_id),
    stateBadge(job.state),
    el("span", { className: "task" }, job.task ?? "?"),
    el("span", { className: "meta" }, `try ${job.tries ?? 0} · ${job.priority ?? ""} · ${when(job.enqueued_at)}`),
  );
  if (job.progress && job.progress.percentage !== null && job.progress.percentage !== undefined) {
    item.append(el("progress", { max: 100, value: job.progress.percentage }));
  }
  return item;
}

function renderLetter(letter) {
  const last = letter.errors[letter.errors.length - 1] || { type: letter.malformed ? "malformed" : "?", message: letter.malformed || "", traceback: "" };
  const item = el("li", {
    className: `job letter ${letter.job_id === view.job ? "selected" : ""}`,
    dataset: { testid: "dead-letter", jobId: letter.job_id },
  });
  const head = el("div", { className: "head", ...opens(() => openJob(letter.job_id)) },
    el("code", { className: "id" }, letter.job_id),
    stateBadge(FAILED),
    el("span", { className: "task" }, letter.task ?? "?"),
    el("span", { className: "meta" }, `${letter.reason} after ${letter.tries} ${letter.tries === 1 ? "try" : "tries"} · ${when(letter.failed_at)}`),
  );
  const error = el("div", { className: "error-line", dataset: { testid: "dead-letter-error" } },
    `${last.type}: ${last.message}`);
  const details = el("details", {},
    el("summary", {}, `traceback${letter.errors.length > 1 ? `s (${letter.errors.length} tries)` : ""}`),
    ...letter.errors.map((e) => el("pre", { className: "traceback", dataset: { testid: "traceback" } },
      `try ${e.attempt} · ${when(e.at)}\n${e.traceback}`)));
  const buttons = el("div", { className: "actions" },
    changeButton({
      dataset: { testid: "retry" },
      on: { click: () => retry(letter.queue, letter.job_id) },
    }, "Retry"),
    changeButton({
      className: "danger",
      dataset: { testid: "remove" },
      on: { click: () => remove(letter.queue, letter.job_id) },
    }, "Remove"));
  item.append(head, error, details, buttons);
  return item;
}

async function loadJobs() {
  const queue = enc(view.queue);
  const page = { offset: String(view.offset), limit: String(PAGE_SIZE) };
  const list = $("jobs");
  let data;
  let items;
  if (view.state === FAILED) {
    data = await api("GET", `queues/${queue}/failed`, page);
    items = itemsOf(data);
    if (list.dataset.kind !== FAILED) list.replaceChildren();
    list.dataset.kind = FAILED;
    reconcile(list, items, (l) => l.job_id, renderLetter);
  } else {
    data = await api("GET", `queues/${queue}/jobs`, { state: view.state, ...page });
    items = itemsOf(data);
    if (list.dataset.kind !== "jobs") list.replaceChildren();
    list.dataset.kind = "jobs";
    reconcile(list, items, (j) => j.job_id, renderJob);
  }
  $("jobs-empty").hidden = items.length > 0;
  $("failed-actions").hidden = view.state !== FAILED || items.length === 0;
  // A page object says how many there are in all; a bare list only that this page is full.
  const total = typeof data.total === "number" ? data.total : null;
  const last = view.offset + items.length;
  $("page-prev").disabled = view.offset === 0;
  $("page-next").disabled = total === null ? items.length < PAGE_SIZE : last >= total;
  const range = items.length ? `${view.offset + 1}–${last}` : "";
  $("page-info").textContent = total === null ? range : `${range} of ${total}`.trim();
}

// ---- event dead letters (the RabbitMQ transport), by handler group ----

function renderEventLetter(letter) {
  const item = el("li", {
    className: "job letter",
    dataset: { testid: "event-dead-letter", letterId: letter.id },
  });
  item.append(
    el("div", { className: "head" },
      el("code", { className: "id" }, letter.id),
      stateBadge(FAILED),
      el("span", { className: "task" }, letter.type ?? "?"),
      el("span", { className: "meta" }, `${letter.reason} after ${letter.tries} ${letter.tries === 1 ? "try" : "tries"} · ${when(letter.dead_at)}`)),
    el("div", { className: "error-line", dataset: { testid: "event-dead-letter-error" } }, letter.error),
    el("details", {},
      el("summary", {}, "event (message bodies masked)"),
      el("pre", { dataset: { testid: "event-body" } }, letter.body ?? json(letter.event))),
    el("div", { className: "actions" },
      changeButton({
        dataset: { testid: "event-retry" },
        on: { click: () => act(() => api("POST", `events/${enc(letter.group)}/failed/${enc(letter.id)}/retry`)) },
      }, "Retry"),
      changeButton({
        className: "danger",
        dataset: { testid: "event-remove" },
        on: { click: () => removeEvent(letter.group, letter.id) },
      }, "Remove")));
  return item;
}

function removeEvent(group, id) {
  if (!window.confirm(`Delete event dead letter ${id}? Group ${group} will not handle it again.`)) return;
  return act(() => api("DELETE", `events/${enc(group)}/failed/${enc(id)}`));
}

async function loadEvents() {
  const known = await api("GET", "events/groups");
  $("events").hidden = !known.enabled;
  if (!known.enabled) return;
  if (!known.groups.includes(view.group)) view.group = known.groups[0] ?? null;
  const tabs = known.groups.map((group) => el("button", {
    type: "button",
    role: "tab",
    className: group === view.group ? "active" : "",
    ariaSelected: String(group === view.group),
    dataset: { testid: `event-group-${group}`, group },
    on: { click: () => { view.group = group; navigate(); } },
  }, group));
  $("event-groups").replaceChildren(...tabs);
  let items = [];
  let total = 0;
  if (view.group) {
    const page = await api("GET", `events/${enc(view.group)}/failed`, { limit: String(PAGE_SIZE) });
    items = itemsOf(page);
    total = page.total;
  }
  reconcile($("event-letters"), items, (l) => l.id, renderEventLetter);
  $("event-letters-empty").hidden = items.length > 0;
  $("event-actions").hidden = items.length === 0;
  $("event-letters-info").textContent = total > items.length ? `the oldest ${items.length} of ${total}` : "";
}

// ---- one job ----

function openJob(jobId) {
  view.job = jobId;
  navigate();
}

// Fill a <pre> and its heading, or hide both when there is nothing to show.
function show(id, text) {
  const node = $(id);
  const visible = Boolean(text);
  node.hidden = !visible;
  $(`${id}-title`).hidden = !visible;
  node.textContent = visible ? text : "";
}

async function loadJob() {
  let job;
  try {
    job = await api("GET", `jobs/${enc(view.job)}`);
  } catch (err) {
    if (err.status !== 404) throw err;
    // Removed, or its result expired: say so in the panel rather than as an error.
    job = { job_id: view.job, state: "not found" };
  }
  $("job-id").textContent = job.job_id;
  const badge = $("job-state");
  badge.textContent = job.state;
  badge.className = `state state-${job.state.replace(" ", "-")}`;
  $("job-queue").textContent = job.queue ?? "—";
  $("job-task").textContent = job.task ?? "—";
  $("job-priority").textContent = job.priority ?? "—";
  $("job-tries").textContent = job.tries ?? 0;
  $("job-enqueued").textContent = when(job.enqueued_at);
  $("job-finished").textContent = when(job.finished_at);
  const progress = job.progress || {};
  const bar = $("job-progress");
  if (typeof progress.percentage === "number") bar.value = progress.percentage;
  else if (job.state === "complete") bar.value = 100;
  else if (job.state === "running") bar.removeAttribute("value"); // indeterminate: no report yet
  else bar.value = 0;
  const steps = progress.total_steps ? `step ${progress.current_step ?? 0}/${progress.total_steps}` : "";
  const percent = typeof progress.percentage === "number" ? `${Math.round(progress.percentage)}%` : "";
  $("job-progress-text").textContent = [percent, steps, progress.step].filter(Boolean).join(" · ") || "—";
  show("job-error", job.error);
  show("job-result", job.state === "complete" ? json(job.result) : "");
  $("job-payload").textContent = job.payload === undefined || job.payload === null ? "—" : json(job.payload);
  $("job-actions").hidden = job.state !== FAILED;
  $("job-cancel-actions").hidden = !CANCELLABLE.includes(job.state);
  $("job").dataset.queue = job.queue ?? "";
  $("job").hidden = false;
}

// ---- actions ----

async function act(call) {
  try {
    await call();
    clearError();
  } catch (err) {
    if (err.message !== "unauthorized") showError(err.message);
  }
  await refresh();
}

function retry(queue, jobId) {
  // Follow the retried job, so the operator sees it run and complete.
  view.job = jobId;
  return act(() => api("POST", `queues/${enc(queue)}/failed/${enc(jobId)}/retry`));
}

function remove(queue, jobId) {
  // Deleting a dead letter loses the job for good: ask first.
  if (!window.confirm(`Delete dead letter ${jobId}? The job will not run again.`)) return;
  if (view.job === jobId) view.job = null;
  return act(() => api("DELETE", `queues/${enc(queue)}/failed/${enc(jobId)}`));
}

// ---- the audit trail ----

function renderAuditRow(record) {
  const row = el("tr", {
    dataset: { testid: "audit-row", action: record.action, outcome: record.outcome },
  });
  const cells = [
    ["at", when(record.at)],
    ["actor", record.actor],
    ["role", record.role ?? "—"],
    ["via", record.via],
    ["source", record.source ?? "—"],
    ["action", record.action],
    ["queue", record.queue ?? "—"],
    ["jobs", record.job_ids.join(" ") || "—"],
    ["count", record.count ?? "—"],
    ["outcome", record.outcome],
    ["reason", record.reason ?? ""],
  ];
  for (const [name, value] of cells) {
    const className = name === "outcome" ? `outcome-${record.outcome}` : name;
    row.append(el("td", { className, dataset: { testid: `audit-${name}` } }, value));
  }
  return row;
}

async function loadAudit() {
  const query = { limit: String(PAGE_SIZE) };
  for (const [name, value] of Object.entries(audit.filters)) if (value) query[name] = value;
  if (audit.cursor) query.cursor = audit.cursor;
  const data = await api("GET", "audit", query);
  const body = $("audit-table").tBodies[0];
  reconcile(body, data.items, (r) => r.id, renderAuditRow);
  $("audit-empty").hidden = data.items.length > 0;
  audit.next = data.next_cursor;
  $("audit-older").disabled = !audit.next;
  $("audit-newest").disabled = !audit.cursor;
}

function showPage(page) {
  view.page = page;
  $("nav-queues").classList.toggle("active", page === "queues");
  $("nav-audit").classList.toggle("active", page === "audit");
  navigate();
}

// ---- navigation and polling ----

// The view lives in the URL's fragment, so a reload (or a shared link) shows the same thing.
function navigate() {
  const params = new URLSearchParams();
  if (view.page === "audit") params.set("page", "audit");
  if (view.queue) params.set("queue", view.queue);
  if (view.queue) params.set("state", view.state);
  if (view.offset) params.set("offset", String(view.offset));
  if (view.job) params.set("job", view.job);
  if (view.group) params.set("group", view.group);
  history.replaceState(null, "", `#${params}`);
  refresh();
}

function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  view.page = params.get("page") === "audit" ? "audit" : "queues";
  view.queue = params.get("queue");
  view.state = STATES.includes(params.get("state")) ? params.get("state") : FAILED;
  view.offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  view.job = params.get("job");
  view.group = params.get("group");
}

async function loadQueuesPage() {
  renderQueues(itemsOf(await api("GET", "queues")));
  renderRateLimits(itemsOf(await api("GET", "rate-limits")));
  await loadEvents();
  $("queue").hidden = !view.queue;
  if (view.queue) {
    $("queue-name").textContent = view.queue;
    renderTabs();
    await loadJobs();
  }
  if (view.job) await loadJob();
  else $("job").hidden = true;
}

async function refresh() {
  if (sessionStorage.getItem(TOKEN_KEY) === null) return;
  if (inFlight) {
    // The running one may have read before an action changed things.
    again = true;
    return;
  }
  inFlight = true;
  const onAudit = view.page === "audit";
  $("dashboard").hidden = onAudit;
  $("audit").hidden = !onAudit;
  try {
    // The controls stay disabled until the session's role is known.
    if (!sessionKnown && !(await showSession())) return; // refused: logged out
    if (onAudit) await loadAudit();
    else await loadQueuesPage();
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    clearError("poll");
  } catch (err) {
    if (err.message !== "unauthorized") showError(err.message, "poll");
  } finally {
    inFlight = false;
  }
  if (again) {
    again = false;
    await refresh();
  }
}

// The token is tried once (GET session); a refused one is one refused login in the audit
// trail, and the login form is shown again.
async function login(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  clearError();
  if (!(await showSession())) return;
  $("login").hidden = true;
  $("dashboard").hidden = view.page === "audit";
  $("audit").hidden = view.page !== "audit";
  $("pages").hidden = false;
  $("logout").hidden = false;
  refresh();
  if (polling === null) polling = setInterval(refresh, POLL_MS);
}

// Who is logged in (the API refuses a read-only token's changes whatever the page shows).
// False when the token was refused (the login form is back).
async function showSession() {
  try {
    const who = await api("GET", "session");
    mayChange = who.may_change === true;
    sessionKnown = true;
    guardAll();
    $("whoami").textContent = `${who.name} (${who.role})`;
    $("whoami").hidden = false;
  } catch (err) {
    if (err.message === "unauthorized") return false;
    showError(err.message, "poll");
  }
  return true;
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  mayChange = false;
  sessionKnown = false;
  guardAll();
  if (polling !== null) clearInterval(polling);
  polling = null;
  $("dashboard").hidden = true;
  $("audit").hidden = true;
  $("pages").hidden = true;
  $("whoami").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("token").value = "";
  $("token").focus();
  if (message) showError(message, "login");
}

document.addEventListener("DOMContentLoaded", () => {
  readFragment();
  $("nav-queues").classList.toggle("active", view.page === "queues");
  $("nav-audit").classList.toggle("active", view.page === "audit");
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", () => logout());
  $("nav-queues").addEventListener("click", () => showPage("queues"));
  $("nav-audit").addEventListener("click", () => showPage("audit"));
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    audit.filters = Object.fromEntries(new FormData(event.target).entries());
    audit.cursor = null;
    refresh();
  });
  $("audit-older").addEventListener("click", () => {
    audit.cursor = audit.next;
    refresh();
  });
  $("audit-newest").addEventListener("click", () => {
    audit.cursor = null;
    refresh();
  });
  $("error-dismiss").addEventListener("click", () => clearError());
  $("retry-all").addEventListener("click", () =>
    act(() => api("POST", `queues/${enc(view.queue)}/failed/retry`)));
  $("job-retry").addEventListener("click", () => retry($("job").dataset.queue, view.job));
  $("job-remove").addEventListener("click", () => remove($("job").dataset.queue, view.job));
  $("event-retry-all").addEventListener("click", () =>
    act(() => api("POST", `events/${enc(view.group)}/failed/retry`)));
  $("event-purge").addEventListener("click", () => {
    if (!window.confirm(`Delete every event dead letter of group ${view.group}?`)) return;
    act(() => api("DELETE", `events/${enc(view.group)}/failed`));
  });
  $("job-cancel").addEventListener("click", () =>
    act(() => api("POST", `jobs/${enc(view.job)}/cancel`)));
  $("page-prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE_SIZE);
    navigate();
  });
  $("page-next").addEventListener("click", () => {
    view.offset += PAGE_SIZE;
    navigate();
  });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token !== null) login(token);
  else openWithoutToken();
});

// An admin app served local-only has no token: then there is nothing to ask for. (Asking
// the API itself without a token would be recorded as a refused login.)
async function openWithoutToken() {
  let open = false;
  try {
    const answer = await fetch("dashboard-auth", { headers: { Accept: "application/json" }, cache: "no-store" });
    open = answer.ok && (await answer.json()).token === false;
  } catch {
    // Unreachable: the login form stays, and the first call after it says why.
  }
  if (open) login("");
  else logout();
}
