"""A user's own files: byte sniffing, column mapping, event weights, own-data splits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsage.data.schema import Dataset, Interactions
from recsage.data.sources.events import parse_event_list, parse_event_weights
from recsage.data.sources.sniff import decode_bytes, detect_sep, parse_sep, record_lines
from recsage.data.sources.tables import load_table
from recsage.data.splits import (
    kfold_splits,
    leave_one_out,
    parse_cutoff,
    random_split,
    require_users,
    temporal_split,
)
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, DataError

P = Path("f.csv")


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ------------------------------------------------------------------------ bytes and text


def test_decode_detects_gzip_utf16_and_latin1() -> None:
    text = "user_id,title\nu1,Café\n"
    assert decode_bytes(text.encode(), P).text == text
    assert decode_bytes(text.encode(), P).notes == []
    gz = decode_bytes(gzip.compress(text.encode()), P)
    assert gz.text == text and "gzip" in gz.notes[0]
    for enc, note in (("utf-16", "UTF-16 (byte-order mark)"), ("utf-16-le", "UTF-16-LE")):
        got = decode_bytes(text.encode(enc), P)
        assert got.text == text and note in got.notes[0]
    latin = decode_bytes(("x\n" * 4 + text).encode("latin-1"), P)
    assert latin.text == "x\n" * 4 + text
    assert "Windows-1252" in latin.notes[0] and "1 line(s)" in latin.notes[0]
    assert "first line 6" in latin.notes[0]
    assert decode_bytes(text.encode("latin-1"), P, "latin-1").text == text


def test_decode_refuses_mixed_utf8_and_wrong_encoding() -> None:
    mixed = "a,b\nCafé,1\nx,2\n".encode() + b"bad\xff,3\n"
    with pytest.raises(DataError) as err:
        decode_bytes(mixed, P)
    assert err.value.line == 4 and "0xff" in str(err.value)
    with pytest.raises(DataError) as err:
        decode_bytes("a\nCafé\n".encode("latin-1"), P, "utf-8")
    assert err.value.line == 2 and "--encoding" in str(err.value)
    with pytest.raises(ConfigError, match="unknown --encoding"):
        decode_bytes(b"a\n", P, "klingon")
    with pytest.raises(DataError, match="ZIP"):
        decode_bytes(b"PK\x03\x04rest", P)


def test_separators_and_record_lines() -> None:
    assert parse_sep("tab") == "\t" and parse_sep(";") == ";" and parse_sep(None) is None
    with pytest.raises(ConfigError):
        parse_sep(";;")
    assert detect_sep("a;b;c\n1;2;3\n", ",", None) == (
        ";",
        "delimiter ';' detected from the header (pass --sep to set it)",
    )
    assert detect_sep("a,b\n", ",", None) == (",", None)
    assert detect_sep("a;b\n", ",", "|") == ("|", None)
    text = 'a,b\n1,"x\ny\nz"\n2,w\n3,"q"\n'
    assert record_lines(text, ",").tolist() == [2, 5, 6]
    assert record_lines("a,b\n1,2\n", ",") is None


# ------------------------------------------------------------------------ column mapping

EVENTS = (
    "customer_id,product_id,event_time,event_type,session\n"
    "c1,p1,2024-01-01T10:00:00Z,view,s1\n"
    "c1,p1,2024-01-01T10:01:00Z,purchase,s1\n"
    "c1,p2,2024-01-01T10:02:00Z,cart,s1\n"
    "c2,p2,2024-01-02T09:00:00Z,view,s2\n"
    "c2,p3,2024-01-02T09:05:00Z,view,s2\n"
)
PRODUCTS = (
    "product_id,name,category,description,price,colour\n"
    'p1,Cat Litter,Cats|Litter,"Clumping, low dust",12.5,grey\n'
    "p2,Dog Bed,Dogs|Beds,Soft,45,blue\n"
    "p3,Fish Food,Fish,,3.25,\n"
)


def test_common_column_names_are_found_and_reported(tmp_path: Path) -> None:
    ds = load_table(
        _write(tmp_path / "events.csv", EVENTS), items_path=_write(tmp_path / "p.csv", PRODUCTS)
    )
    assert ds.users.ids.tolist() == ["c1", "c2"]
    assert ds.items.ids.tolist() == ["p1", "p2", "p3"]
    assert ds.interactions.event_names == ("view", "purchase", "cart")
    table = ds.item_table
    assert table["title"].tolist() == ["Cat Litter", "Dog Bed", "Fish Food"]
    assert table["categories"].tolist() == [["Cats", "Litter"], ["Dogs", "Beds"], ["Fish"]]
    assert table["text"].tolist()[:2] == ["Clumping, low dust", "Soft"]
    assert pd.isna(table["text"].iloc[2])
    assert table["price"].tolist() == [12.5, 45.0, 3.25]
    assert ds.report is not None
    used = {(f, c): u for f, c, u in ds.report.columns}
    assert used[("events.csv", "customer_id")] == "user id"
    assert used[("events.csv", "product_id")] == "item id"
    assert used[("events.csv", "event_time")] == "timestamp"
    assert (
        used[("events.csv", "event_type")]
        == "event type (view 3 · purchase 1 · cart 1; all weigh 1 in training, see --event-weights)"
    )
    assert used[("events.csv", "session")] == "ignored"
    assert used[("p.csv", "product_id")] == "item id"
    assert used[("p.csv", "category")] == "categories (split on '|', 5 distinct)"
    assert used[("p.csv", "description")] == "text (item description)"
    assert used[("p.csv", "price")].startswith("attribute (number")
    assert used[("p.csv", "colour")].startswith("attribute (text")
    assert len(ds.report.columns) == 11  # every column of both files accounted for


def test_explicit_item_columns_and_category_separator(tmp_path: Path) -> None:
    items = _write(tmp_path / "i.csv", "code,label,tags,blurb,more\nx,X,a;b,one,two\ny,Y,c,,\n")
    log = _write(tmp_path / "l.csv", "user_id,item_id\nu,x\nu,y\n")
    ds = load_table(
        log,
        items_path=items,
        item_id_col="code",
        title_col="label",
        category_col="tags",
        category_sep=";",
        text_cols=["blurb", "more"],
    )
    assert ds.item_table["title"].tolist() == ["X", "Y"]
    assert ds.item_table["categories"].tolist() == [["a", "b"], ["c"]]
    assert ds.item_table["text"].iloc[0] == "one. two" and pd.isna(ds.item_table["text"].iloc[1])
    assert ds.report is not None and any("no time column" in n for n in ds.report.notes)
    assert ds.interactions.timestamp.tolist() == [0.0, 1.0]  # file order kept
    with pytest.raises(DataError) as err:
        load_table(log, items_path=items, item_id_col="code", title_col="nope")
    assert "i.csv" in str(err.value) and "missing column 'nope'" in str(err.value)


def test_non_finite_item_attributes_become_missing_and_are_counted(tmp_path: Path) -> None:
    items = _write(tmp_path / "i.csv", "item_id,price\nx,1.5\ny,inf\nz,nan\n")
    ds = load_table(_write(tmp_path / "l.csv", "user_id,item_id\nu,x\n"), items_path=items)
    prices = ds.item_table["price"].to_numpy(dtype=float)
    assert prices[0] == 1.5 and np.isnan(prices[1:]).all()
    assert ds.report is not None
    assert "i.csv: 2 non-finite value(s) (NaN/inf) in 'price' set to missing (first at line 3)" in (
        ds.report.notes
    )


# ------------------------------------------------------------------------ values and times


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("-5", "before 1970-01-01"), ("4102444800", "more than a year in the future")],
)
def test_absurd_times_are_refused_with_the_line(tmp_path: Path, cell: str, expected: str) -> None:
    path = _write(tmp_path / "t.csv", f"user_id,item_id,timestamp\nu,x,1700000000\nu,y,{cell}\n")
    with pytest.raises(DataError) as err:
        load_table(path)
    assert err.value.line == 3 and expected in str(err.value)


def test_epoch_milliseconds_are_recognised(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv", "user_id,item_id,timestamp\nu,x,1700000000000\nu,y,1700000001500\n"
    )
    ds = load_table(path)
    assert ds.interactions.timestamp.tolist() == [1_700_000_000.0, 1_700_000_001.5]
    assert ds.report is not None and any("milliseconds" in n for n in ds.report.notes)


def test_non_finite_values_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.csv", "user_id,item_id,r\nu,x,4\nu,y,-inf\n")
    with pytest.raises(DataError) as err:
        load_table(path, value_col="r")
    assert err.value.line == 3 and "'-inf' is not a finite number" in str(err.value)


# ------------------------------------------------------------------------ event weights


def test_parse_event_weights() -> None:
    assert parse_event_weights("purchase=3, cart=2,view=1") == {
        "purchase": 3.0,
        "cart": 2.0,
        "view": 1.0,
    }
    assert parse_event_weights(None) is None and parse_event_weights(" ") is None
    for bad in ("purchase", "purchase=x", "view=-1", "view=inf", "a=1,a=2", "a=0,b=0"):
        with pytest.raises(ConfigError):
            parse_event_weights(bad)
    assert parse_event_list("purchase, cart,purchase") == ("purchase", "cart")
    assert parse_event_list("") is None


def test_event_weights_make_the_training_matrix(tmp_path: Path) -> None:
    ds = load_table(
        _write(tmp_path / "events.csv", EVENTS), event_weights="purchase=3,cart=2,view=1"
    )
    assert ds.event_weights == {"view": 1.0, "purchase": 3.0, "cart": 2.0}
    m = ds.matrix().toarray()
    # c1: p1 viewed then bought -> max(1, 3) = 3; p2 carted -> 2. c2: p2, p3 viewed -> 1
    assert m.tolist() == [[3.0, 2.0, 0.0], [0.0, 1.0, 1.0]]
    assert ds.matrix(binary=True).toarray().tolist() == [[1, 1, 0], [0, 1, 1]]
    plain = load_table(tmp_path / "events.csv")
    assert plain.event_weights is None and plain.matrix().toarray().max() == 1.0
    assert plain.fingerprint() != ds.fingerprint()  # weights change what models learn


def test_event_weights_zero_drops_and_missing_types_refuse(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.csv", EVENTS)
    ds = load_table(path, event_weights="purchase=3,cart=2,view=0")
    assert len(ds.interactions) == 2
    assert ds.report is not None and ds.report.dropped == {"event type with weight 0 (view)": 3}
    with pytest.raises(DataError) as err:
        load_table(path, event_weights="purchase=3,view=1")
    assert err.value.line == 4 and "'cart' (1 rows)" in str(err.value)


# ------------------------------------------------------------------------ splits


def _events_dataset() -> Dataset:
    """u0: v a(1) v b(2) p b(3) v c(4) | u1: v a(1) p c(2) v d(3) | u2: v a(1)."""
    rows = [
        ("u0", "a", 1, "view"),
        ("u0", "b", 2, "view"),
        ("u0", "b", 3, "purchase"),
        ("u0", "c", 4, "view"),
        ("u1", "a", 1, "view"),
        ("u1", "c", 2, "purchase"),
        ("u1", "d", 3, "view"),
        ("u2", "a", 1, "view"),
    ]
    users = Vocabulary(["u0", "u1", "u2"])
    items = Vocabulary(["a", "b", "c", "d"])
    names = ("view", "purchase")
    inter = Interactions.build(
        users.lookup([r[0] for r in rows]),
        items.lookup([r[1] for r in rows]),
        timestamp=np.array([r[2] for r in rows], float),
        event=np.array([names.index(r[3]) for r in rows]),
        event_names=names,
    )
    return Dataset("ev", inter, users, items, pd.DataFrame({"item_id": items.ids}))


def test_leave_one_out_with_target_events() -> None:
    ds = _events_dataset()
    loo = leave_one_out(ds, target_events=("purchase",))
    test = loo.test
    # u0's bought item b (first touched at t=2) is the target; c (t=4) is later: left out
    # u1's bought c (t=2) is the target; d (t=3) is left out; u2 never buys
    assert test.users.tolist() == [0, 1]
    assert test.targets.toarray()[:2].tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]
    seqs = test.train.sequences()
    assert [s.tolist() for s in seqs] == [[0], [0], [0]]
    assert loo.valid.users.tolist() == []  # nobody has an earlier purchase
    assert "targets: purchase events only" in test.notes
    with pytest.raises(ConfigError, match="its event types: view, purchase"):
        leave_one_out(ds, target_events=("refund",))
    plain = leave_one_out(ds).test
    assert plain.users.tolist() == [0, 1]
    assert plain.targets.toarray()[:2].tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]


def test_temporal_cutoff_and_target_events() -> None:
    ds = _events_dataset()
    sp = temporal_split(ds, cutoff=1.5)
    # after t=1.5: u0 b(2) b(3) c(4), u1 c(2) d(3); items b, c, d are unseen before: dropped
    assert sp.users.tolist() == [] and "on items first seen after the cutoff" in sp.notes[-1]
    sp = temporal_split(ds, cutoff=2.5, target_events=("purchase",))
    # train t<=2.5 sees a, b, c; after: u0 b@3 (purchase, already in history), c@4 (view)
    assert sp.users.tolist() == []
    assert "1 test interactions dropped repeating an item already in the history" in sp.notes
    with pytest.raises(ConfigError, match="outside the data's time range"):
        temporal_split(ds, cutoff=10.0)
    assert parse_cutoff("2024-03-01") == 1_709_251_200.0
    assert parse_cutoff("1709251200") == 1_709_251_200.0
    with pytest.raises(ConfigError):
        parse_cutoff("next tuesday")


def test_random_and_kfold_splits(tiny: Dataset) -> None:
    sp = random_split(tiny, test_fraction=0.5, seed=3)
    counts = np.bincount(tiny.interactions.user, minlength=tiny.n_users)
    train_counts = np.bincount(sp.train.interactions.user, minlength=tiny.n_users)
    held = np.asarray(sp.targets.sum(axis=1)).ravel()
    assert (train_counts >= 1).all()  # everyone keeps a training row
    assert (train_counts + held == counts).all()
    assert held.tolist() == [2, 2, 1, 0]  # round(0.5 * n), one-item users only train
    assert random_split(tiny, test_fraction=0.5, seed=3).targets.nnz == sp.targets.nnz
    folds = kfold_splits(tiny, folds=2, seed=1)
    total = sum(f.targets for f in folds).toarray()
    assert total.max() == 1  # each row is a target at most once
    # per user with n rows, n - 1 are dealt to folds (one always trains)
    assert total.sum(axis=1).tolist() == [3, 2, 1, 0]
    with pytest.raises(ConfigError):
        kfold_splits(tiny, folds=1)


def test_require_users_explains_the_refusal(tiny: Dataset) -> None:
    sp = leave_one_out(tiny).test
    require_users(sp, tiny, minimum=3)
    with pytest.raises(DataError) as err:
        require_users(sp, tiny, minimum=5, path="log.csv")
    msg = str(err.value)
    assert msg.startswith("log.csv: split 'loo-test' leaves 3 user(s) to evaluate (minimum 5)")
    assert "4 users, 3 with >= 2 distinct items, longest history 4" in msg


def test_sampled_negatives_below_one_are_refused(tiny: Dataset) -> None:
    from recsage.evaluation.protocol import evaluate

    sp = leave_one_out(tiny).test
    scores = np.zeros((len(sp.users), tiny.n_items), np.float32)
    for bad in (0, -5):
        with pytest.raises(ConfigError, match="sampled negatives must be >= 1"):
            evaluate(lambda users, history=None: scores[: len(users)], sp, sampled_negatives=bad)
