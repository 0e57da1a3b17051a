// Switchboard operator page, the run counts: how many runs are in each status, from
// GET /v1/runs/counts (PENDING and RUNNING: all of them; SUCCEEDED, FAILED and CANCELLED: runs of
// events received in the server's window, a day by default; each count stops at the server's cap,
// shown as "10000+"). Read again at most once a second while run.* messages arrive.
const STATUSES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const RELOAD_DELAY_MS = 1000;

export class RunCounts {
  /** `rest` is the page's Api; `report(promise)` reports a failed load. */
  constructor(rest, report) {
    this.rest = rest;
    this.report = report;
    this.reloadTimer = null;
    this.generation = 0; // bumped by clear(), so answers of an earlier session are dropped
  }

  /** Reads the counts and shows them. */
  async load() {
    const mine = this.generation;
    const answer = await this.rest.call("GET", "/v1/runs/counts");
    if (mine !== this.generation) return;
    render(answer);
  }

  /** A run was created or changed: read the counts again soon (once per burst). */
  changed() {
    if (this.reloadTimer !== null) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.report(this.load());
    }, RELOAD_DELAY_MS);
  }

  clear() {
    this.generation += 1;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = null;
    render(null);
  }
}

function render(answer) {
  for (const status of STATUSES) {
    const node = document.querySelector(`#run-counts [data-count="${status}"]`);
    if (!answer) {
      node.textContent = "–";
      continue;
    }
    const capped = answer.capped.includes(status);
    node.textContent = `${answer.counts[status]}${capped ? "+" : ""}`;
    node.title = capped ? `at least ${answer.counts[status]} (counting stops at ${answer.cap})` : "";
  }
  const note = document.getElementById("run-counts-window");
  note.textContent = answer ? windowText(answer.window_s) : "the server's window";
  if (answer) note.title = `events received since ${answer.finished_since}`;
}

/** `86400` → `24 hours`. */
function windowText(seconds) {
  if (seconds % 86400 === 0 && seconds > 86400) return `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}
