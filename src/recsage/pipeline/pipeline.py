"""`Pipeline`: channels → merge → stages, built from a TOML spec; one object for the CLI,
the service, batch jobs and offline evaluation.

Training protocol: channels are fitted on every interaction except each user's last two;
learned stages are trained on the second-last interactions (held out from the channels),
with negatives drawn from the candidate lists themselves. Serving uses full histories.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsage.artifacts import PIPELINE, STATE, read_artifact, write_artifact
from recsage.data.schema import Dataset
from recsage.data.splits import Split, leave_one_out
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, RecsageError
from recsage.ranking.features import ItemStats, candidate_features
from recsage.ranking.stages.base import Stage, StageContext
from recsage.ranking.stages.learned import LearnedStage
from recsage.ranking.stages.registry import create_stage
from recsage.ranking.training import (
    concat_ranking_data,
    label_matrix,
    last_items,
    ranking_data,
    sample_training_slots,
)
from recsage.retrieval.channels.base import Channel, Resources
from recsage.retrieval.channels.model import ModelChannel
from recsage.retrieval.channels.registry import create_channel
from recsage.retrieval.merge import merge_channels
from recsage.types import CandidateBatch, Query, QueryBatch, Recommendation

SPEC_FILE = "pipeline.toml"
ITEMS_FILE = "items.parquet"
HISTORY_LEN = 20


@dataclass
class Trace:
    """Per-stage snapshots and timings of one batch run (for diagnostics)."""

    stages: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> items (B, N)
    seconds: dict[str, float] = field(default_factory=dict)
    channels: dict[str, np.ndarray] = field(default_factory=dict)  # channel -> items (B, n)


_CONTROLLER: Any = None


def _single_threaded() -> Any:
    """Context that limits BLAS/OpenMP pools to one thread (cached controller)."""
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def _default_cache_dir() -> Path:
    root = os.environ.get("RECSAGE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "recsage"
    return base / "embeddings"


class Pipeline:
    """A configured recommender: retrieval channels, a merger and ranking stages."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = _normalise_spec(spec)
        self.channels: list[Channel] = [create_channel(c) for c in self.spec["channels"]]
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ConfigError(f"channel names must be unique, got {names}")
        self.stages: list[Stage] = [create_stage(s) for s in self.spec["stages"]]
        self.resources = Resources()
        self.items: Vocabulary | None = None
        self.users: Vocabulary | None = None
        self.item_table: pd.DataFrame | None = None
        self.sequences: list[np.ndarray] = []
        self.stats: ItemStats | None = None
        self.data_fingerprint = ""
        self.fit_seconds: dict[str, float] = {}

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Pipeline:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"pipeline spec {path} does not exist")
        try:
            spec = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        return cls(spec)

    @property
    def n_items(self) -> int:
        return len(self.items) if self.items is not None else 0

    @property
    def model_channels(self) -> list[ModelChannel]:
        return [c for c in self.channels if isinstance(c, ModelChannel)]

    def _sync_stage_catalogue(self) -> None:
        """Give stages that read item text (LLM re-rank) the current catalogue."""
        setters = [s for s in self.stages if hasattr(s, "set_catalogue")]
        if not setters or self.item_table is None:
            return
        from recsage.llm.rerank import catalogue_texts

        texts = catalogue_texts(self.item_table)
        for st in setters:
            st.set_catalogue(texts)

    # ---- training -----------------------------------------------------------------
    def fit(self, dataset: Dataset, *, log: Any = None) -> Pipeline:
        """Fit channels on all but the last two interactions per user, learned stages on
        the second-last ones; keep full histories for serving."""
        say = log or (lambda *_: None)
        self.items, self.users = dataset.items, dataset.users
        self.item_table = dataset.item_table
        self.sequences = dataset.sequences()
        self.data_fingerprint = dataset.fingerprint()
        loo = leave_one_out(dataset)
        self._prepare_resources(dataset, say)
        self.resources.valid = loo.valid
        try:
            self.fit_on(loo.valid.train, say=say)
        finally:
            self.resources.valid = None
        if any(isinstance(s, LearnedStage) for s in self.stages):
            self.train_stages(loo.valid, say=say)
        self._sync_stage_catalogue()
        return self

    def _prepare_resources(self, dataset: Dataset, say: Any) -> None:
        text = self.spec["text"]
        if not text.get("enabled", True):
            return
        from recsage.encoders.text import TextEncoder, encode_dataset_items

        t0 = time.perf_counter()
        cache = Path(text["cache_dir"]) if text.get("cache_dir") else _default_cache_dir()
        enc = TextEncoder(text.get("model") or None, cache_dir=cache)
        self.resources.text_encoder = enc
        self.resources.item_text_vectors = encode_dataset_items(enc, dataset)
        self.fit_seconds["text"] = time.perf_counter() - t0
        say(f"item text vectors: {self.resources.item_text_vectors.shape}")

    def fit_on(self, train: Dataset, *, say: Any = None) -> None:
        """Fit every channel on `train` (and the item statistics features use)."""
        say = say or (lambda *_: None)
        self.stats = ItemStats.from_dataset(train)
        for ch in self.channels:
            t0 = time.perf_counter()
            ch.fit(train, self.resources)
            ch.n_items_fitted = train.n_items
            secs = time.perf_counter() - t0
            self.fit_seconds[f"channel:{ch.name}"] = secs
            say(f"fitted channel {ch.name} ({ch.kind}) in {secs:.1f}s")

    def train_stages(self, valid: Split, *, say: Any = None, batch_size: int = 512) -> None:
        """Train learned stages on `valid`'s targets using candidates from `valid.train`."""
        say = say or (lambda *_: None)
        seqs = valid.train.sequences()
        users = valid.users
        learned = [i for i, s in enumerate(self.stages) if isinstance(s, LearnedStage)]
        for idx in learned:
            stage = self.stages[idx]
            assert isinstance(stage, LearnedStage)
            t0 = time.perf_counter()
            parts = []
            for lo in range(0, len(users), batch_size):
                u = users[lo : lo + batch_size]
                batch = QueryBatch(u, [seqs[i] for i in u], self.n_items)
                cands, ctx, _ = self._run_until(batch, idx)
                labels = label_matrix(cands, valid.targets[u])
                slots = sample_training_slots(
                    labels, cands.valid, negatives=stage.config.negatives,
                    seed=stage.config.seed + lo,
                )  # fmt: skip
                data, _ = ranking_data(
                    cands, ctx, labels=labels, rows_mask=slots, n_items=self.n_items
                )
                parts.append(data)
            data = concat_ranking_data(parts)
            rng = np.random.default_rng(stage.config.seed)
            n_groups = int(data.group.max()) + 1 if len(data.group) else 0
            if n_groups < 10:
                raise RecsageError(
                    f"stage '{stage.name}': only {n_groups} training lists contain their target; "
                    "widen the channels or the earlier stages' `keep`"
                )
            is_val = rng.random(n_groups) < 0.15
            train_d, val_d = data.subset(~is_val), data.subset(is_val)
            stage.ranker = stage.make_ranker()
            stage.ranker.fit(train_d, val_d)
            self.fit_seconds[f"stage:{stage.name}"] = time.perf_counter() - t0
            say(
                f"trained stage {stage.name} ({stage.config.learner}, {stage.config.objective}) "
                f"on {n_groups:,} lists in {self.fit_seconds[f'stage:{stage.name}']:.1f}s"
            )

    # ---- running --------------------------------------------------------------------
    def _retrieve(self, batch: QueryBatch, trace: Trace | None) -> CandidateBatch:
        from recsage.retrieval.channels.base import _exclude_top

        outputs = []
        full_scores: dict[str, np.ndarray] = {}
        for ch in self.channels:
            t0 = time.perf_counter()
            view = batch
            n_ch = self.n_items if ch.grows else ch.n_items_fitted
            if n_ch < self.n_items:  # items added after training: this channel cannot see them
                seqs = [s[s < n_ch] for s in batch.sequences]
                view = QueryBatch(batch.users, seqs, n_ch, texts=batch.texts)
            if isinstance(ch, ModelChannel) and ch.index is None:
                s = ch.scores(view)
                items, scores = _exclude_top(s, view, ch.n)
                if n_ch < self.n_items:
                    s = np.pad(s, ((0, 0), (0, self.n_items - n_ch)), constant_values=-np.inf)
                full_scores[ch.name] = s
            else:
                items, scores = ch.retrieve(view, ch.n)
            outputs.append((ch.name, items, scores))
            if trace is not None:
                trace.seconds[f"channel:{ch.name}"] = time.perf_counter() - t0
                trace.channels[ch.name] = items
        t0 = time.perf_counter()
        merge = self.spec["merge"]
        cands = merge_channels(
            outputs, max_candidates=int(merge["max_candidates"]), quotas=merge.get("quotas", {})
        )
        rows = np.repeat(np.arange(cands.shape[0]), cands.shape[1]).reshape(cands.shape)
        for name, s in full_scores.items():
            col = s[rows, np.maximum(cands.items, 0)]
            cands.scores[f"{name}_full"] = np.where(cands.valid, col, np.nan).astype(np.float32)
        if trace is not None:
            trace.seconds["merge"] = time.perf_counter() - t0
            trace.stages["merge"] = cands.items.copy()
        return cands

    def _context(self, cands: CandidateBatch, batch: QueryBatch) -> StageContext:
        assert self.stats is not None
        ctx = StageContext(
            item_vectors=self.resources.item_text_vectors,
            item_category=self.stats.first_category,
            histories=last_items(batch.sequences, HISTORY_LEN),
        )
        if any(s.needs_features for s in self.stages):
            extra = tuple(f"{c.name}_full" for c in self.model_channels if c.index is None)
            ctx.features, ctx.feature_names = candidate_features(
                cands, batch, self.stats,
                channel_names=cands.channel_names,
                text_vectors=self.resources.item_text_vectors,
                extra_scores=extra,
            )  # fmt: skip
        return ctx

    def _run_until(
        self, batch: QueryBatch, stop: int, trace: Trace | None = None
    ) -> tuple[CandidateBatch, StageContext, Trace | None]:
        cands = self._retrieve(batch, trace)
        for stage in self.stages[:stop]:
            cands = self._apply(stage, cands, batch, trace)
        t0 = time.perf_counter()
        ctx = self._context(cands, batch)
        if trace is not None:
            trace.seconds["features"] = (
                trace.seconds.get("features", 0.0) + time.perf_counter() - t0
            )
        return cands, ctx, trace

    def _apply(
        self, stage: Stage, cands: CandidateBatch, batch: QueryBatch, trace: Trace | None
    ) -> CandidateBatch:
        t0 = time.perf_counter()
        ctx = self._context(cands, batch) if stage.needs_features else StageContext(
            item_vectors=self.resources.item_text_vectors,
            item_category=self.stats.first_category if self.stats else None,
        )  # fmt: skip
        out = stage.apply(cands, ctx)
        if trace is not None:
            trace.seconds[f"stage:{stage.name}"] = time.perf_counter() - t0
            trace.stages[stage.name] = out.items.copy()
        return out

    def run_batch(
        self, batch: QueryBatch, *, trace: bool = False
    ) -> tuple[CandidateBatch, Trace | None]:
        """Run every stage on a batch of queries."""
        if self.stats is None:
            raise RecsageError("pipeline is not fitted; call fit() or Pipeline.load()")
        tr = Trace() if trace else None
        cands = self._retrieve(batch, tr)
        for stage in self.stages:
            cands = self._apply(stage, cands, batch, tr)
        return cands, tr

    def query_batch(self, query: Query) -> QueryBatch:
        """Resolve external ids of a query into a one-row batch."""
        assert self.items is not None and self.users is not None
        user = -1
        seq = np.zeros(0, np.int64)
        if query.user is not None:
            if query.user in self.users:
                user = self.users.index_of(query.user)
                seq = self.sequences[user]
            elif query.history is None and not query.text:
                raise RecsageError(
                    f"unknown user '{query.user}': pass a history or a text query for new users"
                )
        if query.history is not None:
            seq = self.items.encode(query.history, what="item")
        return QueryBatch(np.array([user]), [seq], self.n_items, texts=[query.text])

    def run(self, query: Query) -> list[Recommendation]:
        """Recommendations for one query, with the channels that found each item."""
        if query.n < 1:
            raise ConfigError("n must be >= 1")
        batch = self.query_batch(query)
        with _single_threaded():  # one query's matrices are too small to share out
            cands, _ = self.run_batch(batch)
        assert self.items is not None
        titles = self.item_titles()
        excluded = set(self.items.lookup(query.exclude).tolist()) if query.exclude else set()
        out: list[Recommendation] = []
        last = self.stages[-1].name if self.stages else None
        for j in range(cands.shape[1]):
            i = int(cands.items[0, j])
            if i < 0 or i in excluded:
                continue
            score = float(cands.scores[last][0, j]) if last else float(cands.shape[1] - j)
            out.append(
                Recommendation(
                    item=str(self.items.ids[i]), title=str(titles[i]), score=score,
                    rank=len(out) + 1, sources=cands.row_sources(0, j),
                )
            )  # fmt: skip
            if len(out) >= query.n:
                break
        return out

    def item_titles(self) -> np.ndarray:
        """Display title per item (the id where there is none); cached until items change."""
        assert self.items is not None
        cached = getattr(self, "_titles", None)
        if cached is not None and len(cached) == self.n_items:
            return cached
        if self.item_table is not None and "title" in self.item_table.columns:
            t = self.item_table["title"].astype(object).to_numpy(copy=True)
            miss = pd.isna(t)
            t[miss] = self.items.ids[miss]
        else:
            t = np.array(self.items.ids, dtype=object)
        self._titles: np.ndarray | None = t
        return t

    def scorer(self, histories: list[np.ndarray], *, batch_size: int = 512):
        """A callable for `evaluate`: full-catalogue scores, -inf outside the final list."""

        def score(users: np.ndarray, history: Any = None) -> np.ndarray:
            out = []
            for lo in range(0, len(users), batch_size):
                u = users[lo : lo + batch_size]
                batch = QueryBatch(u, [histories[i] for i in u], self.n_items)
                cands, _ = self.run_batch(batch)
                out.append(cands.to_score_matrix(self.n_items))
            return np.concatenate(out)

        return score

    def derive(self, spec: dict[str, Any]) -> Pipeline:
        """A pipeline with another spec that reuses this one's fitted channels (by name),
        resources and histories; learned stages still need `train_stages`. For ablations."""
        other = Pipeline(spec)
        fitted = {c.name: c for c in self.channels}
        missing = [c.name for c in other.channels if c.name not in fitted]
        if missing:
            raise ConfigError(f"derive: channels {missing} are not fitted in this pipeline")
        other.channels = [fitted[c.name] for c in other.channels]
        other.resources, other.stats = self.resources, self.stats
        other.items, other.users, other.item_table = self.items, self.users, self.item_table
        other.sequences, other.data_fingerprint = self.sequences, self.data_fingerprint
        return other

    # ---- live updates ---------------------------------------------------------------
    def record_interaction(self, user: str, item: str) -> int:
        """Append an interaction to the serving history (new users are created); the next
        request for that user reflects it. Returns the user's history length."""
        assert self.items is not None and self.users is not None
        i = self.items.index_of(item, what="item")
        if user not in self.users:
            self.users = self.users.extend([user])
            self.sequences.append(np.zeros(0, np.int64))
        u = self.users.index_of(user)
        self.sequences[u] = np.append(self.sequences[u], np.int64(i))
        return len(self.sequences[u])

    def add_items(self, table: pd.DataFrame) -> tuple[int, int]:
        """Add or update items (column `item_id` plus text fields). New items get text
        vectors at once, so text and query channels can recommend them immediately.
        Returns (added, updated)."""
        assert self.items is not None and self.item_table is not None and self.stats is not None
        if "item_id" not in table.columns:
            raise ConfigError("new items need an 'item_id' column")
        ids = table["item_id"].astype(str).to_numpy()
        if len(set(ids)) != len(ids):
            raise ConfigError("duplicate item_id in the items to add")
        known = self.items.lookup(ids) >= 0
        rows = table.drop(columns=["item_id"]).reset_index(drop=True)
        for col in rows.columns:
            if col not in self.item_table.columns:
                self.item_table[col] = None
        upd_idx = self.items.lookup(ids[known])
        self._titles = None
        for j, idx in zip(np.flatnonzero(known), upd_idx, strict=True):
            for col in rows.columns:
                self.item_table.at[int(idx), col] = rows.at[int(j), col]  # type: ignore[assignment]
        new_ids = ids[~known]
        if len(new_ids):
            self.items = self.items.extend(new_ids)
            add = rows[~known].reset_index(drop=True)
            if "item_id" in self.item_table.columns:
                add.insert(0, "item_id", new_ids)
            add.index = np.arange(len(self.item_table), len(self.item_table) + len(add))
            self.item_table = pd.concat([self.item_table, add], axis=0)
            self.stats.extend(len(new_ids))
        if self.resources.item_text_vectors is not None and self.resources.text_encoder is not None:
            from recsage.encoders.templates import ItemTextTemplate

            changed = np.concatenate([upd_idx, self.items.lookup(new_ids)]).astype(np.int64)
            texts = ItemTextTemplate().render(self.item_table.loc[changed])
            vecs = self.resources.text_encoder.encode_items(texts)
            old = self.resources.item_text_vectors
            grown = np.zeros((self.n_items, old.shape[1]), np.float32)
            grown[: len(old)] = old
            grown[changed] = vecs
            self.resources.item_text_vectors = grown
        self._sync_stage_catalogue()
        return len(new_ids), int(known.sum())

    # ---- persistence ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """An artifact folder: the spec (`pipeline.toml`), the manifest, histories and text
        vectors (`state.safetensors`), the item table and every fitted part."""
        import tomli_w
        from safetensors.numpy import save_file

        if self.stats is None or self.items is None or self.users is None:
            raise RecsageError("cannot save an unfitted pipeline")
        item_table = self.item_table
        assert item_table is not None
        lengths = np.array([len(s) for s in self.sequences], np.int64)
        arrays = {
            "seq.lengths": lengths,
            "seq.items": np.concatenate(self.sequences).astype(np.int64)
            if len(self.sequences) else np.zeros(0, np.int64),
        }  # fmt: skip
        if self.resources.item_text_vectors is not None:
            arrays["item_text_vectors"] = self.resources.item_text_vectors
        arrays |= self.stats.arrays()

        def write(folder: Path) -> None:
            (folder / SPEC_FILE).write_text(tomli_w.dumps(self.spec))
            item_table.to_parquet(folder / ITEMS_FILE)
            for ch in self.channels:
                d = folder / "channels" / ch.name
                d.mkdir(parents=True, exist_ok=True)
                state = ch.state()
                if state:
                    save_file(
                        {k: np.ascontiguousarray(v) for k, v in state.items()},
                        str(d / STATE),
                    )
                if isinstance(ch, ModelChannel):
                    ch.model.save(d / "model")
            for st in self.stages:
                st.save(folder / "stages" / st.name)

        return write_artifact(
            path,
            PIPELINE,
            name=str(self.spec.get("pipeline", {}).get("name", "")),
            data_fingerprint=self.data_fingerprint,
            arrays=arrays,
            extra={
                "encoder_fingerprint": getattr(self.resources.text_encoder, "fingerprint", None),
                "users": self.users.ids.tolist(),
                "items": self.items.ids.tolist(),
                "fit_seconds": self.fit_seconds,
                "channel_items": {ch.name: ch.n_items_fitted for ch in self.channels},
            },
            write=write,
        )

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load a saved pipeline; needs nothing but the directory (and the text model)."""
        from safetensors.numpy import load_file

        from recsage.models.base import Recommender

        art = read_artifact(path, PIPELINE)
        path = art.path
        p = cls(tomllib.loads((path / SPEC_FILE).read_text()))
        p.items = Vocabulary(art.get("items"))
        p.users = Vocabulary(art.get("users"))
        p.data_fingerprint = art.data_fingerprint
        p.fit_seconds = art.get("fit_seconds", {})
        res = art.arrays()
        bounds = np.concatenate([[0], np.cumsum(res["seq.lengths"])])
        p.sequences = [res["seq.items"][bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        p.item_table = pd.read_parquet(art.file(ITEMS_FILE))
        if "categories" in p.item_table.columns:
            p.item_table["categories"] = [
                list(c) if c is not None else [] for c in p.item_table["categories"]
            ]
        if "item_text_vectors" in res:
            p.resources.item_text_vectors = res["item_text_vectors"]
            from recsage.encoders.text import TextEncoder

            text = p.spec["text"]
            cache = Path(text["cache_dir"]) if text.get("cache_dir") else _default_cache_dir()
            p.resources.text_encoder = TextEncoder(text.get("model") or None, cache_dir=cache)
        p.stats = ItemStats.from_arrays(res)
        channel_items = art.get("channel_items") or {}
        for ch in p.channels:
            ch.n_items_fitted = int(channel_items.get(ch.name, p.n_items))
            d = path / "channels" / ch.name
            state = load_file(str(d / STATE)) if (d / STATE).exists() else {}
            if isinstance(ch, ModelChannel):
                ch.model = Recommender.load(d / "model")
                ch._build_index()
            else:
                ch.load_state(state, p.resources)
        for st in p.stages:
            if (path / "stages" / st.name).exists():
                st.load(path / "stages" / st.name)
        p._sync_stage_catalogue()
        return p


DEFAULT_SPEC: dict[str, Any] = {
    "pipeline": {"name": "default"},
    "text": {"enabled": True},
    "merge": {"max_candidates": 300},
    "channels": [],
    "stages": [],
}


def _normalise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    known = set(DEFAULT_SPEC)
    bad = sorted(set(spec) - known)
    if bad:
        raise ConfigError(
            f"pipeline spec: unknown section(s) {', '.join(bad)}; known: {sorted(known)}"
        )
    out = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in DEFAULT_SPEC.items()}
    for k, v in spec.items():
        base = out[k]
        out[k] = {**base, **v} if isinstance(base, dict) else list(v)
    if not out["channels"]:
        raise ConfigError("pipeline spec: at least one [[channels]] entry is required")
    return out
