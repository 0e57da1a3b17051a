// Switchboard operator page, the schedules: the next three ticks of each schedule automation,
// from the dry run (POST /v1/automations/test with the automation's id), which plans a schedule
// without storing anything. Text always goes in as textContent.
import { el, formatTime } from "/view.js";

const TICKS = 3;

export class Schedules {
  /** `rest` is the page's Api. */
  constructor(rest) {
    this.rest = rest;
    this.generation = 0; // bumped by clear(), so answers of an earlier session are dropped
  }

  /** Shows the next ticks of the schedule automations among `automations` (the REST items). */
  async show(automations) {
    const mine = this.generation;
    const schedules = automations.filter((a) => a.trigger && a.trigger.type === "schedule");
    const items = [];
    for (const automation of schedules) {
      const plan = await this.rest.call("POST", "/v1/automations/test", { automation_id: automation.id });
      items.push({ automation, ticks: (plan.next_ticks || []).slice(0, TICKS) });
    }
    if (mine !== this.generation) return;
    render(items);
  }

  clear() {
    this.generation += 1;
    render([]);
  }
}

function render(items) {
  document.getElementById("schedules").replaceChildren(...items.map(({ automation, ticks }) => {
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
