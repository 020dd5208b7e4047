"""Crash benchmark: stream feedback into `recsage serve`, `kill -9` it mid-stream, restart it,
and check that every acknowledged event is in the store exactly once.

Several client threads post batches of events with unique ids. A batch counts as
acknowledged only on a 200 answer. At the kill, the store is opened directly (no server)
and every acknowledged id is counted; after the restart the clients re-send the batches
that got no answer (at-least-once delivery), and the server must report the ones it had
already committed as duplicates. At the end every id sent is in the store exactly once.
Runs on SQLite (WAL, synchronous=FULL) and, when reachable, PostgreSQL (a temporary schema
in the local `test` database, dropped afterwards).

    python benchmarks/service_crash.py                  # both stores
    python benchmarks/service_crash.py --store sqlite --clients 8

Writes benchmarks/results/service_crash.json (with a "markdown" table) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, machine_line
from service_load import free_port, start_server

from recsage.data.sources.registry import load_dataset
from recsage.feedback.store import FeedbackStore
from recsage.pipeline.pipeline import Pipeline
from recsage.serving.auth import create_key

SPEC: dict[str, Any] = {
    "text": {"enabled": False},
    "merge": {"max_candidates": 100},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 100.0}},
        {"name": "pop", "kind": "popularity", "n": 50},
    ],
    "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
}
PG_URL = os.environ.get("RECSAGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Client(threading.Thread):
    """Posts batches until told to stop; re-sends a batch until it is acknowledged."""

    def __init__(
        self,
        n: int,
        url: str,
        key: str,
        users: list[str],
        items: list[str],
        batch: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.n, self.url, self.key, self.batch, self.stop = n, url, key, batch, stop
        self.users, self.items = users, items
        self.rng = random.Random(n)
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.sent_ids: set[str] = set()
        self.pending: list[dict[str, Any]] | None = None
        self.batches = self.retries = self.duplicates_reported = self.failures = 0
        self.errors: list[str] = []

    def make_batch(self) -> list[dict[str, Any]]:
        out = []
        for _ in range(self.batch):
            eid = f"c{self.n}-{uuid.uuid4().hex[:12]}"
            out.append(
                {
                    "event_id": eid,
                    "user_id": self.rng.choice(self.users),
                    "item_id": self.rng.choice(self.items),
                    "type": self.rng.choice(["click", "click", "impression", "purchase", "skip"]),
                }
            )
        return out

    def run(self) -> None:
        h = {"Authorization": f"Bearer {self.key}"}
        client = httpx.Client(base_url=self.url, headers=h, timeout=5)
        while not self.stop.is_set() or self.pending is not None:
            if self.pending is None:
                self.pending = self.make_batch()
                self.sent_ids.update(e["event_id"] for e in self.pending)
            try:
                r = client.post("/v1/feedback", json={"events": self.pending})
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                body = r.json()
                with self.lock:
                    self.acked += [e["event_id"] for e in self.pending]
                    self.batches += 1
                    self.duplicates_reported += body["duplicates"]
                self.pending = None
            else:
                if r is not None and r.status_code < 500:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                    self.pending = None
                self.failures += 1
                self.retries += 1
                client.close()
                client = httpx.Client(base_url=self.url, headers=h, timeout=5)
                time.sleep(0.05)
        client.close()

    def acked_now(self) -> list[str]:
        with self.lock:
            return list(self.acked)


def check(url: str, ids: list[str]) -> dict[str, int]:
    store = FeedbackStore.open(url)
    try:
        counts = store.count_ids(ids)
        return {
            "checked": len(ids),
            "missing": sum(1 for c in counts.values() if c == 0),
            "duplicated": sum(1 for c in counts.values() if c > 1),
            "rows_in_store": store.count(),
        }
    finally:
        store.close()


def run_once(kind: str, model: Path, users: list[str], items: list[str], args: Any) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"recsage-crash-{kind}-"))
    schema = None
    conn = None
    try:
        home = work / "home"
        if kind == "postgresql":
            import psycopg

            conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
            schema = f"recsage_crash_{uuid.uuid4().hex[:10]}"
            conn.execute(f'CREATE SCHEMA "{schema}"')
            url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{home / 'feedback.db'}"
        store = FeedbackStore.open(url)
        key = create_key(store, "crash", "feedback")
        store.close()
        env = {"RECSAGE_STORE_URL": url}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(model, home, port, env)
        stop = threading.Event()
        clients = [
            Client(i, base, key, users, items, args.batch, stop) for i in range(args.clients)
        ]
        t_start = time.perf_counter()
        for c in clients:
            c.start()
        time.sleep(args.before_kill)
        os.kill(server.pid, signal.SIGKILL)
        t_kill = time.perf_counter()
        server.wait()
        acked_at_kill = [e for c in clients for e in c.acked_now()]
        in_flight = sum(1 for c in clients if c.pending is not None)
        at_kill = check(url, acked_at_kill)  # the store alone, no server running
        server = start_server(model, home, port, env)
        downtime = time.perf_counter() - t_kill
        time.sleep(args.after)
        stop.set()
        for c in clients:
            c.join(timeout=60)
        total = time.perf_counter() - t_start
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        acked = [e for c in clients for e in c.acked_now()]
        sent = set().union(*(c.sent_ids for c in clients))
        final = check(url, sorted(sent))
        return {
            "store": kind,
            "clients": args.clients,
            "batch": args.batch,
            "seconds": round(total, 1),
            "events_acked": len(acked),
            "events_acked_before_kill": len(acked_at_kill),
            "batches_in_flight_at_kill": in_flight,
            "acked_before_kill_missing_after_kill": at_kill["missing"],
            "acked_before_kill_duplicated": at_kill["duplicated"],
            "rows_at_kill": at_kill["rows_in_store"],
            "duplicates_reported_on_resend": sum(c.duplicates_reported for c in clients),
            "events_sent": len(sent),
            "rows_in_store": final["rows_in_store"],
            "sent_missing": final["missing"],
            "sent_duplicated": final["duplicated"],
            "restart_seconds": round(downtime, 1),
            "client_errors": [e for c in clients for e in c.errors][:5],
            "ok": at_kill["missing"] == 0
            and at_kill["duplicated"] == 0
            and final["missing"] == 0
            and final["duplicated"] == 0
            and final["rows_in_store"] == len(sent)
            and len(acked) == len(sent),
        }
    finally:
        if conn is not None:
            if schema:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.close()
        shutil.rmtree(work, ignore_errors=True)


def postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--before-kill", type=float, default=5.0)
    ap.add_argument("--after", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "service_crash.json")
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    skipped = []
    if "postgresql" in kinds and not postgres_reachable():
        kinds.remove("postgresql")
        skipped.append(f"postgresql (not reachable at {PG_URL})")
    ds = load_dataset("ml-100k")
    work = Path(tempfile.mkdtemp(prefix="recsage-crash-model-"))
    try:
        model = Pipeline(SPEC).fit(ds).save(work / "model")
        users, items = [str(u) for u in ds.users.ids], [str(i) for i in ds.items.ids]
        runs = []
        for kind in kinds:
            print(f"{kind}: streaming, killing, restarting…", flush=True)
            r = run_once(kind, model, users, items, args)
            print(json.dumps(r), flush=True)
            runs.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env = machine()
    env["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    rows = [
        f"| {r['store']} | {r['clients']}×{r['batch']} | {r['events_acked_before_kill']:,} | "
        f"{r['acked_before_kill_missing_after_kill']} | {r['batches_in_flight_at_kill']} | "
        f"{r['duplicates_reported_on_resend']} | {r['events_sent']:,} | {r['rows_in_store']:,} | "
        f"{r['sent_missing']} / {r['sent_duplicated']} | {r['restart_seconds']} | "
        f"{'pass' if r['ok'] else 'FAIL'} |"
        for r in runs
    ]
    md = "\n".join(
        [
            "### Feedback durability under `kill -9`",
            "",
            f"{args.clients} client threads post batches of {args.batch} events to "
            f"`recsage serve`; the server is killed with SIGKILL after {args.before_kill:g} s, "
            "the store is checked without a server, the server is restarted and clients "
            f"re-send unanswered batches for {args.after:g} s more.",
            "",
            "| store | clients×batch | acked before kill | of those missing | batches in flight "
            "| duplicates reported on re-send | events sent | rows in store | missing / "
            "duplicated | restart (s) | result |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
            *rows,
            *(["", f"Skipped: {', '.join(skipped)}."] if skipped else []),
            "",
            machine_line(env)
            + f" Load average (1 min) at the end: {env['load_average_1m_at_end']} "
            "(the machine is shared).",
            "",
            "Reproduce: `python benchmarks/service_crash.py`.",
        ]
    )
    payload = {
        "benchmark": "service_crash",
        "config": vars(args) | {"out": str(args.out)},
        "environment": env,
        "results": runs,
        "skipped": skipped,
        "markdown": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(md)
    if not all(r["ok"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
