// Switchboard operator page, the live stream: GET /v1/stream opened with a single-use stream
// token (a browser cannot set headers on a WebSocket), one subscription to the page's topics,
// and, when it drops, a fresh token and a new connection after a capped exponential backoff
// with jitter. Messages are handed to the page as parsed JSON.
import { SignedOut } from "/api.js";

const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;

export class LiveStream {
  /**
   * `rest` is the page's Api; `topics` what to subscribe to; `onMessage(msg)` gets every message
   * (`subscribed` included); `onState(state, text)` every change of the connection's state
   * (`connecting`, `live`, `reconnecting`).
   */
  constructor(rest, topics, onMessage, onState) {
    this.rest = rest;
    this.topics = topics;
    this.onMessage = onMessage;
    this.onState = onState;
    this.socket = null;
    this.failures = 0;
    this.timer = null;
  }

  /** Opens the stream for the current session. */
  async open() {
    const mine = this.rest.session;
    this.timer = null;
    this.onState("connecting", "connecting…");
    let token;
    try {
      ({ token } = await this.rest.call("POST", "/v1/stream/tokens", { ttl_s: 60 }));
    } catch (err) {
      if (err instanceof SignedOut || mine !== this.rest.session) return;
      this.retry(`token request failed: ${err.message}`);
      return;
    }
    if (mine !== this.rest.session) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/stream?token=${encodeURIComponent(token)}`);
    this.socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", id: "page", topics: this.topics }));
    ws.onmessage = (message) => {
      if (this.socket === ws) this.received(message.data);
    };
    ws.onclose = () => {
      if (this.socket !== ws) return;
      this.socket = null;
      if (mine === this.rest.session) this.retry("connection lost");
    };
  }

  /** Closes the stream and forgets its backoff (sign-out). */
  close() {
    if (this.socket) {
      const ws = this.socket;
      this.socket = null;
      ws.close();
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.failures = 0;
  }

  retry(why) {
    const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.failures) * (0.5 + Math.random() / 2);
    this.failures += 1;
    this.onState("reconnecting", `${why}; retrying in ${Math.ceil(delay / 1000)} s`);
    this.timer = setTimeout(() => this.open(), delay);
  }

  received(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === "subscribed") {
      this.failures = 0;
      this.onState("live", "live");
    }
    this.onMessage(msg);
  }
}
