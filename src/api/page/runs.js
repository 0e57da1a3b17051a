// Switchboard operator page, the runs panel: the most recent runs (status, automation, attempt,
// duration, error), newest first, and the next ticks of each schedule automation. Runs are read
// over REST (GET /v1/runs) and read again shortly after any run.* message of the live stream;
// the next ticks come from the dry run (POST /v1/automations/test with the automation's id), which
// plans a schedule without storing anything. Text always goes in as textContent.
import { el, formatTime } from "/view.js";

const RECENT = 20;
const TICKS = 3;
const RELOAD_DELAY_MS = 250;

export class RunsPanel {
  /**
   * `api(method, path, body)` is the page's REST call; `nameOf(id)` an automation's name;
   * `report(promise)` reports a failed load.
   */
  constructor(api, nameOf, report) {
    this.api = api;
    this.nameOf = nameOf;
    this.report = report;
    this.runs = [];
    this.reloadTimer = null;
    this.generation = 0; // bumped by clear(), so answers of an earlier session are dropped
  }

  /** Reads the most recent runs and shows them. */
  async load() {
    const mine = this.generation;
    const page = await this.api("GET", `/v1/runs?limit=${RECENT}`);
    if (mine !== this.generation) return;
    this.runs = page.items;
    this.render();
  }

  /** A run was created or changed: read the list again soon (one read for a burst). */
  changed() {
    if (this.reloadTimer !== null) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.report(this.load());
    }, RELOAD_DELAY_MS);
  }

  /** Shows the next ticks of the schedule automations among `automations` (the REST items). */
  async showSchedules(automations) {
    const mine = this.generation;
    const schedules = automations.filter((a) => a.trigger && a.trigger.type === "schedule");
    const items = [];
    for (const automation of schedules) {
      const plan = await this.api("POST", "/v1/automations/test", { automation_id: automation.id });
      items.push({ automation, ticks: (plan.next_ticks || []).slice(0, TICKS) });
    }
    if (mine !== this.generation) return;
    renderSchedules(document.getElementById("schedules"), items);
    this.render(); // names may have arrived
  }

  render() {
    const rows = this.runs.map((run) => runRow(run, this.nameOf(run.automation_id)));
    document.getElementById("run-rows").replaceChildren(...rows);
    document.getElementById("runs-empty").hidden = this.runs.length > 0;
  }

  clear() {
    this.generation += 1;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = null;
    this.runs = [];
    this.render();
    renderSchedules(document.getElementById("schedules"), []);
  }
}

function runRow(run, automationName) {
  const row = el("tr", {
    "data-run-id": run.id,
    "data-status": run.status,
    "data-automation-id": run.automation_id,
    "data-attempts": String(run.attempts),
  });
  const id = el("th", { scope: "row" });
  id.append(el("code", { class: "run-id", title: run.id }, run.id.slice(-12)));
  const automation = el("td", { class: "automation" }, automationName || run.automation_id.slice(0, 8));
  const status = el("td");
  status.append(el("span", { class: "run-status", "data-status": run.status }, run.status));
  const created = el("td");
  created.append(el("time", { datetime: run.created_at, title: run.created_at }, formatTime(run.created_at, true)));
  const error = el("td", { class: "run-error" }, run.error_detail || "");
  row.append(id, automation, status, el("td", { class: "num attempts" }, String(run.attempts)), el("td", { class: "num" }, durationOf(run)), created, error);
  return row;
}

/** Started → finished (or → now while RUNNING), as `1.2 s`; empty before a worker started it. */
function durationOf(run) {
  if (!run.started_at) return "";
  const end = run.completed_at ? Date.parse(run.completed_at) : Date.now();
  const ms = Math.max(0, end - Date.parse(run.started_at));
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}

function renderSchedules(list, items) {
  list.replaceChildren(...items.map(({ automation, ticks }) => {
    const item = el("li", { "data-automation-id": automation.id });
    const trigger = automation.trigger;
    item.append(el("strong", {}, automation.name), document.createTextNode(" "));
    item.append(el("code", {}, `${trigger.cron} (${trigger.timezone || "UTC"})`), document.createTextNode(" next: "));
    ticks.forEach((tick, i) => {
      if (i > 0) item.append(document.createTextNode(", "));
      item.append(el("time", { class: "tick", datetime: tick, title: tick }, formatTime(tick, true)));
    });
    return item;
  }));
  document.getElementById("schedules-section").hidden = items.length === 0;
}
