// Switchboard operator page: sources with their live state and counters (Reconnect / Pause /
// Resume), recent runs and the next schedule ticks (runs.js), and a tail of recent events with
// each automation's verdict.
//
// The API key is asked for once and kept in sessionStorage (this tab only); it is sent only in
// the Authorization header of same-origin requests and is never written to the page or the
// console. The live stream (GET /v1/stream) is opened with a single-use stream token, because a
// browser cannot set headers on a WebSocket; when it drops, a fresh token is fetched and the
// stream reopened with backoff. Rendering is in view.js.
import * as view from "/view.js";
import { RunsPanel } from "/runs.js";

const KEY_STORAGE = "switchboard.apiKey";
const TAIL = 50;
const REFRESH_MS = 15000;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;
const RUN_TOPICS = ["run.created", "run.claimed", "run.completed", "run.failed", "run.retrying", "run.expired"];
const TOPICS = ["source.status", "event.received", "event.dispatched", ...RUN_TOPICS];

/** Raised after a 401: the key was signed out, callers just stop. */
class SignedOut extends Error {}

const $ = (id) => document.getElementById(id);

let apiKey = null;
let isAdmin = false; // the buttons need an admin key
// Bumped on sign-out, so callbacks of an earlier session do nothing.
let session = 0;
const sources = new Map(); // id → {id, name, source, status}
const automations = new Map(); // id → name
let automationsLoadedAt = 0;
let events = []; // newest first
let localKeys = 0;
let socket = null;
let failures = 0;
let reconnectTimer = null;
let refreshTimer = null;
let renderTimer = null;
const runs = new RunsPanel(api, (id) => automations.get(id), quietly);

// ---- REST ---------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${apiKey}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const mine = session;
  const res = await fetch(path, init);
  if (mine !== session) throw new SignedOut();
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (res.status === 401) {
    signOut("The API key was refused. Enter a valid key.");
    throw new SignedOut();
  }
  if (!res.ok) {
    const detail = data && (data.detail || data.title);
    throw new Error(detail ? `${detail} (${res.status})` : `HTTP ${res.status}`);
  }
  return data;
}

async function loadAll(path) {
  const items = [];
  for (let offset = 0; offset < 2000; offset += 200) {
    const page = await api("GET", `${path}?limit=200&offset=${offset}`);
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) break;
  }
  return items;
}

async function loadSources() {
  const items = await loadAll("/v1/websocket-sources");
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
  const items = await loadAll("/v1/automations");
  for (const item of items) automations.set(item.id, item.name);
  scheduleEvents();
  await runs.showSchedules(items);
}

async function loadRecentEvents() {
  const page = await api("GET", `/v1/events?limit=${TAIL}`);
  // Oldest first, so that arrival order breaks ties the way the server ordered them.
  for (const item of [...page.items].reverse()) {
    const entry = upsertStored(item.id, {
      origin: item.origin,
      source: item.source,
      eventKey: item.event_key,
      status: item.status,
      receivedAt: item.received_at,
    });
    if (item.outcome) entry.outcome = item.outcome;
  }
  scheduleEvents();
}

function quietly(promise) {
  promise.catch((err) => {
    if (!(err instanceof SignedOut)) notice(err.message, true);
  });
}

// ---- live stream --------------------------------------------------------------------------

async function connectStream() {
  const mine = session;
  reconnectTimer = null;
  streamStatus("connecting", "connecting…");
  let token;
  try {
    ({ token } = await api("POST", "/v1/stream/tokens", { ttl_s: 60 }));
  } catch (err) {
    if (err instanceof SignedOut || mine !== session) return;
    retryStream(`token request failed: ${err.message}`);
    return;
  }
  if (mine !== session) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/stream?token=${encodeURIComponent(token)}`);
  socket = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "subscribe", id: "page", topics: TOPICS }));
  };
  ws.onmessage = (message) => {
    if (socket === ws) onFrame(message.data);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (mine === session) retryStream("connection lost");
  };
}

function retryStream(why) {
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** failures) * (0.5 + Math.random() / 2);
  failures += 1;
  streamStatus("reconnecting", `${why}; retrying in ${Math.ceil(delay / 1000)} s`);
  reconnectTimer = setTimeout(connectStream, delay);
}

function onFrame(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  switch (msg.type) {
    case "subscribed":
      failures = 0;
      streamStatus("live", "live");
      if ($("notice").classList.contains("error")) notice("");
      // Catch up on what happened while the stream was down.
      quietly(loadSources());
      quietly(loadRecentEvents());
      quietly(runs.load());
      break;
    case "source.status":
      onStatus(msg.data);
      break;
    case "event.received":
      onReceived(msg.data);
      break;
    case "event.dispatched":
      onDispatched(msg.data);
      break;
    case "lagged":
      notice(`The live view fell behind and missed ${msg.missed} messages; reloading.`);
      quietly(loadSources());
      quietly(loadRecentEvents());
      quietly(runs.load());
      break;
    case "error":
      notice(`Live stream: ${msg.detail}`, true);
      break;
    default:
      if (RUN_TOPICS.includes(msg.type)) runs.changed();
      break;
  }
}

function onStatus(data) {
  const known = sources.get(data.source_id);
  if (known) {
    known.status = data.status;
    renderSources();
  } else {
    sources.set(data.source_id, { id: data.source_id, name: data.source, source: data.source, status: data.status });
    renderSources();
    quietly(loadSources()); // a new source: fetch its name
  }
}

function onReceived(data) {
  const fields = {
    origin: data.origin,
    source: data.source,
    eventKey: data.event_key,
    status: data.status,
    receivedAt: data.received_at,
  };
  if (data.dedup === "stored" && data.event_id) {
    upsertStored(data.event_id, fields);
  } else {
    addEvent({ ...fields, eventId: data.event_id, dedup: "duplicate" });
  }
  if (data.origin === "websocket") countLocally(data);
  scheduleEvents();
}

function onDispatched(data) {
  const entry = upsertStored(data.event_id, { source: data.source, eventKey: data.event_key, status: "dispatched" });
  entry.outcome = data.outcome;
  if (data.outcome.some((o) => !automations.has(o.automation_id)) && Date.now() - automationsLoadedAt > 5000) {
    quietly(loadAutomations());
  }
  scheduleEvents();
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

// ---- events model -------------------------------------------------------------------------

function upsertStored(eventId, fields) {
  let entry = events.find((e) => e.dedup === "stored" && e.eventId === eventId);
  if (entry) {
    for (const [name, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null && !(name === "status" && entry.status === "dispatched")) {
        entry[name] = value;
      }
    }
  } else {
    entry = addEvent({ ...fields, eventId, dedup: "stored" });
  }
  return entry;
}

function addEvent(fields) {
  localKeys += 1;
  const entry = { key: `e${localKeys}`, seq: localKeys, receivedAt: new Date().toISOString(), ...fields };
  events.push(entry);
  if (events.length > 4 * TAIL) trimEvents();
  return entry;
}

function trimEvents() {
  // Times have microseconds but Date keeps milliseconds: ties go to the later arrival.
  events.sort((a, b) => Date.parse(b.receivedAt) - Date.parse(a.receivedAt) || b.seq - a.seq);
  events = events.slice(0, TAIL);
}

// ---- rendering ----------------------------------------------------------------------------

function renderSources() {
  view.renderSources($("source-rows"), sources.values(), isAdmin);
  $("sources-empty").hidden = sources.size > 0;
}

function scheduleEvents() {
  if (renderTimer === null) renderTimer = setTimeout(renderEvents, 50);
}

function renderEvents() {
  renderTimer = null;
  trimEvents();
  $("events").replaceChildren(...events.map((entry) => view.eventItem(entry, automations)));
  $("events-empty").hidden = events.length > 0;
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

// ---- actions ------------------------------------------------------------------------------

async function act(button) {
  const row = button.closest("tr");
  const source = sources.get(row.dataset.sourceId);
  if (!source) return;
  const label = button.textContent;
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    await api("POST", `/v1/websocket-sources/${encodeURIComponent(source.id)}/${button.dataset.action}`);
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
  apiKey = key;
  session += 1;
  const mine = session;
  $("key-error").textContent = "";
  let me;
  try {
    me = await api("GET", "/v1/me");
  } catch (err) {
    if (!(err instanceof SignedOut)) $("key-error").textContent = `Could not reach the server: ${err.message}`;
    if (mine === session && !(err instanceof SignedOut)) apiKey = null;
    return;
  }
  if (mine !== session) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  isAdmin = me.role === "admin";
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("forget-key").hidden = false;
  $("stream-status").hidden = false;
  const who = $("whoami");
  who.textContent = `${me.org_name} · ${me.role} key`;
  who.hidden = false;
  quietly(loadSources());
  quietly(loadAutomations());
  connectStream();
  refreshTimer = setInterval(() => {
    quietly(loadSources());
    quietly(runs.load()); // statuses no message announces, and running durations
  }, REFRESH_MS);
}

function signOut(message) {
  session += 1;
  apiKey = null;
  isAdmin = false;
  sessionStorage.removeItem(KEY_STORAGE);
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close();
  }
  clearTimeout(reconnectTimer);
  clearInterval(refreshTimer);
  clearTimeout(renderTimer);
  reconnectTimer = refreshTimer = renderTimer = null;
  failures = 0;
  sources.clear();
  automations.clear();
  runs.clear();
  events = [];
  renderSources();
  renderEvents();
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
