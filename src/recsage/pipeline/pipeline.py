"""`Pipeline`: channels → merge → stages, built from a TOML spec; one object for the CLI,
the service, batch jobs and offline evaluation.

Training protocol: channels are fitted on every interaction except each user's last two;
learned stages are trained on the second-last interactions (held out from the channels),
with negatives drawn from the candidate lists themselves. Serving uses full histories.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsage.artifacts import MANIFEST
from recsage.component import SupportsCatalogue
from recsage.data.schema import Dataset, display_titles
from recsage.data.splits import Split, leave_one_out
from recsage.data.vocab import Vocabulary
from recsage.encoders.cache import default_cache_dir
from recsage.errors import ArtifactError, ConfigError, RecsageError
from recsage.models.base import Recommender
from recsage.pipeline.spec import SPEC_FILE, normalise_spec, read_spec
from recsage.ranking.features import ItemStats, candidate_features
from recsage.ranking.filters import blocked_items, drop_blocked
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
from recsage.types import (
    CandidateBatch,
    ItemFilter,
    Query,
    QueryBatch,
    Recommendation,
)

FALLBACK_SOURCE = "fallback:popular"
FALLBACK_REASON = "popular with everyone (shown while we learn your taste)"
HISTORY_LEN = 20


@dataclass
class PreparedItems:
    """An item update computed off to the side (`Pipeline.prepare_items`), ready to swap in."""

    base_items: Vocabulary  # the vocabulary it was computed against
    items: Vocabulary
    item_table: pd.DataFrame
    stats: ItemStats
    text_vectors: np.ndarray | None
    titles: np.ndarray
    catalogue: list[str] | None
    added: int
    updated: int


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


class Pipeline:
    """A configured recommender: retrieval channels, a merger and ranking stages."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = normalise_spec(spec)
        self.channels: list[Channel] = [create_channel(c) for c in self.spec["channels"]]
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ConfigError(f"channel names must be unique, got {names}")
        self.stages: list[Stage] = [create_stage(s) for s in self.spec["stages"]]
        for k, st in enumerate(self.stages):
            if st.feature_column and not any(
                isinstance(later, LearnedStage) for later in self.stages[k + 1 :]
            ):
                raise ConfigError(
                    f"stage '{st.name}' writes a feature (mode = \"feature\"), but no learned "
                    "stage comes after it to read it"
                )
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
        """A pipeline (unfitted) from a TOML spec file."""
        return cls(read_spec(path))

    @classmethod
    def from_model(
        cls,
        model: Recommender,
        *,
        dataset: Dataset | None = None,
        text: bool = False,
        n: int = 200,
    ) -> Pipeline:
        """A one-channel pipeline around a fitted model, so a single trained model serves,
        recommends, explains and evaluates through the same path as any pipeline.

        With the `dataset` the model was fitted on, the pipeline keeps its item table
        (categories, years for filters, chat and explanations) and, with `text=True`, item
        text vectors (search, chat, similar items).
        """
        spec = {
            "text": {"enabled": text},
            "merge": {"max_candidates": n},
            "channels": [{"name": model.name, "kind": "model", "model": model.name, "n": n}],
            "stages": [],
        }
        pipe = cls(spec)
        channel = pipe.model_channels[0]
        channel.model, channel.index = model, None
        channel.n_items_fitted = model.n_items
        assert model.items is not None and model.users is not None
        assert model.train_matrix is not None
        pipe.items, pipe.users = model.items, model.users
        if dataset is not None:
            if dataset.fingerprint() != model.data_fingerprint:
                raise ConfigError("from_model: the dataset is not the one the model was fitted on")
            pipe.item_table = dataset.item_table
            if text:
                pipe._prepare_resources(dataset, lambda *_: None)
        else:
            titles = model.item_titles or [str(i) for i in model.items.ids]
            pipe.item_table = pd.DataFrame({"title": titles})
        m = model.train_matrix.tocsr()
        pipe.sequences = [a.astype(np.int64) for a in np.split(m.indices, m.indptr[1:-1])]
        pipe.stats = ItemStats.from_popularity(np.bincount(m.indices, minlength=model.n_items))
        pipe.data_fingerprint = model.data_fingerprint
        return pipe

    @classmethod
    def open(cls, path: str | Path) -> Pipeline:
        """Load a saved pipeline directory, or wrap a saved model directory in a pipeline."""
        path = Path(path)
        if (path / SPEC_FILE).exists():
            return cls.load(path)
        if (path / MANIFEST).exists():
            return cls.from_model(Recommender.load(path))
        raise ArtifactError(
            f"{path}: neither a saved pipeline ({SPEC_FILE}) nor a saved model ({MANIFEST}); "
            "create one with `recsage train --pipeline SPEC` or `recsage train --model NAME`"
        )

    @property
    def n_items(self) -> int:
        return len(self.items) if self.items is not None else 0

    @property
    def event_weights(self) -> dict[str, float] | None:
        """Training weight per event type of the data it was fitted on (None: all equal)."""
        weights = self.spec["pipeline"].get("event_weights")
        return {str(k): float(v) for k, v in weights.items()} if weights else None

    @property
    def model_channels(self) -> list[ModelChannel]:
        return [c for c in self.channels if isinstance(c, ModelChannel)]

    def sync_stage_catalogue(self) -> None:
        """Give stages that read item text (LLM re-rank) the current catalogue."""
        setters = [s for s in self.stages if isinstance(s, SupportsCatalogue)]
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
        if dataset.event_weights:  # saved with the spec: the feedback loop weighs alike
            self.spec["pipeline"]["event_weights"] = dict(dataset.event_weights)
        loo = leave_one_out(dataset)
        self._prepare_resources(dataset, say)
        self.resources.valid = loo.valid
        try:
            self.fit_on(loo.valid.train, say=say)
        finally:
            self.resources.valid = None
        if self.stages:
            self.train_stages(loo.valid, say=say)
        self.sync_stage_catalogue()
        return self

    def _prepare_resources(self, dataset: Dataset, say: Any) -> None:
        text = self.spec["text"]
        if not text.get("enabled", True):
            return
        from recsage.encoders.text import TextEncoder, encode_dataset_items

        t0 = time.perf_counter()
        cache = Path(text["cache_dir"]) if text.get("cache_dir") else default_cache_dir()
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
            say(f"fitting channel {ch.name} ({ch.kind})…")
            ch.fit(train, self.resources)
            ch.n_items_fitted = train.n_items
            secs = time.perf_counter() - t0
            self.fit_seconds[f"channel:{ch.name}"] = secs
            say(f"fitted channel {ch.name} ({ch.kind}) in {secs:.1f}s")

    def train_stages(self, valid: Split, *, say: Any = None, batch_size: int = 512) -> None:
        """Train the stages on `valid`'s targets using candidates from `valid.train`, in
        order: a stage that trains itself (e.g. a cross-encoder) takes some users, and the
        learned stages after it train on the others, so no learned stage sees an earlier
        stage's scores on that stage's own training users."""
        say = say or (lambda *_: None)
        seqs: list[np.ndarray] = []
        taken = np.zeros(0, np.int64)
        for idx, stage in enumerate(self.stages):
            if not isinstance(stage, LearnedStage):
                taken = np.union1d(taken, stage.train(self, valid, exclude=taken, say=say))
                continue
            seqs = seqs or valid.train.sequences()  # only when a learned stage trains
            users = np.setdiff1d(valid.users, taken) if len(taken) else valid.users
            t0 = time.perf_counter()
            say(f"training stage {stage.name} ({stage.config.learner}) on {len(users):,} users…")
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
            say(f"training stage {stage.name} ({stage.config.learner}) on {n_groups:,} lists…")
            stage.ranker.fit(train_d, val_d)
            self.fit_seconds[f"stage:{stage.name}"] = time.perf_counter() - t0
            say(
                f"trained stage {stage.name} ({stage.config.learner}, {stage.config.objective}) "
                f"on {n_groups:,} lists in {self.fit_seconds[f'stage:{stage.name}']:.1f}s"
            )

    # ---- running --------------------------------------------------------------------
    def _retrieve(
        self, batch: QueryBatch, trace: Trace | None, min_keep: int = 0
    ) -> CandidateBatch:
        from recsage.retrieval.channels.base import exclude_top

        outputs = []
        full_scores: dict[str, np.ndarray] = {}
        for ch in self.channels:
            t0 = time.perf_counter()
            view = batch
            n_ch = self.n_items if ch.grows else ch.n_items_fitted
            if n_ch < self.n_items:  # items added after training: this channel cannot see them
                seqs = [s[s < n_ch] for s in batch.sequences]
                blocked = None if batch.blocked is None else batch.blocked[:n_ch]
                view = QueryBatch(batch.users, seqs, n_ch, texts=batch.texts, blocked=blocked)
            n_want = max(ch.n, min_keep)
            if isinstance(ch, ModelChannel) and ch.index is None:
                s = ch.scores(view)
                items, scores = exclude_top(s, view, n_want)
                if n_ch < self.n_items:
                    s = np.pad(s, ((0, 0), (0, self.n_items - n_ch)), constant_values=-np.inf)
                full_scores[ch.name] = s
            else:
                items, scores = ch.retrieve(view, n_want)
            outputs.append((ch.name, items, scores))
            if trace is not None:
                trace.seconds[f"channel:{ch.name}"] = time.perf_counter() - t0
                trace.channels[ch.name] = items
        t0 = time.perf_counter()
        merge = self.spec["merge"]
        cands = merge_channels(
            outputs,
            max_candidates=max(int(merge["max_candidates"]), min_keep),
            quotas=merge.get("quotas", {}),
        )
        drop_blocked(cands, batch.blocked)
        rows = np.repeat(np.arange(cands.shape[0]), cands.shape[1]).reshape(cands.shape)
        for name, s in full_scores.items():
            col = s[rows, np.maximum(cands.items, 0)]
            cands.scores[f"{name}_full"] = np.where(cands.valid, col, np.nan).astype(np.float32)
        if trace is not None:
            trace.seconds["merge"] = time.perf_counter() - t0
            trace.stages["merge"] = cands.items.copy()
        return cands

    def _context(self, cands: CandidateBatch, batch: QueryBatch, min_keep: int = 0) -> StageContext:
        assert self.stats is not None
        ctx = StageContext(
            item_vectors=self.resources.item_text_vectors,
            item_category=self.stats.first_category,
            histories=last_items(batch.sequences, HISTORY_LEN),
            min_keep=min_keep,
        )
        if any(s.needs_features for s in self.stages):
            extra = tuple(f"{c.name}_full" for c in self.model_channels if c.index is None)
            written = tuple(
                col for s in self.stages if (col := s.feature_column) and col in cands.scores
            )
            ctx.features, ctx.feature_names = candidate_features(
                cands, batch, self.stats,
                channel_names=cands.channel_names,
                text_vectors=self.resources.item_text_vectors,
                extra_scores=extra,
                stage_scores=written,
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
        self,
        stage: Stage,
        cands: CandidateBatch,
        batch: QueryBatch,
        trace: Trace | None,
        min_keep: int = 0,
    ) -> CandidateBatch:
        t0 = time.perf_counter()
        ctx = self._context(cands, batch, min_keep) if stage.needs_features else StageContext(
            item_vectors=self.resources.item_text_vectors,
            item_category=self.stats.first_category if self.stats else None,
            histories=last_items(batch.sequences, HISTORY_LEN),  # e.g. the LLM prompt's
            min_keep=min_keep,
        )  # fmt: skip
        out = stage.apply(cands, ctx)
        if trace is not None:
            trace.seconds[f"stage:{stage.name}"] = time.perf_counter() - t0
            trace.stages[stage.name] = out.items.copy()
        return out

    def run_batch(
        self, batch: QueryBatch, *, trace: bool = False, min_keep: int = 0
    ) -> tuple[CandidateBatch, Trace | None]:
        """Run every stage on a batch of queries; no stage keeps fewer than `min_keep`."""
        if self.stats is None:
            raise RecsageError("pipeline is not fitted; call fit() or Pipeline.load()")
        tr = Trace() if trace else None
        cands = self._retrieve(batch, tr, min_keep)
        for stage in self.stages:
            cands = self._apply(stage, cands, batch, tr, min_keep)
        return cands, tr

    def query_batch(self, query: Query) -> QueryBatch:
        """Resolve external ids of a query into a one-row batch. An unknown user without a
        history is a new visitor: an empty history (the fallback list serves them)."""
        assert self.items is not None and self.users is not None
        user = -1
        seq = np.zeros(0, np.int64)
        if query.user is not None and query.user in self.users:
            user = self.users.index_of(query.user)
            seq = self.sequences[user]
        if query.history is not None:
            seq = self.items.encode(query.history, what="item")
        flt = query.filters or ItemFilter()
        if query.exclude:
            flt = ItemFilter(
                flt.categories, flt.min_year, flt.max_year, [*flt.exclude, *query.exclude]
            )
        blocked = blocked_items(flt, self.items, self.item_table)
        return QueryBatch(
            np.array([user]), [seq], self.n_items, texts=[query.text], blocked=blocked
        )

    def run(self, query: Query) -> list[Recommendation]:
        """Recommendations for one query, with the channels that found each item.

        Always `n` items when the (filtered) catalogue has them. A new visitor (no history,
        no text) gets the most popular eligible items, model-free; a list the channels leave
        short (a history of items the models never saw, a narrow filter) is filled the same
        way. Those items are labelled `fallback:popular`.
        """
        if query.n < 1:
            raise ConfigError("n must be >= 1")
        return self._run_one(query, self.query_batch(query))

    def _run_one(self, query: Query, batch: QueryBatch) -> list[Recommendation]:
        """`run` for a query already resolved into its one-row `batch`."""
        if not len(batch.sequences[0]) and not query.text:  # a new visitor: no signal at all
            return self._fallback(batch, np.zeros(0, np.int64), query.n)
        with _single_threaded():  # one query's matrices are too small to share out
            cands, _ = self.run_batch(batch, min_keep=query.n)
        return self._row_list(cands, self.list_scores(cands), 0, batch, query.n)

    def run_many(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        """`run` for several queries at once, same lists: queries without filters and with
        the same `n` go through every stage as one batch (one pass over each model instead
        of one per query — what a server does with concurrent requests); the others run
        one by one."""
        out: list[list[Recommendation] | None] = [None] * len(queries)
        groups: dict[int, list[tuple[int, QueryBatch]]] = {}
        for k, q in enumerate(queries):
            if q.n < 1:
                raise ConfigError("n must be >= 1")
            row = self.query_batch(q)
            if row.blocked is not None or not (len(row.sequences[0]) or q.text):
                out[k] = self._run_one(q, row)  # filtered, or a new visitor (no model)
            else:
                groups.setdefault(q.n, []).append((k, row))
        for n, rows in groups.items():
            if len(rows) == 1:  # nothing to share: the single-query path
                k, row = rows[0]
                out[k] = self._run_one(queries[k], row)
                continue
            batch = QueryBatch(
                np.concatenate([r.users for _, r in rows]),
                [r.sequences[0] for _, r in rows],
                self.n_items,
                texts=[r.texts[0] for _, r in rows],
            )
            with _single_threaded():
                cands, _ = self.run_batch(batch, min_keep=n)
            final = self.list_scores(cands)
            for b, (k, row) in enumerate(rows):
                out[k] = self._row_list(cands, final, b, row, n)
        return [r if r is not None else [] for r in out]

    def _row_list(
        self, cands: CandidateBatch, final: np.ndarray, b: int, row: QueryBatch, n: int
    ) -> list[Recommendation]:
        """Row b's top n as recommendations (with their channels), filled from the
        popularity fallback when the channels left it short; `row` is its one-row batch."""
        assert self.items is not None
        titles = self.item_titles()
        out: list[Recommendation] = []
        for j in range(cands.shape[1]):
            i = int(cands.items[b, j])
            if i < 0:
                continue
            out.append(
                Recommendation(
                    item=str(self.items.ids[i]), title=str(titles[i]), score=float(final[b, j]),
                    rank=len(out) + 1, sources=cands.row_sources(b, j),
                )
            )  # fmt: skip
            if len(out) >= n:
                break
        if len(out) < n:
            taken = self.items.lookup([r.item for r in out])
            out += self._fallback(row, taken, n - len(out), start=len(out))
        return out

    def list_scores(self, cands: CandidateBatch) -> np.ndarray:
        """(B, N) scores the final list is ordered by: the last stage's column, or the one
        channel's own scores for a stageless (single-model) pipeline."""
        column = self.stages[-1].name if self.stages else self.channels[0].name
        if column not in cands.scores:  # nothing was retrieved (e.g. no channel had a signal)
            return np.full(cands.shape, np.nan, np.float32)
        return cands.scores[column]

    def _fallback(
        self, batch: QueryBatch, taken: np.ndarray, k: int, *, start: int = 0
    ) -> list[Recommendation]:
        """The k most popular items (training counts) this row may still receive."""
        assert self.stats is not None and self.items is not None
        pop = self.stats.log_popularity
        eligible = np.ones(self.n_items, bool)
        eligible[batch.sequences[0]] = False
        eligible[taken] = False
        if batch.blocked is not None:
            eligible &= ~batch.blocked
        cand = np.flatnonzero(eligible)
        if len(cand) > k:  # the k best and everything tied with the k-th, then exact order
            kth = np.partition(-pop[cand], k - 1)[k - 1]
            cand = cand[-pop[cand] <= kth]
        top = cand[np.lexsort((cand, -pop[cand]))][:k]  # ties: catalogue position
        titles = self.item_titles()
        return [
            Recommendation(
                item=str(self.items.ids[i]), title=str(titles[i]), score=float(pop[i]),
                rank=start + r + 1, sources=[FALLBACK_SOURCE],
            )
            for r, i in enumerate(top.tolist())
        ]  # fmt: skip

    def reasons(self, sources: list[str]) -> list[str]:
        """One sentence per source saying why it put an item in the list (the service and
        the CLI show the same texts)."""
        kinds = {c.name: c for c in self.channels}
        out = []
        for s in sources:
            ch = kinds.get(s)
            if s == FALLBACK_SOURCE:
                out.append(FALLBACK_REASON)
            elif ch is not None:
                out.append(ch.reason.format(name=s))
            else:
                out.append(f"found by {s}")
        return out

    def history_of(self, user: str | None) -> np.ndarray:
        """The serving history (item indices, oldest first) of a user; empty if unknown."""
        assert self.users is not None
        if user is None or user not in self.users:
            return np.zeros(0, np.int64)
        return self.sequences[self.users.index_of(user)]

    def similar(self, item: str, n: int = 10) -> tuple[list[Recommendation], str]:
        """Items similar to `item` (text vectors, else the model); returns (items, method)."""
        from recsage.pipeline.requests import similar_items

        return similar_items(self, item, n)

    def search(
        self,
        text: str,
        *,
        user: str | None = None,
        n: int = 10,
        personal_weight: float = 0.3,
        exclude_history: bool = False,
    ) -> list[Recommendation]:
        """Natural-language search over item text, blended with a known user's taste."""
        from recsage.pipeline.requests import search_items

        return search_items(
            self, text, user=user, n=n, personal_weight=personal_weight,
            exclude_history=exclude_history,
        )  # fmt: skip

    def as_recommendations(
        self, items: np.ndarray, scores: np.ndarray, sources: list[str]
    ) -> list[Recommendation]:
        """A ranked list from item indices and their scores (aligned), all from `sources`."""
        assert self.items is not None
        titles = self.item_titles()
        return [
            Recommendation(
                item=str(self.items.ids[i]), title=str(titles[i]), score=float(sc),
                rank=r, sources=list(sources),
            )
            for r, (i, sc) in enumerate(zip(items.tolist(), scores.tolist(), strict=True), 1)
        ]  # fmt: skip

    def item_titles(self) -> np.ndarray:
        """Display title per item (with its year; the id where there is none), cached until
        items change."""
        assert self.items is not None
        cached = getattr(self, "_titles", None)
        if cached is not None and len(cached) == self.n_items:
            return cached
        if self.item_table is not None:
            t = display_titles(self.item_table, self.items.ids)
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
        self.items.index_of(item, what="item")  # a clear error for an unknown item
        self.record_interactions([user], [item])
        return len(self.sequences[self.users.index_of(user)])

    def record_interactions(self, users: Sequence[str], items: Sequence[str]) -> int:
        """The one live-update API: many (user, item) events at once, in order (vectorised
        id lookups, one vocabulary extension). Unknown items are skipped; returns how many."""
        assert self.items is not None and self.users is not None
        item_idx = self.items.lookup(np.array(items, dtype=object))
        ok = item_idx >= 0
        user_ids = np.array(users, dtype=object)[ok]
        item_idx = item_idx[ok]
        if len(user_ids):
            user_idx = self.users.lookup(user_ids)
            if (user_idx < 0).any():
                new = pd.unique(pd.Series(user_ids[user_idx < 0]))
                self.users = self.users.extend(new)
                self.sequences.extend(np.zeros(0, np.int64) for _ in range(len(new)))
                user_idx = self.users.lookup(user_ids)
            order = np.argsort(user_idx, kind="stable")
            bounds = np.flatnonzero(np.diff(user_idx[order])) + 1
            for chunk in np.split(order, bounds):
                u = int(user_idx[chunk[0]])
                self.sequences[u] = np.concatenate([self.sequences[u], item_idx[chunk]])
        return int((~ok).sum())

    def add_items(self, table: pd.DataFrame) -> tuple[int, int]:
        """Add or update items (column `item_id` plus text fields). New items get text
        vectors at once, so text and query channels can recommend them immediately.
        Returns (added, updated)."""
        return self.commit_items(self.prepare_items(table))

    def prepare_items(
        self, table: pd.DataFrame, *, progress: Any = None, chunk: int = 1000
    ) -> PreparedItems:
        """Everything `add_items` computes (the grown item table, vocabulary, statistics,
        text vectors, titles), built on copies so that the pipeline keeps serving unchanged;
        `commit_items` swaps the result in. The caller keeps other item updates out between
        the two (the service holds its item lock). `progress(done, total)` follows encoding."""
        assert self.items is not None and self.item_table is not None and self.stats is not None
        if "item_id" not in table.columns:
            raise ConfigError("new items need an 'item_id' column")
        ids = table["item_id"].astype(str).to_numpy()
        if len(set(ids)) != len(ids):
            raise ConfigError("duplicate item_id in the items to add")
        base_items = self.items
        known = base_items.lookup(ids) >= 0
        rows = table.drop(columns=["item_id"]).reset_index(drop=True)
        item_table = self.item_table.copy()
        for col in rows.columns:
            if col not in item_table.columns:
                item_table[col] = None
        upd_idx = base_items.lookup(ids[known])
        for j, idx in zip(np.flatnonzero(known), upd_idx, strict=True):
            for col in rows.columns:
                item_table.at[int(idx), col] = rows.at[int(j), col]  # type: ignore[assignment]
        new_ids = ids[~known]
        items, stats = base_items, self.stats
        if len(new_ids):
            items = base_items.extend(new_ids)
            add = rows[~known].reset_index(drop=True)
            if "item_id" in item_table.columns:
                add.insert(0, "item_id", new_ids)
            add.index = np.arange(len(item_table), len(item_table) + len(add))
            item_table = pd.concat([item_table, add], axis=0)
            stats = copy.copy(self.stats)  # extend() rebinds arrays: the served stats stay
            stats.extend(len(new_ids))
        vectors = self.resources.item_text_vectors
        encoder = self.resources.text_encoder
        if vectors is not None and encoder is not None:
            from recsage.encoders.templates import ItemTextTemplate

            changed = np.concatenate([upd_idx, items.lookup(new_ids)]).astype(np.int64)
            texts = ItemTextTemplate().render(item_table.loc[changed])
            parts = []
            for lo in range(0, len(texts), chunk):
                parts.append(encoder.encode_items(texts[lo : lo + chunk]))
                if progress is not None:
                    progress(min(lo + chunk, len(texts)), len(texts))
            grown = np.zeros((len(items), vectors.shape[1]), np.float32)
            grown[: len(vectors)] = vectors
            if parts:
                grown[changed] = np.concatenate(parts)
            vectors = grown
        setters = [s for s in self.stages if isinstance(s, SupportsCatalogue)]
        catalogue: list[str] | None = None
        if setters:
            from recsage.llm.rerank import catalogue_texts

            catalogue = catalogue_texts(item_table)
        return PreparedItems(
            base_items=base_items,
            items=items,
            item_table=item_table,
            stats=stats,
            text_vectors=vectors,
            titles=display_titles(item_table, items.ids),
            catalogue=catalogue,
            added=len(new_ids),
            updated=int(known.sum()),
        )

    def commit_items(self, prepared: PreparedItems) -> tuple[int, int]:
        """Swap in what `prepare_items` built (reference assignments only, so a write lock
        around it is short). Refuses if the catalogue changed since. Returns (added, updated)."""
        if self.items is not prepared.base_items:
            raise RecsageError("the catalogue changed since these items were prepared")
        self.items, self.item_table, self.stats = (
            prepared.items,
            prepared.item_table,
            prepared.stats,
        )
        self.resources.item_text_vectors = prepared.text_vectors
        self._titles = prepared.titles
        if prepared.catalogue is not None:
            for st in self.stages:
                if isinstance(st, SupportsCatalogue):
                    st.set_catalogue(prepared.catalogue)
        return prepared.added, prepared.updated

    # ---- persistence ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """An artifact folder: the spec (`pipeline.toml`), the manifest, histories and text
        vectors (`state.safetensors`), the item table and every fitted part."""
        from recsage.pipeline.persist import save_pipeline

        return save_pipeline(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load a saved pipeline; needs nothing but the directory (and the text model)."""
        from recsage.pipeline.persist import load_pipeline

        return load_pipeline(cls, path)
