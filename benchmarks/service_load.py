"""Service load benchmark: `recsage serve` on loopback, `/v1/recommend` under bounded load.

The pipeline is trained on MovieLens-1M (6,040 users, 3,416 items, 1M interactions) with
**text disabled**: EASE (l2=200, 100 candidates) + popularity (50), RRF pre-rank to 20.
The server runs as its own process (uvicorn, one worker, auth on, rate limit raised out of
the way); the load generator is `wrk` (closed loop, fixed connections, random known users,
n=10) or, without wrk, a Python asyncio + httpx generator in a separate process. Both run
on the same machine, so they compete for its cores.

    python benchmarks/service_load.py                      # 30 s at 8 connections
    python benchmarks/service_load.py --duration 10 --connections 4 16

`--model DIR` serves a saved pipeline instead (e.g. the full ML-1M pipeline: SASRec and
five more channels, LightGBM ranker, MMR; saved by `benchmarks/pipeline.py --save DIR` or
`recsage train --pipeline pipelines/ml1m.toml`) and adds the per-stage cost of one request,
measured in this process with the pipeline's trace (`Pipeline.run_batch(trace=True)`), so
what HTTP adds is the server's CPU per request minus the pipeline's own time:

    python benchmarks/service_load.py --model runs/ml1m-pipeline --connections 1 4 8

Writes benchmarks/results/service_load.json (with a "markdown" table) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, machine_line

SPEC: dict[str, Any] = {
    "text": {"enabled": False},
    "merge": {"max_candidates": 100},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 200.0}},
        {"name": "pop", "kind": "popularity", "n": 50},
    ],
    "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
}
TARGET_RPS, TARGET_P99_MS = 200.0, 50.0
# the full pipeline's targets (issue 16): >= 300 req/s with p99 < 20 ms at 4 connections
PIPELINE_TARGET_RPS, PIPELINE_TARGET_P99_MS = 300.0, 20.0

WRK_SCRIPT = """
local users = {%(users)s}
local key = "%(key)s"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
math.randomseed(%(seed)d)
request = function()
  local u = users[math.random(#users)]
  return wrk.format(nil, "/v1/recommend", nil, '{"user_id": "' .. u .. '", "n": 10}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%f, "non2xx": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(out: Path) -> tuple[Path, list[str], float]:
    from recsage.data.sources.registry import load_dataset
    from recsage.pipeline.pipeline import Pipeline

    ds = load_dataset("ml-1m")
    t0 = time.perf_counter()
    pipe = Pipeline(SPEC).fit(ds)
    secs = time.perf_counter() - t0
    return pipe.save(out), [str(u) for u in ds.users.ids], secs


def describe(pipe: Any) -> str:
    """`sasrec (model:sasrec, 200) + … → prerank (rrf, 250) → …` for the table caption."""
    chans = " + ".join(
        f"{c['name']} ({c['kind']}{':' + c['model'] if c.get('model') else ''}, {c['n']})"
        for c in pipe.spec["channels"]
    )
    stages = " → ".join(
        f"{s['name']} ({s.get('learner', s['kind'])}, keep {s.get('keep', '-')})"
        for s in pipe.spec["stages"]
    )
    return chans + (" → " + stages if stages else "")


def stage_costs(model: Path, users: list[str], n_users: int, n: int = 10) -> dict[str, Any]:
    """Per-stage cost of single-user requests, in this process, one thread: each user's
    query runs once through `run_batch(trace=True)` (the stages' own timers) and once
    through `Pipeline.run` (the whole call, fallback and formatting included)."""
    from recsage.pipeline.pipeline import Pipeline, _single_threaded
    from recsage.types import Query

    pipe = Pipeline.load(model)
    rng = np.random.default_rng(11)
    pick = [users[i] for i in rng.choice(len(users), size=min(n_users, len(users)), replace=False)]
    for u in pick[:20]:  # warm-up
        pipe.run(Query(user=u, n=n))
    parts: dict[str, list[float]] = {}
    whole: list[float] = []
    for u in pick:
        q = Query(user=u, n=n)
        t0 = time.perf_counter()
        batch = pipe.query_batch(q)
        parts.setdefault("query (ids → history, filters)", []).append(time.perf_counter() - t0)
        with _single_threaded():
            _, trace = pipe.run_batch(batch, trace=True, min_keep=n)
        assert trace is not None
        for k, v in trace.seconds.items():
            parts.setdefault(k, []).append(v)
        t0 = time.perf_counter()
        pipe.run(q)
        whole.append(time.perf_counter() - t0)

    def stats(xs: list[float]) -> dict[str, float]:
        a = np.array(xs) * 1e3
        return {
            "mean_ms": float(a.mean()),
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)),
        }

    return {
        "users": len(pick),
        "stages": {k: stats(v) for k, v in parts.items()},
        "pipeline_run": stats(whole),
        "describe": describe(pipe),
        "text_model": (
            pipe.spec["text"].get("model", "minilm")
            if pipe.spec.get("text", {}).get("enabled", True)
            else "none (text disabled)"
        ),
    }


def start_server(model: Path, home: Path, port: int, env_extra: dict[str, str]) -> Any:
    env = {
        **os.environ,
        "RECSAGE_HOME": str(home),
        "RECSAGE_RATE_LIMIT": "0",
        "RECSAGE_RELOAD_INTERVAL": "0",
        "HF_HUB_OFFLINE": "1",
        **env_extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "recsage.cli", "serve", "--model", str(model), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server not ready after 300 s")


def batch_totals(url: str) -> tuple[float, float]:
    """(sum, count) of the server's `recsage_recommend_batch_size` histogram."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    got = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for k in got:
            if line.startswith(f"recsage_recommend_batch_size_{k} "):
                got[k] = float(line.split()[1])
    return got["sum"], got["count"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, key: str, users: list[str], connections: int, duration: int) -> dict:
    script = WRK_SCRIPT % {
        "users": ",".join(f'"{u}"' for u in users),
        "key": key,
        "seed": 7,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        res = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "5s",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        os.unlink(f.name)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {res.stdout}\n{res.stderr}")
    r = json.loads(line[len("RESULT ") :])
    secs = r["duration_us"] / 1e6
    return {
        "generator": "wrk 1 thread",
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1e3,
        "p90_ms": r["p90_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "errors": r["non2xx"] + r["errors"],
    }


def _python_load(url: str, key: str, users: list[str], conns: int, secs: float, q: Any) -> None:
    import httpx

    async def main() -> dict:
        lat: list[float] = []
        errors = 0
        rng = np.random.default_rng(7)
        stop = time.perf_counter() + secs
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=5
        ) as client:

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    body = {"user_id": users[int(rng.integers(len(users)))], "n": 10}
                    t0 = time.perf_counter()
                    try:
                        r = await client.post("/v1/recommend", json=body)
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    lat.append(time.perf_counter() - t0)
                    errors += not ok

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conns)))
            took = time.perf_counter() - t0
        a = np.array(lat) * 1e3
        return {
            "generator": "python asyncio+httpx",
            "requests": len(a),
            "seconds": took,
            "rps": len(a) / took,
            "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()),
            "errors": errors,
        }

    q.put(asyncio.run(main()))


def run_python(url: str, key: str, users: list[str], connections: int, duration: int) -> dict:
    q: Any = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(
        target=_python_load, args=(url, key, users, connections, duration, q)
    )
    p.start()
    out = q.get(timeout=duration + 120)
    p.join(timeout=30)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=30, help="seconds per load level")
    ap.add_argument("--connections", type=int, nargs="+", default=[8])
    ap.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--model", type=Path, default=None,
        help="serve this saved pipeline instead of training EASE + popularity",
    )  # fmt: skip
    ap.add_argument(
        "--stage-users", type=int, default=500, help="users for the per-stage cost (--model)"
    )
    args = ap.parse_args()
    if args.out is None:
        name = "service_load.json" if args.model is None else "service_load_pipeline.json"
        args.out = RESULTS / name
    target_rps, target_p99 = (
        (TARGET_RPS, TARGET_P99_MS)
        if args.model is None
        else (PIPELINE_TARGET_RPS, PIPELINE_TARGET_P99_MS)
    )
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))

    from recsage.feedback.store import FeedbackStore
    from recsage.serving.auth import create_key

    work = Path(tempfile.mkdtemp(prefix="recsage-load-"))
    try:
        costs: dict[str, Any] | None = None
        if args.model is None:
            print("training the ML-1M pipeline (text disabled)…", flush=True)
            model, users, fit_s = train(work / "model")
        else:
            from recsage.pipeline.pipeline import Pipeline

            model, fit_s = args.model.resolve(), float("nan")
            users = [str(u) for u in Pipeline.load(model).users.ids]
            print(f"per-stage cost over {args.stage_users} users (in process)…", flush=True)
            costs = stage_costs(model, users, args.stage_users)
            print(json.dumps(costs, indent=1), flush=True)
        home = work / "home"
        store = FeedbackStore.open(f"sqlite:///{home / 'feedback.db'}")
        key = create_key(store, "bench", "read")
        store.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(model, home, port, {})
        try:
            import httpx

            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
                for u in users[:300]:  # warm-up
                    c.post("/v1/recommend", json={"user_id": u, "n": 10}).raise_for_status()
            runs = []
            for conns in args.connections:
                cpu0 = cpu_seconds(server.pid)
                b0 = batch_totals(url)
                print(f"load: {conns} connections for {args.duration} s…", flush=True)
                if use_wrk:
                    r = run_wrk(url, key, users, conns, args.duration)
                else:
                    r = run_python(url, key, users, conns, args.duration)
                r["connections"] = conns
                r["server_cpu_ms_per_request"] = (
                    (cpu_seconds(server.pid) - cpu0) * 1e3 / max(1, r["requests"])
                )
                b1 = batch_totals(url)
                r["mean_batch"] = (b1[0] - b0[0]) / max(1.0, b1[1] - b0[1])
                r["meets_targets"] = r["rps"] >= target_rps and r["p99_ms"] < target_p99
                r["load_avg_1m"] = round(os.getloadavg()[0], 1)
                runs.append(r)
                print(json.dumps(r), flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    env = machine()
    env["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    rows = [
        f"| {r['connections']} | {r['generator']} | {r['requests']:,} | {r['rps']:,.0f} | "
        f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
        f"{r['server_cpu_ms_per_request']:.2f} | {r.get('mean_batch', 1.0):.2f} | "
        f"{r['load_avg_1m']} | "
        f"{'yes' if r['meets_targets'] else 'no'} |"
        for r in runs
    ]
    head = [
        "| connections | generator | requests | req/s | p50 (ms) | p90 (ms) | p99 (ms) "
        "| errors | server CPU ms/req | mean batch | load avg | targets met |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
    ]
    reproduce = (
        "Reproduce: `python benchmarks/service_load.py "
        + (f"--model {args.model} " if args.model is not None else "")
        + f"--connections {' '.join(map(str, args.connections))} --duration {args.duration}`."
    )
    if costs is None:
        md = "\n".join(
            [
                "### HTTP service load (`POST /v1/recommend`, ML-1M, text disabled)",
                "",
                f"`recsage serve` (uvicorn, 1 worker, API key auth on) with EASE + popularity + "
                f"RRF trained on ML-1M in {fit_s:.0f} s; closed-loop load for {args.duration} s "
                "per row from random known users, n=10, generator on the same machine. Targets: "
                f">= {target_rps:.0f} req/s and p99 < {target_p99:.0f} ms.",
                "",
                *head,
                machine_line(env)
                + f" Load average (1 min) at the end: {env['load_average_1m_at_end']} "
                "(the machine is shared).",
                "",
                reproduce,
            ]
        )
    else:
        whole = costs["pipeline_run"]
        cpu = {r["connections"]: r["server_cpu_ms_per_request"] for r in runs}
        stage_rows = [
            f"| {k} | {v['mean_ms']:.2f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |"
            for k, v in costs["stages"].items()
        ]
        total = sum(v["mean_ms"] for v in costs["stages"].values())
        md = "\n".join(
            [
                "### HTTP service load of the full pipeline (`POST /v1/recommend`)",
                "",
                f"`recsage serve --model {args.model}` (uvicorn, 1 worker, API key auth on): "
                f"{costs['describe']}; text model {costs['text_model']}. Closed-loop load for "
                f"{args.duration} s per row from random known users, n=10, generator on the "
                f"same machine. Targets: >= {target_rps:.0f} req/s and p99 < "
                f"{target_p99:.0f} ms at 4 connections.",
                "",
                *head,
                f"Per-stage cost of one request, in process, one thread, {costs['users']} "
                "random users (the stages' own timers; a learned stage's time includes "
                "building its features):",
                "",
                "| part | mean (ms) | p50 (ms) | p99 (ms) |",
                "|---|---:|---:|---:|",
                *stage_rows,
                f"| **sum of parts** | {total:.2f} | | |",
                f"| **`Pipeline.run` (whole call)** | {whole['mean_ms']:.2f} | "
                f"{whole['p50_ms']:.2f} | {whole['p99_ms']:.2f} |",
                "",
                "Server CPU per request against one `Pipeline.run` alone "
                f"({whole['mean_ms']:.2f} ms): "
                + ", ".join(f"{c} conn. {v:.2f} ms" for c, v in sorted(cpu.items()))
                + ". Concurrent requests are run as one pipeline batch (`mean batch`; "
                "`RECSAGE_BATCH_MAX`), which is what takes the per-request cost below a "
                "single run's; with one connection the difference is what HTTP, auth, "
                "validation and JSON add.",
                "",
                machine_line(env)
                + f" Load average (1 min) at the end: {env['load_average_1m_at_end']}.",
                "",
                reproduce,
            ]
        )
    payload = {
        "benchmark": "service_load",
        "config": {
            "dataset": "ml-1m",
            "model": str(args.model) if args.model else None,
            "text": args.model is not None,
            "spec": SPEC if args.model is None else costs and costs["describe"],
            "duration_s": args.duration,
            "connections": args.connections,
            "fit_s": fit_s,
            "targets": {"rps": target_rps, "p99_ms": target_p99},
        },
        "stage_costs": costs,
        "environment": env,
        "results": runs,
        "markdown": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(md)


if __name__ == "__main__":
    main()
