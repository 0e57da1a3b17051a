// Switchboard operator page, the events tail: the last 50 events, newest first, from the REST
// list and then live from `event.received` (stored events and duplicates) and
// `event.dispatched` (each automation's verdict). Rendering of one event is in view.js.
import { eventItem } from "/view.js";

const TAIL = 50;
const RENDER_DELAY_MS = 50;

export class EventsTail {
  /** `rest` is the page's Api; `automations` the page's map of automation id → name. */
  constructor(rest, automations) {
    this.rest = rest;
    this.automations = automations;
    this.events = []; // newest first once trimmed
    this.localKeys = 0;
    this.renderTimer = null;
  }

  /** Reads the most recent events. */
  async load() {
    const page = await this.rest.call("GET", `/v1/events?limit=${TAIL}`);
    // Oldest first, so that arrival order breaks ties the way the server ordered them.
    for (const item of [...page.items].reverse()) {
      const entry = this.upsertStored(item.id, {
        origin: item.origin,
        source: item.source,
        eventKey: item.event_key,
        status: item.status,
        receivedAt: item.received_at,
      });
      if (item.outcome) entry.outcome = item.outcome;
    }
    this.schedule();
  }

  /** An `event.received` message. */
  received(data) {
    const fields = {
      origin: data.origin,
      source: data.source,
      eventKey: data.event_key,
      status: data.status,
      receivedAt: data.received_at,
    };
    if (data.dedup === "stored" && data.event_id) {
      this.upsertStored(data.event_id, fields);
    } else {
      this.add({ ...fields, eventId: data.event_id, dedup: "duplicate" });
    }
    this.schedule();
  }

  /** An `event.dispatched` message; answers whether it names an automation the page lacks. */
  dispatched(data) {
    const entry = this.upsertStored(data.event_id, { source: data.source, eventKey: data.event_key, status: "dispatched" });
    entry.outcome = data.outcome;
    this.schedule();
    return data.outcome.some((o) => !this.automations.has(o.automation_id));
  }

  /** Forgets every event (sign-out). */
  clear() {
    clearTimeout(this.renderTimer);
    this.renderTimer = null;
    this.events = [];
    this.render();
  }

  upsertStored(eventId, fields) {
    let entry = this.events.find((e) => e.dedup === "stored" && e.eventId === eventId);
    if (entry) {
      for (const [name, value] of Object.entries(fields)) {
        if (value !== undefined && value !== null && !(name === "status" && entry.status === "dispatched")) {
          entry[name] = value;
        }
      }
    } else {
      entry = this.add({ ...fields, eventId, dedup: "stored" });
    }
    return entry;
  }

  add(fields) {
    this.localKeys += 1;
    const entry = { key: `e${this.localKeys}`, seq: this.localKeys, receivedAt: new Date().toISOString(), ...fields };
    this.events.push(entry);
    if (this.events.length > 4 * TAIL) this.trim();
    return entry;
  }

  trim() {
    // Times have microseconds but Date keeps milliseconds: ties go to the later arrival.
    this.events.sort((a, b) => Date.parse(b.receivedAt) - Date.parse(a.receivedAt) || b.seq - a.seq);
    this.events = this.events.slice(0, TAIL);
  }

  /** Renders soon (one render for a burst of messages). */
  schedule() {
    if (this.renderTimer === null) this.renderTimer = setTimeout(() => this.render(), RENDER_DELAY_MS);
  }

  render() {
    this.renderTimer = null;
    this.trim();
    document.getElementById("events").replaceChildren(...this.events.map((entry) => eventItem(entry, this.automations)));
    document.getElementById("events-empty").hidden = this.events.length > 0;
  }
}
