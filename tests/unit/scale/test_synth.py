"""Synthetic data: sizes, determinism, planted popularity / category / sequence structure,
and files the existing loaders read back."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recsage.cli import app
from recsage.data import load_dataset, load_table
from recsage.data.splits import leave_one_out
from recsage.data.synth import SynthConfig, generate, write_synth
from recsage.errors import ConfigError
from recsage.evaluation.protocol import evaluate
from recsage.models.baselines import Popularity

CFG = SynthConfig(users=1500, items=400, events=30_000, seed=3)


@pytest.fixture(scope="module")
def synth():
    return generate(CFG)


def test_sizes_and_determinism(synth):
    assert (synth.n_users, synth.n_items, len(synth.interactions)) == (1500, 400, 30_000)
    lengths = np.bincount(synth.interactions.user, minlength=synth.n_users)
    assert lengths.min() >= CFG.min_length
    again = generate(CFG)
    assert np.array_equal(again.interactions.item, synth.interactions.item)
    assert np.array_equal(again.interactions.timestamp, synth.interactions.timestamp)
    other = generate(SynthConfig(users=1500, items=400, events=30_000, seed=4))
    assert not np.array_equal(other.interactions.item, synth.interactions.item)
    ts = synth.interactions.timestamp
    same_user = synth.interactions.user[1:] == synth.interactions.user[:-1]
    assert (np.diff(ts)[same_user] > 0).all()  # time increases within every user


def test_popularity_is_heavy_tailed(synth):
    counts = np.sort(synth.item_popularity())[::-1].astype(float)
    ranks = np.arange(1, 51)
    slope = np.polyfit(np.log(ranks), np.log(counts[:50]), 1)[0]
    assert -1.5 < slope < -0.4  # a power law over the head
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.3  # the top 10 % of items take far more than 10 % of events


def test_categories_and_users_favourites(synth):
    cats = synth.item_table["categories"]
    assert all(len(c) == 1 for c in cats)
    names = np.array([c[0] for c in cats])
    assert len(set(names)) == CFG.n_categories() == 10
    inter = synth.interactions
    codes = np.unique(names, return_inverse=True)[1]
    m = sp.csr_matrix(
        (np.ones(len(inter)), (inter.user, codes[inter.item])), shape=(synth.n_users, 10)
    ).toarray()
    top2 = np.sort(m, axis=1)[:, -2:].sum(axis=1) / m.sum(axis=1)
    # two favourite categories of ten: far above the 0.2 a category-blind user would show
    assert top2.mean() > 0.6
    # item text names the category (what text encoders can use)
    row = synth.item_table.iloc[0]
    assert row["categories"][0] in row["text"]


def _markov_scorer(train, n_items):
    seqs = train.sequences()
    prev = np.concatenate([s[:-1] for s in seqs if len(s) > 1])
    nxt = np.concatenate([s[1:] for s in seqs if len(s) > 1])
    trans = sp.csr_matrix((np.ones(len(prev)), (prev, nxt)), shape=(n_items, n_items))
    last = np.array([s[-1] if len(s) else 0 for s in seqs])

    def score(users, history=None):
        return trans[last[users]].toarray().astype(np.float32)

    return score


@pytest.mark.parametrize("p_next", [0.5, 0.0])
def test_order_matters_only_when_planted(p_next):
    ds = generate(SynthConfig(users=1500, items=400, events=30_000, seed=3, p_next=p_next))
    split = leave_one_out(ds).test
    pop = evaluate(Popularity().fit(split.train), split, ks=(10,)).metrics["hr@10"]
    markov = evaluate(_markov_scorer(split.train, ds.n_items), split, ks=(10,)).metrics["hr@10"]
    if p_next > 0:
        assert markov > 2 * pop and markov > 0.4  # successors are learnable from order
    else:
        assert markov < pop + 0.1  # nothing sequential to learn


def test_atomic_and_parquet_files_round_trip(synth, tmp_path):
    paths = write_synth(synth, tmp_path / "a")
    assert [p.name for p in paths] == ["synth.inter", "synth.item"]
    back = load_dataset(str(tmp_path / "a"))
    assert back.n_items == synth.n_items and back.n_users == synth.n_users
    assert back.report is not None and back.report.rows_dropped == 0
    pairs = set(zip(synth.users.ids[synth.interactions.user],
                    synth.items.ids[synth.interactions.item], strict=True))  # fmt: skip
    back_pairs = set(zip(back.users.ids[back.interactions.user],
                         back.items.ids[back.interactions.item], strict=True))  # fmt: skip
    assert pairs == back_pairs
    i = back.items.index_of("i7")
    assert back.item_table.loc[i, "categories"] == synth.item_table.loc[7, "categories"]
    assert back.item_table.loc[i, "text"] == synth.item_table.loc[7, "text"]
    ev, it = write_synth(synth, tmp_path / "p", fmt="parquet")
    table = load_table(ev, items_path=it)
    assert len(table.interactions) == len(synth.interactions)
    cats = synth.item_table.loc[7, "categories"]
    assert list(table.item_table.loc[7, "categories"]) == list(cats)
    with pytest.raises(ConfigError, match="unknown synth format 'xml'"):
        write_synth(synth, tmp_path / "x", fmt="xml")


def test_bad_config_names_the_value():
    with pytest.raises(ConfigError, match=r"events \(10\) must be >= users x min_length"):
        generate(SynthConfig(users=10, items=20, events=10))
    with pytest.raises(ConfigError, match="p_next \\+ p_category must be <= 1"):
        generate(SynthConfig(users=10, items=20, events=100, p_next=0.8, p_category=0.3))


def test_synth_command(tmp_path):
    out = tmp_path / "s"
    res = CliRunner().invoke(
        app, ["synth", "--users", "50", "--items", "30", "--events", "400", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "50 users, 30 items (4 categories), 400 events" in res.output
    assert len(load_dataset(str(out)).interactions) == 400
