"""SASRec on a tiny synthetic sequential dataset: learns, saves, resumes, reproduces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsage.data.schema import Dataset, Interactions
from recsage.data.splits import leave_one_out
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, RecsageError
from recsage.evaluation import evaluate
from recsage.models import Popularity, Recommender
from recsage.models.registry import model_class
from recsage.models.sasrec.model import SASRec, sequence_scorer
from recsage.models.sasrec.net import softmax_cross_entropy

N_ITEMS = 40
TINY = {
    "dim": 32,
    "layers": 1,
    "heads": 2,
    "max_len": 16,
    "dropout": 0.1,
    "batch_size": 64,
    "lr": 5e-3,
    "threads": 1,
    "progress": False,
}


def cyclic_dataset(n_users: int = 300, *, seed: int = 0, unused: int = 0) -> Dataset:
    """Users walk a hidden item cycle: next item = successor (90%) or the one after it.

    Walks never revisit an item, so leave-one-out's de-duplication keeps every step.
    The last `unused` items never occur (catalogue-only items).
    """
    rng = np.random.default_rng(seed)
    n_used = N_ITEMS - unused
    cycle = rng.permutation(n_used)
    users, items, times = [], [], []
    for u in range(n_users):
        pos = int(rng.integers(n_used))
        for t in range(int(rng.integers(6, 14))):
            users.append(u)
            items.append(int(cycle[pos % n_used]))
            times.append(float(t))
            pos += 1 if rng.random() < 0.9 else 2
    inter = Interactions.build(np.array(users), np.array(items), timestamp=np.array(times))
    table = pd.DataFrame({"title": [f"item {i}" for i in range(N_ITEMS)]})
    return Dataset(
        "cyclic",
        inter,
        Vocabulary([f"u{u}" for u in range(n_users)]),
        Vocabulary([f"i{i}" for i in range(N_ITEMS)]),
        table,
    )


@pytest.fixture(scope="module")
def data() -> Dataset:
    return cyclic_dataset()


@pytest.fixture(scope="module")
def trained(data: Dataset) -> tuple[SASRec, object]:
    loo = leave_one_out(data)
    model = SASRec(**TINY, max_epochs=20, patience=5).fit(loo.valid.train, valid=loo.valid)
    return model, loo


def test_learns_the_sequential_pattern(trained) -> None:
    model, loo = trained
    pop = evaluate(Popularity().fit(loo.valid.train), loo.valid).metrics["ndcg@10"]
    valid = evaluate(model, loo.valid).metrics["ndcg@10"]
    assert model.best_ndcg == pytest.approx(valid, abs=1e-9)  # best weights restored
    assert valid > pop + 0.3, (valid, pop)
    test = evaluate(sequence_scorer(model, loo.test.train), loo.test).metrics["ndcg@10"]
    assert test > pop + 0.3
    assert [r["epoch"] for r in model.history] == list(range(1, len(model.history) + 1))


def test_save_load_identical_scores(trained, tmp_path) -> None:
    model, loo = trained
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, SASRec)
    users = np.arange(loo.valid.train.n_users)
    np.testing.assert_array_equal(back.score(users), model.score(users))
    np.testing.assert_array_equal(back.item_vectors(), model.item_vectors())
    items, _ = back.recommend(users[:3], n=5)
    assert items.shape == (3, 5)
    assert back.best_epoch == model.best_epoch
    assert model_class("sasrec") is SASRec


def test_padding_does_not_change_user_vectors(trained) -> None:
    model, _ = trained
    short, long_ = np.array([3, 7, 11]), np.arange(30) % N_ITEMS
    alone = model.user_vectors([short])
    batched = model.user_vectors([long_, short])
    np.testing.assert_allclose(batched[1], alone[0], rtol=1e-5, atol=1e-5)
    # only the last max_len items count
    np.testing.assert_allclose(
        model.user_vectors([long_])[0], model.user_vectors([long_[-16:]])[0], atol=1e-5
    )


def test_unordered_history_is_refused(trained) -> None:
    model, _ = trained
    history = sp.csr_matrix(np.ones((1, N_ITEMS), np.float32))
    with pytest.raises(RecsageError, match="score_sequences"):
        model.score(np.array([0]), history=history)


def test_seed_reproduces_losses(data) -> None:
    a = SASRec(**TINY, max_epochs=3, seed=3).fit(data)
    b = SASRec(**TINY, max_epochs=3, seed=3).fit(data)
    c = SASRec(**TINY, max_epochs=3, seed=4).fit(data)
    losses = [[r["loss"] for r in m.history] for m in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_checkpoint_resume_continues(data, tmp_path) -> None:
    loo = leave_one_out(data)
    full = SASRec(**TINY, max_epochs=4).fit(loo.valid.train, valid=loo.valid)
    ckpt = tmp_path / "ckpt"
    SASRec(**TINY, max_epochs=2).fit(loo.valid.train, valid=loo.valid, checkpoint_dir=ckpt)
    resumed = SASRec(**TINY, max_epochs=4)
    resumed.fit(loo.valid.train, valid=loo.valid, checkpoint_dir=ckpt)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed.history] == pytest.approx(
        [r["loss"] for r in full.history], rel=1e-6
    )
    np.testing.assert_allclose(resumed.item_vectors(), full.item_vectors(), atol=1e-5)
    with pytest.raises(RecsageError, match="another config"):
        SASRec(**{**TINY, "dim": 16}, max_epochs=4).fit(loo.valid.train, checkpoint_dir=ckpt)


@pytest.mark.parametrize(
    "change",
    [
        {"loss": "sampled", "negatives": 16},
        {"loss": "sampled", "sampler": "popularity"},
        {"loss": "bce"},
        {"emb_init": "svd", "schedule": "cosine", "window": "all", "precision": "fp32"},
    ],
)
def test_other_options_train(data, change) -> None:
    m = SASRec(**{**TINY, **change}, max_epochs=2).fit(data)
    assert all(np.isfinite(r["loss"]) for r in m.history)
    assert m.history[-1]["loss"] < m.history[0]["loss"]


def test_text_only_scores_unseen_items() -> None:
    data = cyclic_dataset(unused=2)  # items 38, 39 never occur in training
    rng = np.random.default_rng(1)
    text = rng.normal(size=(N_ITEMS, 24)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    m = SASRec(**TINY, max_epochs=3, text="text_only").fit(data, item_text_vectors=text)
    scores = m.score_sequences([np.array([1, 5, N_ITEMS - 1])])  # history with an unseen item
    assert scores.shape == (1, N_ITEMS) and np.isfinite(scores).all()
    # a brand-new item (beyond the catalogue) described by item 5's text scores like item 5
    extended = np.vstack([text, text[5:6]])
    ext = m.score_sequences([np.array([1, 2, N_ITEMS])], item_text_vectors=extended)
    assert ext.shape == (1, N_ITEMS + 1)
    assert ext[0, N_ITEMS] == pytest.approx(ext[0, 5], abs=1e-6)
    with pytest.raises(ConfigError, match="text_only"):
        SASRec(**TINY, max_epochs=1).fit(data).score_sequences([[1]], item_text_vectors=text)


def test_init_from_transfers_a_text_only_model_to_a_new_catalogue() -> None:
    rng = np.random.default_rng(3)
    text = rng.normal(size=(N_ITEMS, 24)).astype(np.float32)
    src = SASRec(**TINY, max_epochs=3, text="text_only").fit(
        cyclic_dataset(seed=0), item_text_vectors=text
    )
    # a new domain: other users, items presented in another order (their own text rows)
    target = cyclic_dataset(seed=5)
    perm = rng.permutation(N_ITEMS)
    moved = text[perm]
    # zero epochs: the fine-tuned model starts exactly at the source's weights
    start = SASRec(**TINY, max_epochs=0, text="text_only").fit(
        target, item_text_vectors=moved, init_from=src
    )
    seq = [np.array([3, 7, 11])]
    np.testing.assert_allclose(
        start.score_sequences(seq),
        src.score_sequences([perm[seq[0]]], item_text_vectors=text)[:, perm],
        rtol=1e-5,
        atol=1e-5,
    )
    tuned = SASRec(**TINY, max_epochs=2, text="text_only").fit(
        target, item_text_vectors=moved, init_from=src
    )
    assert not np.allclose(tuned.score_sequences(seq), start.score_sequences(seq))
    with pytest.raises(ConfigError, match="text_only"):
        SASRec(**TINY, max_epochs=1).fit(target, init_from=src)
    with pytest.raises(ConfigError, match="dim"):
        SASRec(**{**TINY, "dim": 16}, max_epochs=1, text="text_only").fit(
            target, item_text_vectors=moved, init_from=src
        )
    with pytest.raises(ConfigError, match="24-d"):
        SASRec(**TINY, max_epochs=1, text="text_only").fit(
            target, item_text_vectors=moved[:, :8], init_from=src
        )


def test_text_add_needs_vectors_of_the_right_shape(data) -> None:
    with pytest.raises(ConfigError, match="item_text_vectors"):
        SASRec(**TINY, max_epochs=1, text="add").fit(data, item_text_vectors=np.ones((3, 4)))


@pytest.mark.parametrize("bf16", [False, True])
def test_chunked_softmax_matches_cross_entropy(bf16) -> None:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    h0 = torch.randn(3000, 8, generator=gen)
    e0 = torch.randn(5000, 8, generator=gen)  # 5000 items: several row chunks
    y = torch.randint(0, 5000, (3000,), generator=gen)
    grads = []
    for fn in (
        lambda h, e: F.cross_entropy(h @ e.T, y),
        lambda h, e: softmax_cross_entropy(h, e, y, bf16=bf16),
    ):
        h, e = h0.clone().requires_grad_(), e0.clone().requires_grad_()
        loss = fn(h, e)
        (3 * loss).backward()
        grads.append((loss.detach(), h.grad, e.grad))
    tol = 2e-2 if bf16 else 1e-5
    for ref, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol * float(ref.abs().max()))


def test_time_budget_stops_and_validates_the_last_epoch(data) -> None:
    loo = leave_one_out(data)
    m = SASRec(**TINY, max_epochs=50, eval_every=10, max_minutes=1e-6)
    m.fit(loo.valid.train, valid=loo.valid)
    assert len(m.history) == 1 and "ndcg@10" in m.history[0]
    assert m.best_epoch == 1


def test_training_windows_cover_long_histories() -> None:
    from recsage.models.sasrec.batches import _training_windows

    seq = np.arange(10)
    last = _training_windows([seq], 4, "last")
    np.testing.assert_array_equal(last, [[6, 7, 8, 9, 10]])  # tokens = items + 1
    every = _training_windows([seq], 4, "all")
    # windows step back by max_len: each target position is predicted exactly once
    np.testing.assert_array_equal(every, [[6, 7, 8, 9, 10], [2, 3, 4, 5, 6], [0, 0, 0, 1, 2]])


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ConfigError, match="loss"):
        SASRec(loss="hinge")


def clustered_dataset(
    n_users: int = 240, n_clusters: int = 30, size: int = 10, seed: int = 0
) -> tuple[Dataset, np.ndarray]:
    """Users browse one hidden cluster of items in random order; only the text knows clusters.

    Item text vectors = cluster centroid + small noise, so the semantic view tells which
    items belong together from the first epoch, while each ID is seen only a few times."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * size
    cluster = rng.permutation(np.repeat(np.arange(n_clusters), size))
    centroids = rng.normal(size=(n_clusters, 24))
    text = (centroids[cluster] + 0.1 * rng.normal(size=(n_items, 24))).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    users, items, times = [], [], []
    for u in range(n_users):
        members = np.flatnonzero(cluster == rng.integers(n_clusters))
        walk = rng.permutation(members)[: int(rng.integers(4, 8))]
        users += [u] * len(walk)
        items += walk.tolist()
        times += list(range(len(walk)))
    inter = Interactions.build(
        np.array(users), np.array(items), timestamp=np.array(times, dtype=float)
    )
    data = Dataset(
        "clustered",
        inter,
        Vocabulary([f"u{u}" for u in range(n_users)]),
        Vocabulary([f"i{i}" for i in range(n_items)]),
        pd.DataFrame({"title": [f"item {i}" for i in range(n_items)]}),
    )
    return data, text


def test_two_view_gate_uses_text_when_ids_are_sparse() -> None:
    data, text = clustered_dataset()
    loo = leave_one_out(data)
    cfg = {**TINY, "max_epochs": 8, "patience": 8}
    ids = SASRec(**cfg).fit(loo.valid.train, valid=loo.valid)
    gate = SASRec(**cfg, text="gate").fit(loo.valid.train, valid=loo.valid, item_text_vectors=text)
    # chance NDCG@10 over 300 items is ~0.01; knowing the cluster (9 members left, history
    # excluded) puts the target in the top 10: the gate must exploit that, IDs alone cannot
    assert gate.best_ndcg > 0.25
    assert gate.best_ndcg > 2 * ids.best_ndcg
    net = gate.net
    assert net is not None and net.gate is not None and net.adapter is not None and net.id_emb
    with torch.no_grad():
        tv = torch.cat([torch.zeros(1, text.shape[1]), torch.as_tensor(text)])
        sem = net.adapter(tv)
        g = net.gate_values(net.id_emb.weight, sem)[1:]
    assert bool(((g > 0) & (g < 1)).all())
    # the fused table is exactly g * id + (1 - g) * sem (row 0 = padding stays zero)
    with torch.no_grad():
        table = net.item_table(tv)
    expect = g * net.id_emb.weight[1:] + (1 - g) * sem[1:]
    assert torch.allclose(table[1:], expect, atol=1e-6)
    assert float(table[0].abs().sum()) == 0.0


def test_text_init_places_similar_items_close() -> None:
    data, text = clustered_dataset()
    m = SASRec(**TINY, max_epochs=0, emb_init="text").fit(data, item_text_vectors=text)
    assert m.net is not None and m.net.id_emb is not None
    emb = m.net.id_emb.weight[1:].detach().numpy()
    assert emb.std() == pytest.approx(TINY["dim"] ** -0.5, rel=1e-3)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    same = (text @ text.T) > 0.8  # same cluster (centroids are far apart)
    off = ~np.eye(len(text), dtype=bool)
    assert sim[same & off].mean() > 0.9 > 0.2 > sim[~same].mean()
    with pytest.raises(ConfigError, match="emb_init='text'"):
        SASRec(**TINY, max_epochs=0, emb_init="text").fit(data, item_text_vectors=text[:5])


def test_gate_mode_saves_and_loads(tmp_path) -> None:
    data, text = clustered_dataset(n_users=60)
    m = SASRec(**TINY, max_epochs=1, text="gate").fit(data, item_text_vectors=text)
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    seqs = [np.array([1, 2, 3])]
    np.testing.assert_allclose(back.score_sequences(seqs), m.score_sequences(seqs), atol=1e-5)


def test_popularity_aware_gate_starts_as_the_plain_gate_and_learns_a_slope(tmp_path) -> None:
    data, text = clustered_dataset(n_users=60)
    plain = SASRec(**TINY, max_epochs=0, text="gate").fit(data, item_text_vectors=text)
    pop = SASRec(**TINY, max_epochs=0, text="gate", gate_popularity=True).fit(
        data, item_text_vectors=text
    )
    assert plain.net is not None and pop.net is not None and pop.net.gate_pop is not None
    # the stored frequency is the standardized log count of each item (padding row 0)
    counts = np.bincount(data.interactions.item, minlength=data.n_items)
    f = np.log1p(counts)
    want = (f - f.mean()) / (f.std() + 1e-6)
    freq = pop.net.get_buffer("item_freq").numpy()
    np.testing.assert_allclose(freq[1:], want, rtol=1e-5, atol=1e-6)
    assert freq[0] == 0.0
    # slope 0 at the start: the same item table as the plain gate (same seed, same init)
    seqs = [np.array([1, 2, 3])]
    np.testing.assert_allclose(pop.score_sequences(seqs), plain.score_sequences(seqs), atol=1e-5)
    trained = SASRec(**TINY, max_epochs=2, text="gate", gate_popularity=True).fit(
        data, item_text_vectors=text
    )
    assert trained.net is not None and trained.net.gate_pop is not None
    assert float(trained.net.gate_pop.detach().abs().sum()) > 0
    trained.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(back.score_sequences(seqs), trained.score_sequences(seqs), atol=1e-5)
    with pytest.raises(ConfigError, match="gate_popularity"):
        SASRec(text="add", gate_popularity=True)
