#!/usr/bin/env python3
"""A Switchboard worker in Python's standard library: the protocol of `switchboard worker`.

    python3 examples/worker.py --url http://127.0.0.1:8080 --key sbk_... [--drain]

Long-polls POST /v1/runs/claim, calls handle(run) for each run while a thread heartbeats at a
third of the lease, then completes the run with handle's return value as the result, or fails it
with the exception as the error (the service retries it with backoff while attempts are left).
A heartbeat answered 409 means the run was cancelled or the lease lost: the result is dropped.
Ctrl-C / SIGTERM stops claiming and lets the current run finish. --drain exits once the queue is
empty (handy in tests and cron jobs). A claim that fails (service unreachable, 429, 5xx) is
retried after a jittered, doubling wait (0.5 s up to 30 s); 401, 403 and 422 stop the worker.
"""
import argparse
import datetime
import json
import os
import random
import signal
import threading
import urllib.error
import urllib.request

stopping = threading.Event()


def handle(run):
    """Your code. Return a JSON-serialisable result, or raise to fail the attempt."""
    payload = run["event_payload"].get("payload") or {}
    if payload.get("fail"):
        raise RuntimeError("asked to fail: %r" % payload)
    return {"handled": run["id"], "event_key": run["event_key"], "attempt": run["attempt"]}


class Api:
    def __init__(self, url, key):
        self.url, self.key = url.rstrip("/"), key

    def post(self, path, body, timeout=60):
        """POSTs JSON; returns (status, parsed answer)."""
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + self.key, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


def seconds_left(expires_at):
    at = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    return (at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def heartbeat(api, run, done, lost):
    every = max(1.0, seconds_left(run["lease_expires_at"]) / 3)
    while not done.wait(every):
        status, answer = api.post("/v1/runs/%s/heartbeat" % run["id"], {"lease_token": run["lease_token"]})
        if status in (404, 409):
            lost.append(answer.get("detail", "refused"))
            return


def work(api, run):
    done, lost = threading.Event(), []
    beat = threading.Thread(target=heartbeat, args=(api, run, done, lost), daemon=True)
    beat.start()
    try:
        result, error = handle(run), None
    except Exception as exc:  # the attempt failed; report it
        result, error = None, "%s: %s" % (type(exc).__name__, exc)
    done.set()
    beat.join()
    if lost:
        print("run %s: lease lost (%s); result dropped" % (run["id"], lost[0]), flush=True)
        return
    token = run["lease_token"]
    if error is None:
        status, answer = api.post("/v1/runs/%s/complete" % run["id"], {"lease_token": token, "result": result})
    else:
        status, answer = api.post("/v1/runs/%s/fail" % run["id"], {"lease_token": token, "error": error})
    print("run %s attempt %s: %s (HTTP %s)" % (run["id"], run["attempt"], answer.get("status"), status), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--key", default=os.environ.get("SWITCHBOARD_KEY"))
    parser.add_argument("--drain", action="store_true", help="exit once nothing is left to claim")
    args = parser.parse_args()
    api = Api(args.url, args.key)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    name = "py-%s-%d" % (os.uname().nodename, os.getpid())
    backoff = 0.5  # seconds; doubles per failed claim up to 30 s, each wait jittered
    while not stopping.is_set():
        wait = 0 if args.drain else 20
        try:
            status, answer = api.post("/v1/runs/claim", {"limit": 1, "wait_s": wait, "worker": name})
        except (OSError, ValueError) as exc:
            status, answer = None, str(exc)
        if status in (401, 403, 422):  # a wrong key or request: retrying will not help
            raise SystemExit("claim refused: HTTP %s %s" % (status, answer))
        if status != 200:  # unreachable, 429, 5xx: back off, never spin
            print("claim failed (%s); retrying in up to %.1f s" % ("HTTP %s" % status if status else answer, backoff), flush=True)
            stopping.wait(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 0.5
        if not answer["items"] and args.drain:
            return
        for run in answer["items"]:
            work(api, run)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
