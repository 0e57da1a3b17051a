// Switchboard operator page, the REST client: every call carries the API key in the
// Authorization header (same origin, no cookies, no cache) and answers the parsed JSON body.
// A 401 signs the page out; answers of an earlier session (a key since forgotten) are dropped.

/** Raised after a 401 or a sign-out: callers just stop. */
export class SignedOut extends Error {}

export class Api {
  /** `onRefused(message)` is called when the server refuses the key (401). */
  constructor(onRefused) {
    this.key = null;
    this.session = 0; // bumped on sign-in and sign-out
    this.onRefused = onRefused;
  }

  /** Starts a session with `key`. */
  use(key) {
    this.key = key;
    this.session += 1;
  }

  /** Ends the session: calls still in flight raise SignedOut. */
  forget() {
    this.key = null;
    this.session += 1;
  }

  /** `method path` with an optional JSON body; the JSON answer, or an Error with the detail. */
  async call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.key}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const mine = this.session;
    const res = await fetch(path, init);
    if (mine !== this.session) throw new SignedOut();
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (res.status === 401) {
      this.onRefused("The API key was refused. Enter a valid key.");
      throw new SignedOut();
    }
    if (!res.ok) {
      const detail = data && (data.detail || data.title);
      throw new Error(detail ? `${detail} (${res.status})` : `HTTP ${res.status}`);
    }
    return data;
  }

  /** Every item of an offset-paginated list (at most 2000). */
  async all(path) {
    const items = [];
    for (let offset = 0; offset < 2000; offset += 200) {
      const page = await this.call("GET", `${path}?limit=200&offset=${offset}`);
      items.push(...page.items);
      if (items.length >= page.total || page.items.length === 0) break;
    }
    return items;
  }
}
