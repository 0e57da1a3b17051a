// Switchboard operator page, the main module: the session (the API key asked for once and kept
// in sessionStorage, this tab only; sent only in the Authorization header of same-origin
// requests, never written to the page or the console), the sources table with its Reconnect /
// Pause / Resume buttons, and the wiring of the other modules: api.js (REST), stream.js (the live
// stream), events.js (the events tail), runs.js, run_counts.js and schedules.js (the runs
// panel), view.js (rendering of sources and events).
import { Api, SignedOut } from "/api.js";
import { EventsTail } from "/events.js";
import { RunCounts } from "/run_counts.js";
import { RecentRuns } from "/runs.js";
import { Schedules } from "/schedules.js";
import { LiveStream } from "/stream.js";
import * as view from "/view.js";

const KEY_STORAGE = "switchboard.apiKey";
const REFRESH_MS = 15000;
const RUN_TOPICS = ["run.created", "run.claimed", "run.completed", "run.failed", "run.retrying", "run.expired",
  "run.cancelled", "run.retried"];
const TOPICS = ["source.status", "event.received", "event.dispatched", ...RUN_TOPICS];

const $ = (id) => document.getElementById(id);

let isAdmin = false; // the source buttons need an admin key
const sources = new Map(); // id → {id, name, source, status}
const automations = new Map(); // id → name
let automationsLoadedAt = 0;
let refreshTimer = null;
const rest = new Api((message) => signOut(message));
const events = new EventsTail(rest, automations);
const counts = new RunCounts(rest, quietly);
const runs = new RecentRuns(rest, (id) => automations.get(id), quietly, notice, () => quietly(counts.load()));
const schedules = new Schedules(rest);
const stream = new LiveStream(rest, TOPICS, onMessage, streamStatus);

// ---- loading ------------------------------------------------------------------------------

async function loadSources() {
  const items = await rest.all("/v1/websocket-sources");
  const seen = new Set();
  for (const item of items) {
    seen.add(item.id);
    sources.set(item.id, { id: item.id, name: item.name, source: item.source, status: item.status });
  }
  for (const id of [...sources.keys()]) if (!seen.has(id)) sources.delete(id);
  renderSources();
}

async function loadAutomations() {
  automationsLoadedAt = Date.now();
  const items = await rest.all("/v1/automations");
  for (const item of items) automations.set(item.id, item.name);
  events.schedule();
  runs.render(); // names may have arrived
  await schedules.show(items);
}

/** Everything the stream does not bring: at sign-in, and after the stream was down or lagged. */
function loadAll() {
  quietly(loadSources());
  quietly(events.load());
  quietly(runs.load());
  quietly(counts.load());
}

function quietly(promise) {
  promise.catch((err) => {
    if (!(err instanceof SignedOut)) notice(err.message, true);
  });
}

// ---- live messages ------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "subscribed":
      if ($("notice").classList.contains("error")) notice("");
      loadAll(); // catch up on what happened while the stream was down
      break;
    case "source.status":
      onStatus(msg.data);
      break;
    case "event.received":
      events.received(msg.data);
      if (msg.data.origin === "websocket") countLocally(msg.data);
      break;
    case "event.dispatched":
      if (events.dispatched(msg.data) && Date.now() - automationsLoadedAt > 5000) quietly(loadAutomations());
      break;
    case "lagged":
      notice(`The live view fell behind and missed ${msg.missed} messages; reloading.`);
      loadAll();
      break;
    case "error":
      notice(`Live stream: ${msg.detail}`, true);
      break;
    default:
      if (RUN_TOPICS.includes(msg.type)) {
        runs.changed(msg.type, msg.data);
        counts.changed();
      }
      break;
  }
}

function onStatus(data) {
  const known = sources.get(data.source_id);
  if (known) {
    known.status = data.status;
  } else {
    sources.set(data.source_id, { id: data.source_id, name: data.source, source: data.source, status: data.status });
    quietly(loadSources()); // a new source: fetch its name
  }
  renderSources();
}

// Counters and the last event time change with every event but are published only with state
// changes: count here, and let the periodic reload correct any drift.
function countLocally(data) {
  const source = [...sources.values()].find((s) => s.source === data.source);
  if (!source || !source.status) return;
  const counters = source.status.counters || (source.status.counters = {});
  const name = data.dedup === "stored" ? "events_stored" : "duplicates";
  counters[name] = (counters[name] || 0) + 1;
  if (data.dedup === "stored") source.status.last_event_at = data.received_at;
  renderSources();
}

// ---- rendering ----------------------------------------------------------------------------

function renderSources() {
  view.renderSources($("source-rows"), sources.values(), isAdmin);
  $("sources-empty").hidden = sources.size > 0;
}

function streamStatus(state, text) {
  const status = $("stream-status");
  status.dataset.state = state;
  status.textContent = `Live updates: ${text}`;
}

function notice(text, isError = false) {
  const node = $("notice");
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// ---- source actions -----------------------------------------------------------------------

async function act(button) {
  const row = button.closest("tr");
  const source = sources.get(row.dataset.sourceId);
  if (!source) return;
  const label = button.textContent;
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    await rest.call("POST", `/v1/websocket-sources/${encodeURIComponent(source.id)}/${button.dataset.action}`);
    notice(`${label} requested for ${source.name}.`);
  } catch (err) {
    if (!(err instanceof SignedOut)) notice(`${label} ${source.name} failed: ${err.message}`, true);
  } finally {
    delete button.dataset.busy;
    if (sources.has(source.id)) view.updateRow(row, source, isAdmin);
  }
}

// ---- session ------------------------------------------------------------------------------

async function signIn(key) {
  rest.use(key);
  const mine = rest.session;
  $("key-error").textContent = "";
  let me;
  try {
    me = await rest.call("GET", "/v1/me");
  } catch (err) {
    if (!(err instanceof SignedOut)) $("key-error").textContent = `Could not reach the server: ${err.message}`;
    if (mine === rest.session && !(err instanceof SignedOut)) rest.forget();
    return;
  }
  if (mine !== rest.session) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  isAdmin = me.role === "admin";
  runs.canAct = me.role === "admin" || me.role === "member";
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("forget-key").hidden = false;
  $("stream-status").hidden = false;
  const who = $("whoami");
  who.textContent = `${me.org_name} · ${me.role} key`;
  who.hidden = false;
  quietly(loadSources());
  quietly(loadAutomations());
  stream.open();
  refreshTimer = setInterval(() => {
    quietly(loadSources());
    quietly(runs.load()); // statuses no message announces, and running durations
    quietly(counts.load());
  }, REFRESH_MS);
}

function signOut(message) {
  rest.forget();
  isAdmin = false;
  sessionStorage.removeItem(KEY_STORAGE);
  stream.close();
  clearInterval(refreshTimer);
  refreshTimer = null;
  sources.clear();
  automations.clear();
  runs.clear();
  counts.clear();
  schedules.clear();
  events.clear();
  renderSources();
  notice("");
  $("dashboard").hidden = true;
  $("forget-key").hidden = true;
  $("stream-status").hidden = true;
  $("whoami").hidden = true;
  $("login").hidden = false;
  $("key-error").textContent = message || "";
  $("api-key").focus();
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    input.value = "";
    if (key) signIn(key);
  });
  $("forget-key").addEventListener("click", () => signOut(""));
  $("source-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button && !button.disabled) act(button);
  });
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) signIn(saved);
  else $("api-key").focus();
}

start();
