"""RecBole atomic folders (.inter/.item/.user)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, LoadReport
from recsage.data.sources.assemble import (
    _CATEGORY_COLUMNS,
    _assemble,
    _Columns,
    _id_strings,
    _item_table_from,
    _repeat_note,
    _split_categories,
)
from recsage.data.sources.readers import _read_delimited, _require_file, _Source
from recsage.data.vocab import Vocabulary
from recsage.errors import RecsageError

_INSTALL_HINT = "run `pip install --no-deps recbole==1.2.1` (or `make install`)"


def _read_atomic(path: Path) -> tuple[_Source, dict[str, str]]:
    """Read a RecBole atomic file: tab separated, header `name:type`, no quoting."""
    src = _read_delimited(path, "\t", quoted=False)
    types: dict[str, str] = {}
    names = []
    for col in src.frame.columns:
        name, _, typ = str(col).partition(":")
        names.append(name)
        types[name] = typ or "token"
    src.frame.columns = names
    return src, types


def _atomic_item_table(path: Path) -> tuple[pd.DataFrame, _Source]:
    """A RecBole `.item` file as an item table: title, year (Int64), categories (lists)."""
    src, types = _read_atomic(path)
    renames = {"movie_title": "title", "release_year": "year"}
    table = _item_table_from(src, "item_id", renames=renames)
    if "year" in table.columns:
        table["year"] = pd.to_numeric(table["year"], errors="coerce").astype("Int64")
    for col in _CATEGORY_COLUMNS:
        if col in table.columns and types.get(col, "token") == "token_seq":
            cats = _split_categories(table.pop(col), None)
            if "categories" not in table.columns:
                table["categories"] = cats
    for col in list(table.columns):
        if types.get(col) == "float":
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return table, src


def load_recbole_atomic(root: Path, name: str) -> Dataset:
    """Load RecBole atomic files `<name>.inter` (+ optional `.item`, `.user`) from `root`.

    With an `.item` file the item vocabulary is exactly its items in file order, and
    interactions with other items are dropped ("unknown item id"). Users follow the `.user`
    file order when there is one (then order of first appearance), restricted to users
    with interactions.
    """
    root = Path(root)
    inter_path = _require_file(root / f"{name}.inter", "RecBole interaction file")
    report = LoadReport(source=str(inter_path))
    src, _ = _read_atomic(inter_path)
    cols = _Columns(
        time="timestamp" if "timestamp" in src.frame.columns else None,
        value="rating" if "rating" in src.frame.columns else None,
    )

    item_path = root / f"{name}.item"
    item_table: pd.DataFrame | None = None
    item_vocab = None
    if item_path.is_file():
        item_table, _ = _atomic_item_table(item_path)
        item_vocab = Vocabulary(item_table["item_id"].to_numpy(dtype=object))

    user_path = root / f"{name}.user"
    user_src = None
    user_order = None
    if user_path.is_file():
        user_src, user_types = _read_atomic(user_path)
        user_src.require(["user_id"])
        user_ids, missing = _id_strings(user_src.frame["user_id"])
        if missing.any():
            pos = int(np.flatnonzero(missing)[0])
            raise user_src.error(pos, "user_id", "missing user id in the user table")
        dup = pd.Series(user_ids, dtype=object).duplicated().to_numpy()
        if dup.any():
            pos = int(np.flatnonzero(dup)[0])
            raise user_src.error(pos, "user_id", f"duplicate user id '{user_ids[pos]}'")
        user_order = user_ids

    inter, users, items = _assemble(
        src, cols, report, item_vocab=item_vocab, unknown_items="drop", user_order=user_order
    )
    if item_table is None:
        item_table = pd.DataFrame({"item_id": items.ids})

    user_table = None
    if user_src is not None and user_order is not None:
        frame = user_src.frame.copy()
        for col in frame.columns:
            if user_types.get(col) == "float":
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        frame["user_id"] = user_order
        pos = pd.Index(user_order).get_indexer(pd.Index(users.ids))
        user_table = frame.reindex(pos).reset_index(drop=True)  # -1 -> NaN row
        user_table["user_id"] = users.ids
        unused = int((~pd.Index(user_order).isin(pd.Index(users.ids))).sum())
        if unused:
            report.notes.append(f"{unused:,} users in {user_path.name} have no interactions")
    _repeat_note(report, inter, len(items))
    return Dataset(name, inter, users, items, item_table, user_table, report)


def _recbole_example_dir() -> Path:
    """The ml-100k example folder inside the installed recbole wheel (recbole is not imported)."""
    try:
        files = metadata.files("recbole")
    except metadata.PackageNotFoundError as exc:
        raise RecsageError(f"the bundled ML-100K data comes with recbole; {_INSTALL_HINT}") from exc
    for f in files or []:
        if "dataset_example/ml-100k/" in str(f) and str(f).endswith("ml-100k.inter"):
            return Path(str(f.locate())).parent
    raise RecsageError(f"the installed recbole has no dataset_example/ml-100k; {_INSTALL_HINT}")
