"""`RecommenderTests`: the contract every `Recommender` (model) keeps.

Subclass it as ``Test…`` and implement `make_model()` returning a new, unfitted model
(tiny settings: a few epochs on `tiny_dataset`). The suite checks: score shape
(users, n_items) float32; scores for a given history that do not depend on the user
index; `recommend` excluding seen items (the training ones, or the given history) with
ranked, duplicate-free lists; identical scores after save/load; a deterministic fit;
clear errors when unfitted, on empty data and on out-of-range users; and (optionally)
recommendations that follow the planted topics.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.errors import ArtifactError, RecsageError
from recsage.models.base import Recommender
from recsage.testing.checks import assert_no_history_items, assert_ranked_lists
from recsage.testing.data import tiny_dataset, user_topics
from recsage.types import history_matrix


class RecommenderTests:
    """Conformance suite for `Recommender` implementations (pytest collects subclasses)."""

    seed: ClassVar[int] = 0
    users: ClassVar[tuple[int, ...]] = (0, 1, 2, 3, 7, 11)
    #: share of top-5 recommendations in the user's planted topic (None: not checked)
    min_topic_share: ClassVar[float | None] = None
    #: False for models that need ordered histories and refuse a CSR one (with a
    #: RecsageError saying so) instead of scoring it
    scores_csr_history: ClassVar[bool] = True

    def make_model(self) -> Recommender:
        """A new, unfitted model."""
        raise NotImplementedError(
            f"{type(self).__name__} must define make_model() (conformance suite hook)"
        )

    def fit(self, model: Recommender, data: Dataset) -> Recommender:
        """How the suite trains the model (override to pass extra inputs)."""
        return model.fit(data)

    # ---- fixtures -------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Dataset:
        return tiny_dataset(cls.seed)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Dataset) -> Recommender:
        suite = cls()
        return suite.fit(suite.make_model(), data)

    def _users(self) -> np.ndarray:
        return np.array(self.users, np.int64)

    def _histories(self, data: Dataset) -> sp.csr_matrix:
        seqs = data.sequences()
        return history_matrix([seqs[u][:3] for u in self.users], data.n_items)

    def _needs_csr_history(self, fitted: Recommender, data: Dataset) -> None:
        """Skip a history test for models that refuse CSR histories, after checking that
        they refuse them with a clear error."""
        if self.scores_csr_history:
            return
        with pytest.raises(RecsageError, match="history"):
            fitted.score(self._users(), history=self._histories(data))
        pytest.skip(f"{fitted.name} scores ordered histories only (refused clearly)")

    # ---- the contract ---------------------------------------------------------------
    def test_fit_returns_the_model(self, fitted: Recommender, data: Dataset) -> None:
        assert isinstance(fitted, Recommender)
        assert (fitted.n_users, fitted.n_items) == (data.n_users, data.n_items)

    def test_score_shape_and_type(self, fitted: Recommender, data: Dataset) -> None:
        s = fitted.score(self._users())
        assert s.shape == (len(self.users), data.n_items) and s.dtype == np.float32
        assert np.isfinite(s).all(), "known users' scores must be finite"
        assert len(np.unique(s[0])) > 1, "a model that scores every item alike ranks nothing"

    def test_given_history_scores_do_not_depend_on_the_user_index(
        self, fitted: Recommender, data: Dataset
    ) -> None:
        self._needs_csr_history(fitted, data)
        h = self._histories(data)
        known = fitted.score(self._users(), history=h)
        cold = fitted.score(np.full(len(self.users), -1, np.int64), history=h)
        assert known.shape == (len(self.users), data.n_items) and known.dtype == np.float32
        np.testing.assert_allclose(known, cold, rtol=1e-5, atol=1e-6)

    def test_recommend_excludes_seen_items(self, fitted: Recommender, data: Dataset) -> None:
        items, scores = fitted.recommend(self._users(), n=10)
        assert_ranked_lists(items, scores.astype(np.float32), n=10, what=fitted.name)
        seqs = data.sequences()
        assert_no_history_items(items, [seqs[u] for u in self.users])
        assert (items >= 0).all(), "the tiny catalogue has 10 unseen items for every user"
        # the scores shown are the model's scores of those items
        full = fitted.score(self._users())
        np.testing.assert_allclose(scores, np.take_along_axis(full, items, axis=1), rtol=1e-6)

    def test_recommend_excludes_a_given_history(self, fitted: Recommender, data: Dataset) -> None:
        self._needs_csr_history(fitted, data)
        h = self._histories(data)
        items, scores = fitted.recommend(self._users(), n=10, history=h)
        assert_ranked_lists(items, scores.astype(np.float32), n=10, what=fitted.name)
        assert_no_history_items(items, [h.indices[h.indptr[r] : h.indptr[r + 1]] for r in
                                        range(h.shape[0])])  # fmt: skip
        # seen-in-training items are eligible again when the caller gives the history
        seqs = data.sequences()
        known = [set(seqs[u][3:].tolist()) for u in self.users]
        assert any(set(row.tolist()) & k for row, k in zip(items, known, strict=True))

    def test_recommend_without_exclusion_may_return_seen_items(
        self, fitted: Recommender, data: Dataset
    ) -> None:
        n = data.n_items
        items, _ = fitted.recommend(self._users(), n=n, exclude_seen=False)
        assert (np.sort(items, axis=1) == np.arange(n)).all(), "n = catalogue: every item once"

    def test_save_load_gives_identical_scores(
        self, fitted: Recommender, data: Dataset, tmp_path: Path
    ) -> None:
        fitted.save(tmp_path / "m")
        back = Recommender.load(tmp_path / "m")
        assert type(back) is type(fitted)
        np.testing.assert_array_equal(back.score(self._users()), fitted.score(self._users()))
        a, _ = fitted.recommend(self._users(), n=5)
        b, _ = back.recommend(self._users(), n=5)
        np.testing.assert_array_equal(a, b)
        if self.scores_csr_history:
            h = self._histories(data)
            np.testing.assert_allclose(
                back.score(self._users(), history=h),
                fitted.score(self._users(), history=h),
                rtol=1e-6,
                atol=1e-7,
            )

    def test_load_refuses_a_folder_that_is_not_an_artifact(self, tmp_path: Path) -> None:
        with pytest.raises(ArtifactError):
            Recommender.load(tmp_path)

    def test_fit_is_deterministic(self, fitted: Recommender, data: Dataset) -> None:
        again = self.fit(self.make_model(), data)
        np.testing.assert_allclose(
            again.score(self._users()), fitted.score(self._users()), rtol=1e-5, atol=1e-6
        )

    def test_clear_errors(self, fitted: Recommender, data: Dataset) -> None:
        with pytest.raises(RecsageError, match="not fitted"):
            self.make_model().score(self._users())
        with pytest.raises(RecsageError):
            fitted.score(np.array([data.n_users]))
        empty = data.with_interactions(data.interactions.take(np.zeros(0, np.int64)))
        with pytest.raises(RecsageError, match="no interactions"):
            self.fit(self.make_model(), empty)

    def test_recommendations_follow_the_planted_topics(
        self, fitted: Recommender, data: Dataset
    ) -> None:
        if self.min_topic_share is None:
            pytest.skip("no topical expectation for this model")
        from recsage.testing.data import planted_topics

        topic, pref = planted_topics(data), user_topics(data)
        users = np.arange(16)
        if self.scores_csr_history:  # short histories leave most of the topic to find
            h = history_matrix([s[:3] for s in data.sequences()[:16]], data.n_items)
            items, _ = fitted.recommend(users, n=5, history=h)
        else:
            items, _ = fitted.recommend(users, n=5)
        share = float((topic[items] == pref[users][:, None]).mean())
        assert share >= self.min_topic_share, f"only {share:.2f} of top-5 in the user's topic"
