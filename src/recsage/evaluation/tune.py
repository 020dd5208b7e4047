"""Hyper-parameter search for a pipeline spec with Ray Tune, ASHA on validation NDCG@10.

Protocol (the test interactions are never seen): the dataset loses each user's last
interaction; each trial fits the pipeline on what is left (which itself holds out the
second-last one for its learned stages, as `Pipeline.fit` does) and is scored on the
validation setting - each user's second-last interaction, ranked over the full catalogue.
Trials report NDCG@10 on a growing share of the validation users (`rungs`, e.g. a quarter,
a half, all); ASHA stops the trials that trail at a rung, so bad settings are never ranked
for every user. The best trial among those that reached the last rung wins; its spec is
written out as TOML.

Search space TOML (`--space`): a `[space]` table of dotted paths into the spec, each with
one distribution::

    [space]
    "channels.ease.params.l2" = { loguniform = [10.0, 3000.0] }
    "channels.cooc.window" = { int = [1, 6] }        # inclusive
    "merge.max_candidates" = { choice = [100, 200, 300] }
    "stages.rerank.lambda" = { uniform = [0.7, 1.0] }

`channels.<name>` and `stages.<name>` address list entries by their `name`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsage.data.schema import Dataset
from recsage.data.splits import Split, leave_one_out
from recsage.errors import ConfigError, RecsageError
from recsage.evaluation.protocol import evaluate
from recsage.executor import ensure_ray

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
METRIC = "ndcg@10"


@dataclass(frozen=True)
class Param:
    """One searched value: a dotted path into the spec and its distribution."""

    path: str
    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        """A value drawn the way the Ray search space draws it (used without Ray too)."""
        if self.kind == "uniform":
            return float(rng.uniform(self.args[0], self.args[1]))
        if self.kind == "loguniform":
            lo, hi = np.log(self.args[0]), np.log(self.args[1])
            return float(np.exp(rng.uniform(lo, hi)))
        if self.kind == "int":
            return int(rng.integers(self.args[0], self.args[1] + 1))
        return self.args[int(rng.integers(len(self.args)))]

    def ray_domain(self) -> Any:
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "int":
            return tune.randint(self.args[0], self.args[1] + 1)
        return tune.choice(list(self.args))


def parse_space(raw: dict[str, Any], *, source: str = "space") -> list[Param]:
    """`{"path": {"kind": [args]}}` -> params, validating distributions and bounds."""
    table = raw.get("space")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{source}: expected a non-empty [space] table of dotted paths")
    params = []
    for path, dist in table.items():
        if not isinstance(dist, dict) or len(dist) != 1:
            raise ConfigError(
                f"{source}: '{path}' needs exactly one of {', '.join(DISTRIBUTIONS)}, "
                f"e.g. {{ loguniform = [10.0, 1000.0] }}"
            )
        kind, args = next(iter(dist.items()))
        if kind not in DISTRIBUTIONS:
            raise ConfigError(
                f"{source}: '{path}': unknown distribution '{kind}'; known: "
                f"{', '.join(DISTRIBUTIONS)}"
            )
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{source}: '{path}': {kind} needs a list of values")
        if kind != "choice":
            if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
                raise ConfigError(f"{source}: '{path}': {kind} needs [low, high] numbers")
            bad = args[0] > args[1] if kind == "int" else args[0] >= args[1]
            if bad:
                raise ConfigError(f"{source}: '{path}': low must be below high, got {args}")
            if kind == "loguniform" and args[0] <= 0:
                raise ConfigError(f"{source}: '{path}': loguniform needs low > 0")
            if kind == "int" and not all(isinstance(a, int) for a in args):
                raise ConfigError(f"{source}: '{path}': int bounds must be integers")
        params.append(Param(str(path), kind, tuple(args)))
    return params


def load_space(path: str | Path) -> list[Param]:
    """Read a search-space TOML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    return parse_space(raw, source=str(path))


def set_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `spec` with `path` set; `channels.X`/`stages.X` pick entries by name."""
    out = copy.deepcopy(spec)
    parts = path.split(".")
    node: Any = out
    i = 0
    while i < len(parts) - 1:
        key = parts[i]
        if isinstance(node, list):
            match = [e for e in node if isinstance(e, dict) and e.get("name") == key]
            if not match:
                names = [e.get("name") for e in node if isinstance(e, dict)]
                raise ConfigError(f"search space '{path}': no entry named '{key}' (have {names})")
            node = match[0]
        elif isinstance(node, dict):
            if key not in node:
                if i == 0:
                    raise ConfigError(
                        f"search space '{path}': the spec has no section '{key}' "
                        f"(sections: {', '.join(sorted(out))})"
                    )
                node[key] = {}
            node = node[key]
        else:
            raise ConfigError(f"search space '{path}': '{key}' is not a table")
        i += 1
    if not isinstance(node, dict):
        raise ConfigError(f"search space '{path}': cannot set a value inside a list")
    node[parts[-1]] = value
    return out


def apply_params(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`spec` with every searched value set (numpy scalars become plain Python values)."""
    for path, value in values.items():
        spec = set_path(spec, path, value.item() if isinstance(value, np.generic) else value)
    return spec


@dataclass
class TuneData:
    """The tuning protocol's data: what trials fit on, and the validation setting."""

    train: Dataset
    valid: Split
    order: np.ndarray  # validation users in the (seeded) order rungs take them


def tune_data(dataset: Dataset, *, seed: int = 0) -> TuneData:
    """Drop each user's last interaction (the test target); validate on the second-last."""
    train = leave_one_out(dataset).test.train
    valid = leave_one_out(train).test  # target: the original second-last interaction
    order = np.random.default_rng(seed).permutation(valid.users)
    return TuneData(train, valid, order)


def rung_sizes(n_users: int, rungs: tuple[float, ...]) -> list[int]:
    """Cumulative users evaluated after each rung."""
    if not rungs or any(not 0 < r <= 1 for r in rungs) or list(rungs) != sorted(rungs):
        raise ConfigError(f"rungs must be increasing shares in (0, 1], got {rungs}")
    sizes = [max(1, round(r * n_users)) for r in rungs]
    sizes[-1] = n_users
    return sizes


def run_trial(
    spec: dict[str, Any], values: dict[str, Any], data: TuneData, rungs: tuple[float, ...]
) -> Any:
    """Fit the trial's pipeline and yield (users evaluated, NDCG@10 so far) per rung."""
    from recsage.pipeline.pipeline import Pipeline

    pipe = Pipeline(apply_params(spec, values)).fit(data.train)
    scorer = pipe.scorer(data.valid.train.sequences())
    done = 0
    values_so_far: list[np.ndarray] = []
    for size in rung_sizes(len(data.order), rungs):
        users = np.sort(data.order[done:size])
        if len(users):
            part = dataclasses.replace(data.valid, users=users)
            values_so_far.append(evaluate(scorer, part, ks=(10,)).per_user[METRIC].to_numpy())
        done = size
        yield size, float(np.concatenate(values_so_far).mean())


def _trainable(config: dict[str, Any], spec: dict[str, Any], data: TuneData, rungs: Any) -> None:
    from ray import tune

    values = {k.replace("/", "."): v for k, v in config.items()}
    for size, ndcg in run_trial(spec, values, data, tuple(rungs)):
        tune.report({METRIC: ndcg, "users": size})


@dataclass
class TuneResult:
    """Every trial (params, last NDCG@10, rungs reached, stopped early?) and the winner."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    best_spec: dict[str, Any]
    rungs: int
    seconds: float
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": f"validation {METRIC}",
            "rows": self.rows,
            "best": self.best,
            "seconds": round(self.seconds, 2),
            "protocol": self.protocol,
        }


def tune_pipeline(
    spec: dict[str, Any],
    dataset: Dataset,
    space: list[Param],
    *,
    trials: int = 8,
    rungs: tuple[float, ...] = (0.25, 0.5, 1.0),
    seed: int = 0,
    workers: int | None = None,
    storage: str | Path | None = None,
    address: str | None = None,
) -> TuneResult:
    """Random search over `space` with ASHA early stopping; see the module docstring."""
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    for p in space:  # fail on a bad path before any trial starts
        set_path(spec, p.path, p.args[0])
    from recsage.pipeline.pipeline import Pipeline

    Pipeline(spec)  # validates the spec itself
    ray = ensure_ray(address, workers=workers)
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    data = tune_data(dataset, seed=seed)
    if len(data.valid.users) == 0:
        raise RecsageError("no user has three or more interactions: nothing to validate on")
    n_rungs = len(rung_sizes(len(data.order), rungs))
    start = time.perf_counter()
    scheduler = ASHAScheduler(
        time_attr="training_iteration", max_t=n_rungs, grace_period=1, reduction_factor=2
    )
    # '.' in Ray config keys would be read as nesting: use '/' inside Ray
    param_space = {p.path.replace(".", "/"): p.ray_domain() for p in space}
    cpus = int(ray.cluster_resources().get("CPU", 1))
    tuner = tune.Tuner(
        tune.with_parameters(_trainable, spec=spec, data=data, rungs=list(rungs)),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", scheduler=scheduler, num_samples=trials,
            search_alg=BasicVariantGenerator(random_state=seed),
            max_concurrent_trials=workers or cpus,
        ),
        run_config=tune.RunConfig(
            name="recsage-tune",
            storage_path=str(Path(storage).resolve()) if storage else None,
            verbose=0,
        ),
    )  # fmt: skip
    grid = tuner.fit()
    rows = []
    results: list[Any] = [grid[i] for i in range(len(grid))]
    for i, res in enumerate(results):
        params = {k.replace("/", "."): v for k, v in (res.config or {}).items()}
        metrics = res.metrics or {}
        reached = int(metrics.get("training_iteration", 0))
        rows.append({
            "trial": i,
            **{k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()},
            METRIC: metrics.get(METRIC),
            "users": metrics.get("users"),
            "rungs": reached,
            "stopped_early": res.error is None and reached < n_rungs,
            "error": None if res.error is None else str(res.error).splitlines()[0][:200],
        })  # fmt: skip
    finished = [r for r in rows if r["rungs"] == n_rungs and r[METRIC] is not None]
    if not finished:
        errs = [r["error"] for r in rows if r["error"]]
        raise RecsageError("no trial finished" + (f"; first error: {errs[0]}" if errs else ""))
    best = max(finished, key=lambda r: (r[METRIC], -r["trial"]))
    best_values = {p.path: best[p.path] for p in space}
    protocol = {
        "fit_on": "each user's interactions but the last (the test target), by Pipeline.fit",
        "validated_on": "each user's second-last interaction, full ranking",
        "test_used": False,
        "validation_users": len(data.order),
        "rung_users": rung_sizes(len(data.order), rungs),
        "scheduler": "ASHA (grace 1 rung, reduction factor 2)",
        "search": f"random, {trials} trials, seed {seed}",
    }
    return TuneResult(rows, best, apply_params(spec, best_values), n_rungs,
                      time.perf_counter() - start, protocol)  # fmt: skip


def write_tune_outputs(result: TuneResult, best_spec_path: str | Path) -> list[Path]:
    """The best spec as TOML, and the results table as JSON next to it."""
    import tomli_w

    path = Path(best_spec_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(result.best_spec))
    table = path.with_name(path.stem + ".trials.json")
    table.write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return [path, table]


__all__ = [
    "DISTRIBUTIONS",
    "Param",
    "TuneData",
    "TuneResult",
    "apply_params",
    "load_space",
    "parse_space",
    "run_trial",
    "rung_sizes",
    "set_path",
    "tune_data",
    "tune_pipeline",
    "write_tune_outputs",
]
