// Switchboard operator page, the recent runs: the last 20 runs, newest first (automation, status,
// attempts, duration, error), with Retry (FAILED or CANCELLED → POST /v1/runs/{id}/retry) and
// Cancel (PENDING or RUNNING → POST /v1/runs/{id}/cancel) buttons, shown only to member and admin
// keys (the roles allowed to use them). Read over REST; a run.* message of the live stream changes
// its row at once and the list is read again shortly after. Text always goes in as textContent.
import { SignedOut } from "/api.js";
import { el, formatTime } from "/view.js";

const RECENT = 20;
const RELOAD_DELAY_MS = 250;
/** Each button: its label and the statuses it is offered in. */
const ACTIONS = [
  ["retry", "Retry", ["FAILED", "CANCELLED"]],
  ["cancel", "Cancel", ["PENDING", "RUNNING"]],
];

export class RecentRuns {
  /**
   * `rest` is the page's Api; `nameOf(id)` an automation's name; `report(promise)` reports a
   * failed load; `notice(text, isError)` tells the operator; `acted()` follows a button's success.
   */
  constructor(rest, nameOf, report, notice, acted) {
    this.rest = rest;
    this.nameOf = nameOf;
    this.report = report;
    this.notice = notice;
    this.acted = acted;
    this.runs = [];
    this.canAct = false; // member and admin keys
    this.busy = new Set(); // run ids whose button was clicked and not answered yet
    this.reloadTimer = null;
    this.generation = 0; // bumped by clear(), so answers of an earlier session are dropped
    document.getElementById("run-rows").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button && !button.disabled) this.report(this.act(button));
    });
  }

  /** Reads the most recent runs and shows them. */
  async load() {
    const mine = this.generation;
    const page = await this.rest.call("GET", `/v1/runs?limit=${RECENT}`);
    if (mine !== this.generation) return;
    this.runs = page.items;
    this.render();
  }

  /**
   * A run.* message (`type`, `data`): its row changes at once (a claim starts a new attempt);
   * the list is read again soon (once per burst).
   */
  changed(type, data) {
    const run = data && this.runs.find((r) => r.id === data.run_id);
    if (run && data.status) {
      run.status = data.status;
      if (type === "run.claimed") run.attempts = data.attempt;
      if (data.error) run.error_detail = data.error;
      this.render();
    }
    if (this.reloadTimer !== null) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.report(this.load());
    }, RELOAD_DELAY_MS);
  }

  /** Retry or Cancel, from its button; the row shows the run as the server answered it. */
  async act(button) {
    const id = button.closest("tr").dataset.runId;
    const label = button.textContent;
    this.busy.add(id);
    this.render();
    try {
      const run = await this.rest.call("POST", `/v1/runs/${encodeURIComponent(id)}/${button.dataset.action}`);
      this.runs = this.runs.map((r) => (r.id === run.id ? run : r));
      this.notice(`${label} done: run ${id.slice(-12)} is ${run.status}.`);
      this.acted();
    } catch (err) {
      if (!(err instanceof SignedOut)) this.notice(`${label} run ${id.slice(-12)} failed: ${err.message}`, true);
    } finally {
      this.busy.delete(id);
      this.render();
    }
  }

  render() {
    const rows = this.runs.map((run) => this.row(run));
    document.getElementById("run-rows").replaceChildren(...rows);
    document.getElementById("runs-empty").hidden = this.runs.length > 0;
    document.getElementById("run-actions-head").hidden = !this.canAct;
  }

  clear() {
    this.generation += 1;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = null;
    this.runs = [];
    this.busy.clear();
    this.canAct = false;
    this.render();
  }

  row(run) {
    const row = el("tr", {
      "data-run-id": run.id,
      "data-status": run.status,
      "data-automation-id": run.automation_id,
      "data-attempts": String(run.attempts),
    });
    const id = el("th", { scope: "row" });
    id.append(el("code", { class: "run-id", title: run.id }, run.id.slice(-12)));
    const automation = el("td", { class: "automation" }, this.nameOf(run.automation_id) || run.automation_id.slice(0, 8));
    const status = el("td");
    status.append(el("span", { class: "run-status", "data-status": run.status }, run.status));
    const created = el("td");
    created.append(el("time", { datetime: run.created_at, title: run.created_at }, formatTime(run.created_at, true)));
    const error = el("td", { class: "run-error" }, run.error_detail || "");
    row.append(id, automation, status, el("td", { class: "num attempts" }, String(run.attempts)), el("td", { class: "num" }, durationOf(run)), created, error);
    if (this.canAct) row.append(this.buttons(run));
    return row;
  }

  buttons(run) {
    const cell = el("td", { class: "actions" });
    for (const [action, label, from] of ACTIONS) {
      if (!from.includes(run.status)) continue;
      const button = el("button", { type: "button", "data-action": action, "aria-label": `${label} run ${run.id.slice(-12)}` }, label);
      button.disabled = this.busy.has(run.id);
      cell.append(button);
    }
    return cell;
  }
}

/** Started → finished (or → now while RUNNING), as `1.2 s`; empty before a worker started it. */
function durationOf(run) {
  if (!run.started_at) return "";
  const end = run.completed_at ? Date.parse(run.completed_at) : Date.now();
  const ms = Math.max(0, end - Date.parse(run.started_at));
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}
