// Switchboard operator page, the view: builds and updates the sources table and the events tail
// from plain data. Text always goes in as textContent, never as markup. Stable ids, classes and
// data- attributes are what the browser test (tests/browser.rs) and operators' scripts look for.

const COUNTERS = ["events_stored", "duplicates", "filtered", "reconnects"];
const ACTIONS = [
  ["reconnect", "Reconnect"],
  ["pause", "Pause"],
  ["resume", "Resume"],
];
const VERDICTS = {
  matched: "matched",
  on_mismatch: "on mismatch",
  filter_false: "filter false",
  filter_error: "filter error",
};

/** An element with attributes and, when given, its text. */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A local time; with the date too when `withDate` and it is not today. */
export function formatTime(iso, withDate) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const today = new Date().toDateString() === at.toDateString();
  return withDate && !today ? at.toLocaleString() : at.toLocaleTimeString();
}

/** Puts one row per source in `body`, by name, reusing rows (so focus and clicks survive). */
export function renderSources(body, sources, isAdmin) {
  const rows = new Map([...body.rows].map((row) => [row.dataset.sourceId, row]));
  const ordered = [...sources].sort((a, b) => a.name.localeCompare(b.name));
  ordered.forEach((source, i) => {
    const row = rows.get(source.id) || createRow(source);
    rows.delete(source.id);
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
    updateRow(row, source, isAdmin);
  });
  for (const row of rows.values()) row.remove();
}

function createRow(source) {
  const row = el("tr", { "data-source-id": source.id });
  const name = el("th", { scope: "row" });
  name.append(el("span", { class: "name" }), el("code", { class: "slug" }));
  const state = el("td");
  state.append(el("span", { class: "state" }), el("span", { class: "detail" }));
  const last = el("td");
  last.append(el("time", { class: "last-event" }));
  row.append(name, state, last);
  for (const counter of COUNTERS) row.append(el("td", { class: "num", "data-counter": counter }));
  row.append(el("td", { class: "num", "data-counter": "consecutive_failures" }));
  const actions = el("td", { class: "actions" });
  for (const [action, label] of ACTIONS) {
    actions.append(el("button", { type: "button", "data-action": action }, label));
  }
  row.append(actions);
  return row;
}

/** Shows `source` (`{id, name, source, status}`) in its row. */
export function updateRow(row, source, isAdmin) {
  const status = source.status || { state: "unknown", counters: {} };
  const counters = status.counters || {};
  row.dataset.source = source.source;
  row.dataset.state = status.state;
  row.dataset.connectedAt = status.connected_at || "";
  row.querySelector(".name").textContent = source.name;
  row.querySelector(".slug").textContent = source.source;
  const state = row.querySelector(".state");
  state.dataset.state = status.state;
  state.textContent = status.state;
  // Live updates carry no holder: the last one a list showed stays.
  if (status.held_by) row.dataset.heldBy = status.held_by;
  row.querySelector(".detail").textContent = detailOf(status, row.dataset.heldBy);
  const last = row.querySelector(".last-event");
  if (status.last_event_at) {
    last.dateTime = status.last_event_at;
    last.title = status.last_event_at;
    last.textContent = formatTime(status.last_event_at, true);
  } else {
    last.removeAttribute("datetime");
    last.textContent = "never";
  }
  for (const counter of COUNTERS) {
    row.querySelector(`[data-counter="${counter}"]`).textContent = String(counters[counter] || 0);
  }
  row.querySelector('[data-counter="consecutive_failures"]').textContent = String(status.consecutive_failures || 0);
  updateButtons(row, source.name, status.state, isAdmin);
}

function detailOf(status, heldBy) {
  const parts = status.detail ? [status.detail] : [];
  if (heldBy) parts.push(`held by replica ${heldBy.slice(0, 8)}`);
  const conns = status.connections;
  if (conns && conns.configured > 1) parts.push(`${conns.ready}/${conns.configured} connections ready`);
  if (conns && conns.reported > conns.configured) parts.push(`the peer counts ${conns.reported} connections`);
  if (status.next_retry_at && (status.state === "backoff" || status.state === "failing")) {
    parts.push(`next attempt ${formatTime(status.next_retry_at)}`);
  }
  return parts.join("; ");
}

function updateButtons(row, name, state, isAdmin) {
  const enabled = {
    reconnect: state !== "disabled",
    pause: state !== "disabled" && state !== "paused",
    resume: state === "paused" || state === "failed",
  };
  for (const [action, label] of ACTIONS) {
    const button = row.querySelector(`[data-action="${action}"]`);
    button.setAttribute("aria-label", `${label} ${name}`);
    if (isAdmin) button.removeAttribute("title");
    else button.title = "needs an admin key";
    if (button.dataset.busy !== "1") button.disabled = !isAdmin || !enabled[action];
  }
}

/** One event of the tail, with a verdict per automation (`automations`: id → name). */
export function eventItem(entry, automations) {
  const results = verdictsOf(entry);
  const item = el("li", {
    "data-key": entry.key,
    "data-event-id": entry.eventId || "",
    "data-source": entry.source || "",
    "data-event-key": entry.eventKey || "",
    "data-dedup": entry.dedup,
    "data-status": entry.status || "",
    "data-outcome": results.map((r) => r.result).join(" "),
  });
  const time = el("time", { datetime: entry.receivedAt, title: entry.receivedAt }, formatTime(entry.receivedAt));
  const source = el("span", { class: "source" }, entry.source || "");
  if (entry.origin === "webhook") source.append(el("span", { class: "badge" }, "webhook"));
  const key = el("span");
  key.append(el("code", { class: "event-key" }, entry.eventKey || "(no key)"));
  if (entry.dedup === "duplicate") key.append(el("span", { class: "badge", "data-badge": "duplicate" }, "duplicate"));
  const verdicts = el("span", { class: "verdicts" });
  for (const r of results) verdicts.append(verdictNode(r, automations));
  item.append(time, source, key, verdicts);
  if (entry.eventId) item.title = `event ${entry.eventId}`;
  return item;
}

function verdictsOf(entry) {
  if (entry.dedup === "duplicate") return [{ result: "duplicate", text: "duplicate: not stored or matched again" }];
  if (entry.status === "no_key") return [{ result: "none", text: "no event key: not matched" }];
  if (entry.status === "error") return [{ result: "error", text: "error: not matched" }];
  if (!entry.outcome) return [{ result: "pending", text: "not matched yet" }];
  if (entry.outcome.length === 0) return [{ result: "none", text: "no automation for this source" }];
  return entry.outcome;
}

function verdictNode(r, automations) {
  const attrs = { class: "verdict", "data-result": r.result };
  if (r.automation_id) attrs["data-automation-id"] = r.automation_id;
  if (r.run_id) attrs["data-run-id"] = r.run_id;
  const node = el("span", attrs);
  if (!r.automation_id) {
    node.textContent = r.text || r.result;
    return node;
  }
  const name = automations.get(r.automation_id) || r.automation_id.slice(0, 8);
  node.append(el("strong", {}, name), document.createTextNode(`: ${VERDICTS[r.result] || r.result}`));
  if (r.result === "filter_error" && r.message) node.append(document.createTextNode(` (${r.message})`));
  if (r.run_id) {
    node.append(document.createTextNode(" → run "));
    node.append(el("code", { class: "run-id", title: r.run_id }, r.run_id.slice(-12)));
  }
  return node;
}
