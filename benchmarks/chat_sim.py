"""Simulated users on ML-1M: does a conversation reach a held-out movie within 5 turns?

Each simulated user knows one target: their leave-one-out test movie (the recommender sees
the history before it). Turn 1 names one genre of the target ("I'm in the mood for a comedy").
After each list of n = 10 the user checks it; if the target is not there, they critique,
one critique per turn in this order of preference, each used once: the decade ("something
from the 1990s"); "more like the N-th one" for the shown movie whose genres best match the
target's (Jaccard >= 0.5); "no <genre>" for the genre most common in the list that the
target lacks; another genre of the target; else "something else". Success = the target
appears in a list within 5 turns (5 lists of 10, 50 movies seen).

References without a conversation: EASE's static top-10 (HR@10, one list) and top-50
(HR@50, as many movies as five lists). Conditions: rules + MiniLM embeddings alone, plus
the user's history profile, plus the EASE ranking as a prior; optionally SmolLM2 parsing on
the first --llm-users users.

    .venv/bin/python benchmarks/chat_sim.py [--users 200] [--llm smollm2 --llm-users 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import machine, machine_line, write_result

from recsage.data.sources.registry import load_dataset
from recsage.data.splits import leave_one_out
from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder
from recsage.llm.conversation.session import ConversationSession, SessionWeights
from recsage.models import create_model

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth"]  # fmt: skip


class SimulatedUser:
    """Knows the target; answers each list with one critique (see the module docstring)."""

    def __init__(self, cat: Catalogue, target: int, rng: np.random.Generator) -> None:
        self.cat = cat
        self.target = target
        self.genres = sorted(cat.genres[target])
        self.rng = rng
        self.revealed: set[str] = set()
        self.used: set[str] = set()

    def _say_genre(self, g: str) -> str:
        self.revealed.add(g)
        return self.cat.genre_names.get(g, g).lower()

    def opening(self) -> str:
        if not self.genres:
            return "I'm looking for a good movie"
        g = self.genres[int(self.rng.integers(len(self.genres)))]
        return f"I'm in the mood for a {self._say_genre(g)} movie"

    def respond(self, shown: list[int]) -> str:
        cat, t = self.cat, self.target
        year = cat.years[t]
        if "decade" not in self.used and np.isfinite(year):
            self.used.add("decade")
            return f"something from the {int(year) // 10 * 10}s"
        if "like" not in self.used and self.genres:
            tg = set(self.genres)
            jac = [len(cat.genres[i] & tg) / max(len(cat.genres[i] | tg), 1) for i in shown]
            if jac and max(jac) >= 0.5:
                self.used.add("like")
                return f"more like the {ORDINALS[int(np.argmax(jac))]} one"
        if "no" not in self.used:
            counts: dict[str, int] = {}
            for i in shown:
                for g in cat.genres[i] - set(self.genres):
                    counts[g] = counts.get(g, 0) + 1
            if counts:
                self.used.add("no")
                g = max(sorted(counts), key=counts.__getitem__)
                return f"no {cat.genre_names.get(g, g).lower()} please"
        rest = [g for g in self.genres if g not in self.revealed]
        if rest:
            return f"it should be {self._say_genre(rest[0])} too"
        return "something else"


def run_condition(
    cat: Catalogue, users: np.ndarray, targets: np.ndarray, histories: list[np.ndarray],
    priors: np.ndarray | None, *, profile: bool, backend: Any, turns: int, n: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    found_at = []
    latencies = []
    index = {str(x): i for i, x in enumerate(cat.ids)}
    for r, (u, t) in enumerate(zip(users, targets, strict=True)):
        rng = np.random.default_rng(seed + int(u))
        sim = SimulatedUser(cat, int(t), rng)
        weights = SessionWeights(pipeline=0.6) if priors is not None else SessionWeights()
        s = ConversationSession(
            cat, backend=backend, n=n, history=histories[r] if profile else None,
            pipeline_scores=None if priors is None else priors[r], weights=weights,
            llm_timeout=120,
        )  # fmt: skip
        text = sim.opening()
        hit = 0
        for k in range(1, turns + 1):
            t0 = time.perf_counter()
            shown = [index[x.item] for x in s.turn(text).recommendations]
            latencies.append(time.perf_counter() - t0)
            if int(t) in shown:
                hit = k
                break
            text = sim.respond(shown)
        found_at.append(hit)
    f = np.array(found_at)
    return {
        "users": len(f),
        "success@turn": {k: float(((f > 0) & (f <= k)).mean()) for k in range(1, turns + 1)},
        "success": float((f > 0).mean()),
        "mean_turns_when_found": float(f[f > 0].mean()) if (f > 0).any() else None,
        "seconds_per_turn": float(np.mean(latencies)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default="minilm", choices=("minilm", "keywords"))
    ap.add_argument("--llm", default="none")
    ap.add_argument("--llm-users", type=int, default=20)
    ap.add_argument("--name", default="chat_sim")
    args = ap.parse_args()
    ds = load_dataset("ml-1m")
    loo = leave_one_out(ds)
    if args.encoder == "keywords":
        encoder: Any = KeywordEncoder()
    else:
        from recsage.encoders.cache import default_cache_dir
        from recsage.encoders.text import TextEncoder

        encoder = TextEncoder(cache_dir=default_cache_dir())
    cat = Catalogue.from_dataset(ds, encoder=encoder)
    rng = np.random.default_rng(args.seed)
    users = rng.choice(loo.test.users, size=min(args.users, len(loo.test.users)), replace=False)
    targets = np.array([loo.test.targets[u].indices[0] for u in users])
    seqs = loo.test.train.sequences()
    histories = [seqs[u] for u in users]
    ease = create_model("ease", l2=500.0, half_life=3.0).fit(loo.test.train)
    priors = ease.score(users)
    hist_mask = loo.test.history[users].toarray() > 0
    priors[hist_mask] = -np.inf
    order = np.argsort(-priors, axis=1, kind="stable")
    pos = np.array([int(np.flatnonzero(order[r] == t)[0]) for r, t in enumerate(targets)])
    static = {"EASE top-10 (one list)": float((pos < 10).mean()),
              f"EASE top-{args.n * args.turns} (as many movies as {args.turns} lists)":
              float((pos < args.n * args.turns).mean())}  # fmt: skip
    common = {"turns": args.turns, "n": args.n, "seed": args.seed}
    conditions = {
        "chat (rules + embeddings)": run_condition(
            cat, users, targets, histories, None, profile=False, backend=None, **common),
        "chat + history profile": run_condition(
            cat, users, targets, histories, None, profile=True, backend=None, **common),
        "chat + profile + EASE prior": run_condition(
            cat, users, targets, histories, priors, profile=True, backend=None, **common),
    }  # fmt: skip
    if args.llm != "none":
        from recsage.llm.backends.base import default_cache_dir
        from recsage.llm.backends.registry import create_backend

        backend = create_backend(args.llm, cache_dir=default_cache_dir(), timeout=120)
        k = min(args.llm_users, len(users))
        sub = (users[:k], targets[:k], histories[:k], priors[:k])
        conditions[f"same, first {k} users"] = run_condition(
            cat, *sub, profile=True, backend=None, **common)  # fmt: skip
        conditions[f"same + {args.llm} parsing, first {k} users"] = run_condition(
            cat, *sub, profile=True, backend=backend, **common)  # fmt: skip
    m = machine()
    lines = [
        "### Simulated conversations on ML-1M (target = the held-out test movie)",
        "",
        f"{len(users)} seeded random test users (seed {args.seed}); lists of {args.n}; at most "
        f"{args.turns} turns; encoder {args.encoder}. The simulator opens with one genre of "
        "the target, then critiques: decade, 'more like the N-th one', 'no <genre>', another "
        "genre, 'something else'.",
        "",
        "| condition | " + " | ".join(f"by turn {k}" for k in range(1, args.turns + 1))
        + " | s/turn |",
        "|---|" + "---|" * (args.turns + 1),
    ]  # fmt: skip
    for name, c in conditions.items():
        cells = " | ".join(f"{c['success@turn'][k]:.3f}" for k in range(1, args.turns + 1))
        lines.append(f"| {name} | {cells} | {c['seconds_per_turn']:.2f} |")
    lines += ["", "No conversation: " + "; ".join(f"{k}: {v:.3f}" for k, v in static.items())
              + ".", "", machine_line(m)]  # fmt: skip
    md = "\n".join(lines)
    path = write_result(args.name, {"protocol": vars(args), "machine": m, "static": static,
                                    "conditions": conditions, "markdown": md})  # fmt: skip
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
