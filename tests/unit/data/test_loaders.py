"""Loaders: real datasets (when the shared data folder is present) and hand-built files."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsage.data import (
    Dataset,
    load_amazon_unisrec,
    load_dataset,
    load_ml1m,
    load_ml100k,
    load_recbole_atomic,
    load_sequences,
    load_table,
    shared_data_dir,
)
from recsage.data.sources import recbole as recbole_source
from recsage.errors import DataError, RecsageError


def _shared() -> Path | None:
    try:
        return shared_data_dir()
    except RecsageError:
        return None


SHARED = _shared()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared data folder not available")


def _has_recbole() -> bool:
    try:
        metadata.files("recbole")
    except metadata.PackageNotFoundError:
        return False
    return True


def _seqs(ds: Dataset) -> list[list[str]]:
    """Per-user external item ids, in order."""
    return [ds.items.decode(s).tolist() for s in ds.sequences()]


# --------------------------------------------------------------------------- shared data


@pytest.fixture(scope="module")
def ml1m() -> Dataset:
    return load_ml1m()


@pytest.fixture(scope="module")
def scientific() -> Dataset:
    assert SHARED is not None
    return load_amazon_unisrec(SHARED / "amazon-scientific")


@needs_shared
def test_ml100k_shared_folder() -> None:
    assert SHARED is not None
    ds = load_ml100k(SHARED / "ml-100k")
    assert (ds.name, ds.n_users, ds.n_items, len(ds.interactions)) == ("ml-100k", 943, 1682, 100000)
    row = ds.item_table.iloc[ds.items.index_of("1")]
    assert row["title"] == "Toy Story"
    assert row["year"] == 1995
    assert row["categories"] == ["Animation", "Children's", "Comedy"]
    assert ds.item_table["year"].dtype == "Int64"
    assert ds.item_table.iloc[ds.items.index_of("50")]["year"] == 1977
    assert ds.user_table is not None
    user1 = ds.user_table.iloc[ds.users.index_of("1")]
    assert (user1["gender"], user1["occupation"], user1["zip_code"]) == ("M", "technician", "85711")
    assert sorted(np.unique(ds.interactions.value).tolist()) == [1, 2, 3, 4, 5]
    assert ds.report is not None and ds.report.rows_read == 100000 and ds.report.rows_dropped == 0


@needs_shared
@pytest.mark.skipif(not _has_recbole(), reason="recbole wheel not installed")
def test_ml100k_wheel_equals_shared_folder() -> None:
    assert SHARED is not None
    bundled = load_ml100k()
    shared = load_ml100k(SHARED / "ml-100k")
    assert bundled.fingerprint() == shared.fingerprint()
    assert bundled.item_table.equals(shared.item_table)
    assert load_dataset("ml-100k").fingerprint() == bundled.fingerprint()


@needs_shared
def test_ml1m_counts_and_user_age_fix(ml1m: Dataset) -> None:
    assert (ml1m.name, ml1m.n_users, ml1m.n_items, len(ml1m.interactions)) == (
        "ml-1m",
        6040,
        3416,
        999611,
    )
    assert ml1m.user_table is not None
    assert list(ml1m.user_table.columns) == ["user_id", "gender", "age", "occupation", "zip_code"]
    user1 = ml1m.user_table.iloc[ml1m.users.index_of("1")]
    assert (user1["gender"], user1["age"], user1["occupation"], user1["zip_code"]) == (
        "F",
        1,
        10,
        "48067",
    )
    assert ml1m.report is not None
    assert any("user 1" in n and "age" in n for n in ml1m.report.notes)
    # users in UserID order, items in MovieID order; sequence file order is kept
    assert ml1m.users.ids[:3].tolist() == ["1", "2", "3"]
    assert np.all(np.diff(ml1m.items.ids.astype(int)) > 0)
    assert SHARED is not None
    first_line = (SHARED / "ml-1m" / "sequences" / "ml-1m.seq.txt").open().readline().split()
    seq = _seqs(ml1m)[ml1m.users.index_of(first_line[0])]
    assert seq == first_line[1:]
    assert ml1m.item_table.iloc[ml1m.items.index_of("1")]["title"] == "Toy Story"
    # no (user, item) pair repeats in the SASRec ML-1M sequences
    assert ml1m.matrix().nnz == len(ml1m.interactions)


@needs_shared
def test_amazon_scientific_rebuilt_sequences(scientific: Dataset) -> None:
    ds = scientific
    assert (ds.name, ds.n_users, ds.n_items) == ("amazon-scientific", 8442, 4385)
    assert len(ds.interactions) == 59427  # the UniSRec paper's count: histories were rebuilt
    assert SHARED is not None
    test = pd.read_csv(SHARED / "amazon-scientific" / "Scientific.test.inter", sep="\t")
    seqs = ds.sequences()
    last = np.array([s[-1] for s in seqs])
    # indices in the files are the dense indices (user2index / item2index order)
    assert np.array_equal(last[test["user_id:token"].to_numpy()], test["item_id:token"].to_numpy())
    assert ds.users.ids[0] == "ABW8NXS7SV55K" and ds.items.ids[0] == "B00TNNWMXI"
    row = ds.item_table.iloc[ds.items.index_of("B0000223UV")]
    assert row["title"] == (
        "Gorilla Original Gorilla Glue, Waterproof Polyurethane Glue, 8 ounce Bottle, Brown"
    )
    assert row["text"].startswith(row["title"] + ". Industrial & Scientific")
    assert ds.item_table["title"].notna().all()
    assert load_dataset("scientific").fingerprint() == ds.fingerprint()


# --------------------------------------------------------------------------- RecBole atomic


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_recbole_atomic_small(tmp_path: Path) -> None:
    _write(
        tmp_path / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u2\ta\t4\t20\nu1\tb\t5\t10\nu1\ta\t3\t5\nu2\tzz\t1\t30\n",
    )
    _write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        'a\tThe "A" film\t1999\tDrama Comedy\nb\tB\t\tHorror\nc\tC\t2001\t\n',
    )
    _write(tmp_path / "toy.user", "user_id:token\tage:float\tgender:token\nu1\t30\tF\nu9\t1\tM\n")
    ds = load_recbole_atomic(tmp_path, "toy")
    assert ds.items.ids.tolist() == ["a", "b", "c"]  # item file order, unseen 'c' kept
    assert ds.users.ids.tolist() == ["u1", "u2"]  # .user order, then first appearance
    assert ds.report is not None and ds.report.dropped == {"unknown item id": 1}
    assert ds.report.rows_read == 4
    assert _seqs(ds) == [["a", "b"], ["a"]]
    assert ds.interactions.value.tolist() == [3, 5, 4]
    assert ds.item_table["title"].tolist() == ['The "A" film', "B", "C"]
    assert ds.item_table["year"].tolist()[0] == 1999 and pd.isna(ds.item_table["year"][1])
    assert ds.item_table["categories"].tolist() == [["Drama", "Comedy"], ["Horror"], []]
    assert ds.user_table is not None
    assert ds.user_table["age"].iloc[0] == 30.0 and pd.isna(ds.user_table["age"].iloc[1])
    assert ds.user_table["user_id"].tolist() == ["u1", "u2"]
    assert load_dataset(str(tmp_path)).fingerprint() == ds.fingerprint()


def test_recbole_atomic_without_item_file(tmp_path: Path) -> None:
    _write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t7\n1\t8\n2\t7\n")
    ds = load_recbole_atomic(tmp_path, "x")
    assert ds.items.ids.tolist() == ["7", "8"]
    assert ds.interactions.timestamp.tolist() == [0, 1, 2]  # file order
    assert ds.user_table is None


def test_missing_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.inter"):
        load_recbole_atomic(tmp_path, "nope")
    with pytest.raises(DataError, match=r"missing\.csv"):
        load_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"seq\.txt"):
        load_sequences(tmp_path / "seq.txt")
    with pytest.raises(DataError, match=r"ml-1m\.seq\.txt"):
        load_ml1m(tmp_path)
    with pytest.raises(DataError, match=r"S\.item2index"):
        load_amazon_unisrec(tmp_path, "S")


def test_ml100k_without_recbole(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(recbole_source.metadata, "files", missing)
    with pytest.raises(RecsageError, match=r"pip install --no-deps recbole==1\.2\.1"):
        load_ml100k()


# --------------------------------------------------------------------------- sequences


def test_sequences(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.txt", "7 3 1 2\n\n5\n9 1\n7 4\n")
    ds = load_sequences(path)
    assert ds.name == "s"
    assert ds.users.ids.tolist() == ["7", "9"]
    assert _seqs(ds) == [["3", "1", "2", "4"], ["1"]]  # repeated user lines concatenate
    assert ds.interactions.timestamp.tolist() == [0, 1, 2, 3, 0]
    assert ds.report is not None and ds.report.dropped == {"user with no items": 1}
    assert ds.report.rows_read == 4
    assert ds.item_table["item_id"].tolist() == ["3", "1", "2", "4"]
    assert load_dataset(str(path)).fingerprint() == ds.fingerprint()


# --------------------------------------------------------------------------- UniSRec


def _write_unisrec(root: Path, seqs: dict[int, list[int]], max_len: int = 3) -> None:
    """UniSRec files for full sequences (train prefixes longest-first, histories cut)."""
    n_items = 1 + max(i for s in seqs.values() for i in s)
    _write(root / "T.item2index", "".join(f"A{i}\t{i}\n" for i in range(n_items)))
    _write(root / "T.user2index", "".join(f"R{u}\t{u}\n" for u in sorted(seqs)))
    _write(
        root / "T.text",
        "item_id:token\ttext:token_seq\n"
        + "".join(f"A{i}\tItem {i}. Cat. Brand.\n" for i in range(n_items)),
    )
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for u, s in seqs.items():
        for t in range(len(s) - 3, 0, -1):
            rows["train"].append(f"{u}\t{' '.join(map(str, s[max(0, t - max_len) : t]))}\t{s[t]}")
        for part, t in (("valid", len(s) - 2), ("test", len(s) - 1)):
            rows[part].append(f"{u}\t{' '.join(map(str, s[max(0, t - max_len) : t]))}\t{s[t]}")
    for part, lines in rows.items():
        _write(root / f"T.{part}.inter", head + "".join(line + "\n" for line in lines))


def test_unisrec_reconstruction(tmp_path: Path) -> None:
    seqs = {0: [0, 1, 2, 3, 4, 5, 6], 1: [7, 8, 9], 2: [2, 2, 8, 1, 0]}
    _write_unisrec(tmp_path, seqs)
    ds = load_amazon_unisrec(tmp_path, "T")
    assert ds.name == "amazon-t"
    assert [s.tolist() for s in ds.sequences()] == list(seqs.values())
    assert ds.users.ids.tolist() == ["R0", "R1", "R2"]
    assert ds.item_table["title"].iloc[3] == "Item 3"
    assert ds.item_table["text"].iloc[3] == "Item 3. Cat. Brand."
    assert ds.report is not None
    assert any("repeat" in n for n in ds.report.notes)  # user 2 has item 2 twice
    assert load_dataset(str(tmp_path)).fingerprint() == ds.fingerprint()


def test_unisrec_history_mismatch_is_an_error(tmp_path: Path) -> None:
    _write_unisrec(tmp_path, {0: [0, 1, 2, 3, 4, 5], 1: [6, 7, 8, 9]})
    test_file = tmp_path / "T.test.inter"
    lines = test_file.read_text().splitlines()
    lines[2] = "1\t6 9 8\t9"  # user 1's test history is not the tail of its sequence
    _write(test_file, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_amazon_unisrec(tmp_path, "T")
    msg = str(err.value)
    assert "T.test.inter" in msg and "line 3" in msg and "item_id_list" in msg and "R1" in msg


# --------------------------------------------------------------------------- generic tables

ROWS = pd.DataFrame(
    {
        "user": ["u1", "u1", "u2", "u2", "u3"],
        "item": ["i1", "i2", "i2", "i3", "i1"],
        "when": [
            "2024-01-01 00:00:10",
            "2024-01-01 00:00:00",
            "2024-01-02 00:00:00",
            "2024-01-03 00:00:00",
            "2024-01-04 00:00:00",
        ],
        "rating": [5.0, 3.0, 4.0, 1.0, 2.0],
        "kind": ["view", "buy", "view", "view", "cart"],
    }
)
ITEMS = pd.DataFrame(
    {
        "id": ["i3", "i2", "i1", "i4"],
        "name": ["Three", "Two", "One", "Four"],
        "genres": ["A|B", "B", "", "C"],
        "price": [1.5, 2.0, 3.0, 4.0],
    }
)


def _write_frame(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_table_roundtrip(tmp_path: Path, suffix: str) -> None:
    path = _write_frame(ROWS, tmp_path / f"log{suffix}")
    items = _write_frame(ITEMS, tmp_path / f"items{suffix}")
    ds = load_table(
        path,
        user_col="user",
        item_col="item",
        time_col="when",
        value_col="rating",
        event_col="kind",
        items_path=items,
        item_id_col="id",
        title_col="name",
    )
    assert ds.name == "log"
    assert ds.users.ids.tolist() == ["u1", "u2", "u3"]
    assert ds.items.ids.tolist() == ["i3", "i2", "i1", "i4"]  # item table order
    assert _seqs(ds) == [["i2", "i1"], ["i2", "i3"], ["i1"]]  # sorted by time
    inter = ds.interactions
    assert inter.timestamp[:2].tolist() == [1704067200.0, 1704067210.0]
    assert inter.value.tolist() == [3, 5, 4, 1, 2]
    assert inter.event_names == ("view", "buy", "cart")
    assert [inter.event_names[e] for e in inter.event] == ["buy", "view", "view", "view", "cart"]
    table = ds.item_table
    assert table["title"].tolist() == ["Three", "Two", "One", "Four"]
    assert table["categories"].tolist() == [["A", "B"], ["B"], [], ["C"]]
    assert table["price"].tolist() == [1.5, 2.0, 3.0, 4.0]
    assert table["price"].dtype == np.float64
    assert ds.report is not None and ds.report.rows_read == 5 and ds.report.rows_dropped == 0


def test_table_formats_agree_and_epoch_times(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [3, 1, 3], "item_id": [10, 11, 12], "timestamp": [5, 7, 6]})
    prints = {
        suffix: load_table(_write_frame(frame, tmp_path / f"t{suffix}")).fingerprint()
        for suffix in (".csv", ".jsonl", ".parquet")
    }
    assert len(set(prints.values())) == 1
    ds = load_table(tmp_path / "t.csv")
    assert _seqs(ds) == [["10", "12"], ["11"]]
    assert ds.interactions.timestamp.tolist() == [5, 6, 7]
    via_spec = load_dataset(str(tmp_path / "t.parquet"), name="x")
    assert via_spec.name == "x" and via_spec.fingerprint() == ds.fingerprint()


def test_table_time_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "user_id,item_id,timestamp\na,y,02/03/2024\na,x,13/01/2024\n")
    ds = load_table(path, time_format="%d/%m/%Y")
    assert _seqs(ds) == [["x", "y"]]
    gap = pd.Timestamp("2024-03-02") - pd.Timestamp("2024-01-13")
    assert ds.interactions.timestamp[1] - ds.interactions.timestamp[0] == gap.total_seconds()
    assert ds.interactions.timestamp[0] == pd.Timestamp("2024-01-13", tz="UTC").timestamp()


def test_table_missing_ids_are_dropped_and_counted(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.csv", "user_id,item_id,timestamp\na,x,1\n,y,2\nb,,3\n\nb,z,4\nb,w,\n"
    )
    ds = load_table(path)
    assert len(ds.interactions) == 2
    assert ds.report is not None
    assert ds.report.dropped == {"missing user or item id": 2, "missing timestamp": 1}
    assert ds.report.rows_read == 5  # the blank line is not a row


def test_table_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "uid,item_id,timestamp\na,x,1\n")
    with pytest.raises(DataError) as err:
        load_table(path)
    msg = str(err.value)
    assert "c.csv" in msg and "missing column 'user_id' (found: uid, item_id, timestamp)" in msg
    assert "--user-col" in msg and err.value.column == "user_id"


def test_table_bad_timestamp_csv(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "user_id,item_id,timestamp\na,x,2024-01-01\n\na,y,2024-01-02\nb,x,soon\nb,y,later\n",
    )
    with pytest.raises(DataError) as err:
        load_table(path)
    msg = str(err.value)
    assert "t.csv" in msg and "line 5" in msg and "column 'timestamp'" in msg and "'soon'" in msg
    assert err.value.line == 5


def test_table_bad_timestamp_jsonl_and_parquet(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        '{"user_id": "a", "item_id": "x", "timestamp": 1}\n\n'
        '{"user_id": "a", "item_id": "y", "timestamp": "x1"}\n',
    )
    with pytest.raises(DataError) as err:
        load_table(path)
    assert "t.jsonl" in str(err.value) and "line 3" in str(err.value) and "'x1'" in str(err.value)
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["1", "z"]})
    with pytest.raises(DataError) as err:
        load_table(_write_frame(frame, tmp_path / "t.parquet"))
    msg = str(err.value)
    assert "t.parquet" in msg and "row 2" in msg and "column 'timestamp'" in msg


def test_table_duplicate_item_ids(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n")
    items = _write(tmp_path / "items.csv", "item_id,title\nx,X\ny,Y\nx,X again\n")
    with pytest.raises(DataError) as err:
        load_table(log, items_path=items)
    msg = str(err.value)
    assert "items.csv" in msg and "line 4" in msg and "column 'item_id'" in msg and "'x'" in msg


def test_table_unknown_items(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\na,q,2\nb,q,3\nb,y,4\n")
    items = _write(tmp_path / "items.csv", "item_id,title\nx,X\ny,Y\n")
    with pytest.raises(DataError) as err:
        load_table(log, items_path=items)
    msg = str(err.value)
    assert "log.csv" in msg and "line 3" in msg and "column 'item_id'" in msg and "'q'" in msg
    ds = load_table(log, items_path=items, unknown_items="drop")
    assert ds.report is not None and ds.report.dropped == {"unknown item id": 2}
    assert _seqs(ds) == [["x"], ["y"]]


def test_table_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"e\.csv.*no interactions"):
        load_table(_write(tmp_path / "e.csv", "user_id,item_id,timestamp\n"))
    with pytest.raises(DataError, match=r"z\.csv.*no interactions"):
        load_table(_write(tmp_path / "z.csv", ""))


# --------------------------------------------------------------------------- locations


def test_shared_data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECSAGE_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("RECSAGE_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(RecsageError, match="RECSAGE_DATA_DIR"):
        shared_data_dir()


def test_unknown_spec_lists_names() -> None:
    with pytest.raises(RecsageError) as err:
        load_dataset("no-such-dataset")
    msg = str(err.value)
    assert "no-such-dataset" in msg
    assert all(name in msg for name in ("ml-100k", "ml-1m", "amazon-scientific"))
