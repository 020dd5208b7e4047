"""Bulk item adds must not stall serving: p50/p99 of concurrent `/v1/recommend` while idle
vs while one `POST /v1/items` adds 10,000 products, in one run against one server.

The pipeline is trained on the synthetic pet-shop log (benchmarks/make_shop_log.py: 2,000
users, 500 products, 30,000 events, event weights view 1 / cart 2 / purchase 3) with **text
on** (all-MiniLM-L6-v2 from the installed package, offline): EASE + text + popularity, RRF.
`recsage serve` runs as its own process (uvicorn, one worker, auth on, rate limit off, body
limit raised to 16 MB so the 10,000 items fit one request). A closed-loop Python load
generator (asyncio + httpx, separate process, random known users, n=10) runs throughout;
requests are split by their start time into the idle window before the add and the window
during it. Target: p99 during <= 2x p99 idle. The add encodes 10,000 texts; the server
builds the grown catalogue outside the model lock and swaps it in under a short write lock.

    python benchmarks/service_bulk_items.py                    # 20 s idle, 10,000 items
    python benchmarks/service_bulk_items.py --items 3000 --connections 4

Writes benchmarks/results/service_bulk_items.json (with a "markdown" table) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, machine_line
from make_shop_log import make_events, make_products
from service_load import cpu_seconds, free_port, start_server

SPEC: dict[str, Any] = {
    "text": {"enabled": True},
    "merge": {"max_candidates": 100},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 100.0}},
        {"name": "text", "kind": "text", "n": 50},
        {"name": "pop", "kind": "popularity", "n": 50},
    ],
    "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
}
TARGET_RATIO = 2.0
WEIGHTS = {"view": 1.0, "cart": 2.0, "purchase": 3.0}


def write_shop(folder: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    products = make_products(rng, 500)
    events = make_events(rng, products, 2000, 30_000)
    folder.mkdir(parents=True, exist_ok=True)
    items, log = folder / "products.csv", folder / "events.csv"
    with items.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "title", "category", "description", "price"])
        for p in products:
            w.writerow([p[k] for k in ("product_id", "title", "category", "description", "price")])
    with log.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "event_type"])
        w.writerows(events)
    return items, log


def train(work: Path, seed: int) -> tuple[Path, list[str], float]:
    from recsage.data.sources.tables import load_table
    from recsage.pipeline.pipeline import Pipeline

    items, log = write_shop(work / "shop", seed)
    ds = load_table(log, items_path=items, event_weights=WEIGHTS)
    spec = json.loads(json.dumps(SPEC))
    spec["text"]["cache_dir"] = str(work / "emb")
    t0 = time.perf_counter()
    pipe = Pipeline(spec).fit(ds)
    secs = time.perf_counter() - t0
    return pipe.save(work / "model"), [str(u) for u in ds.users.ids], secs


def bulk_items(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` new products (ids that are not in the trained catalogue), API item fields."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for k, p in enumerate(make_products(rng, n)):
        out.append(
            {
                "item_id": f"NEW-{k:06d}",
                "title": str(p["title"]),
                "categories": [str(p["category"])],
                "text": str(p["description"]),
            }
        )
    return out


def _load(url: str, key: str, users: list[str], conns: int, stop: Any, q: Any) -> None:
    """Closed-loop /v1/recommend until `stop` is set; (wall start time, latency s, ok)."""
    import httpx

    async def main() -> list[tuple[float, float, bool]]:
        rec: list[tuple[float, float, bool]] = []
        rng = np.random.default_rng(7)
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=120
        ) as client:

            async def worker() -> None:
                while not stop.is_set():
                    body = {"user_id": users[int(rng.integers(len(users)))], "n": 10}
                    wall, t0 = time.time(), time.perf_counter()
                    try:
                        r = await client.post("/v1/recommend", json=body)
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    rec.append((wall, time.perf_counter() - t0, ok))

            await asyncio.gather(*(worker() for _ in range(conns)))
        return rec

    q.put(asyncio.run(main()))


def summary(lat_s: list[float], errors: int, seconds: float) -> dict[str, Any]:
    a = np.array(lat_s) * 1e3
    return {
        "requests": len(a),
        "seconds": round(seconds, 2),
        "rps": len(a) / seconds if seconds > 0 else 0.0,
        "p50_ms": float(np.percentile(a, 50)) if len(a) else float("nan"),
        "p99_ms": float(np.percentile(a, 99)) if len(a) else float("nan"),
        "max_ms": float(a.max()) if len(a) else float("nan"),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000, help="items in the one bulk add")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of load before the add")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "service_bulk_items.json")
    args = ap.parse_args()

    import httpx

    from recsage.feedback.store import FeedbackStore
    from recsage.serving.auth import create_key

    work = Path(tempfile.mkdtemp(prefix="recsage-bulk-"))
    try:
        print("training the shop pipeline (text on)…", flush=True)
        model, users, fit_s = train(work, args.seed)
        home = work / "home"
        store = FeedbackStore.open(f"sqlite:///{home / 'feedback.db'}")
        read_key = create_key(store, "bench-read", "read")
        admin_key = create_key(store, "bench-admin", "admin")
        store.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(
            model, home, port, {"RECSAGE_MAX_BODY_BYTES": str(16 << 20), "HF_HUB_OFFLINE": "1"}
        )
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {read_key}"}) as c:
                for u in users[:200]:  # warm-up
                    c.post("/v1/recommend", json={"user_id": u, "n": 10}).raise_for_status()
            items = bulk_items(args.items, args.seed)
            ctx = mp.get_context("spawn")
            stop, q = ctx.Event(), ctx.Queue()
            load = ctx.Process(target=_load, args=(url, read_key, users, args.connections, stop, q))
            load.start()
            time.sleep(2.0)  # the generator's start-up is not part of the idle window
            idle_t0 = time.time()
            print(f"idle load for {args.idle:.0f} s…", flush=True)
            time.sleep(args.idle)
            print(f"POST /v1/items with {args.items:,} items…", flush=True)
            cpu0 = cpu_seconds(server.pid)
            add_t0 = time.time()
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=3600
            ) as c:
                r = c.post("/v1/items", json={"items": items})
            add_t1 = time.time()
            add_cpu = cpu_seconds(server.pid) - cpu0
            r.raise_for_status()
            added = r.json()
            time.sleep(1.0)
            stop.set()
            records = q.get(timeout=300)
            load.join(timeout=30)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {read_key}"}) as c:
                sim = c.get(f"/v1/items/{items[0]['item_id']}/similar", params={"n": 3})
                new_reachable = sim.status_code == 200
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def window(t0: float, t1: float) -> dict[str, Any]:
        sel = [(lat, ok) for wall, lat, ok in records if t0 <= wall < t1]
        return summary([lat for lat, _ in sel], sum(not ok for _, ok in sel), t1 - t0)

    idle, during = window(idle_t0, add_t0), window(add_t0, add_t1)
    ratio = during["p99_ms"] / idle["p99_ms"]
    result = {
        "idle": idle,
        "during_add": during,
        "p99_ratio": ratio,
        "meets_target": bool(ratio <= TARGET_RATIO),
        "add_seconds": add_t1 - add_t0,
        "add_server_cpu_s": add_cpu,
        "added": added["added"],
        "updated": added["updated"],
        "new_item_similar_ok": new_reachable,
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result), flush=True)
    env = machine()
    row = (
        "| {w} | {requests:,} | {rps:.1f} | {p50_ms:.1f} | {p99_ms:.1f} | {max_ms:.1f} | {errors} |"
    )
    md = "\n".join(
        [
            "### Bulk item add vs concurrent `/v1/recommend` (shop log, text on)",
            "",
            f"`recsage serve` (uvicorn, 1 worker, auth on) with EASE + MiniLM text + popularity "
            f"+ RRF on the synthetic shop log (fitted in {fit_s:.0f} s). {args.connections} "
            f"closed-loop connections, random known users, n=10; one `POST /v1/items` adding "
            f"{args.items:,} products took {result['add_seconds']:.1f} s "
            f"({add_cpu:.0f} s server CPU). Target: p99 during the add <= "
            f"{TARGET_RATIO:.0f}x p99 idle.",
            "",
            "| window | requests | req/s | p50 (ms) | p99 (ms) | max (ms) | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
            row.format(w=f"idle ({args.idle:.0f} s)", **idle),
            row.format(w=f"during the add ({during['seconds']:.0f} s)", **during),
            "",
            f"p99 during / idle = **{ratio:.2f}** "
            f"({'meets' if result['meets_target'] else 'misses'} the <= {TARGET_RATIO:.0f}x "
            f"target). {machine_line(env)} Load average (1 min) at the end: "
            f"{result['load_avg_1m']} (the machine is shared).",
            "",
            "Reproduce: `python benchmarks/service_bulk_items.py` "
            f"(`--items {args.items} --idle {args.idle:.0f} --connections {args.connections}`).",
        ]
    )
    payload = {
        "benchmark": "service_bulk_items",
        "config": {
            "spec": SPEC,
            "items": args.items,
            "idle_s": args.idle,
            "connections": args.connections,
            "fit_s": fit_s,
            "target_p99_ratio": TARGET_RATIO,
        },
        "environment": env,
        "results": result,
        "markdown": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(md)


if __name__ == "__main__":
    main()
