"""Which column of a user's file is what: explicit names first, then common names.

Every decision is recorded as a `ColumnUse` (file, column, what it became) so `recsage info`
can say exactly what was read from each file and what was ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsage.data.schema import LoadReport
from recsage.data.sources.readers import _Source

#: common names per role, tried in order (after lower-casing, spaces/dashes -> underscores)
INTERACTION_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userid", "user", "customer_id", "customerid", "visitor_id",
             "visitorid", "client_id", "member_id", "reviewer_id", "reviewerid"),
    "item": ("item_id", "itemid", "item", "product_id", "productid", "product", "sku",
             "movie_id", "movieid", "asin", "article_id", "track_id"),
    "time": ("timestamp", "time", "ts", "datetime", "date", "event_time", "created_at",
             "event_timestamp", "time_stamp", "unix_time", "unixtime"),
    "event": ("event_type", "event", "action", "behavior", "behaviour", "interaction_type",
              "event_name", "action_type"),
}  # fmt: skip


ITEM_ALIASES: dict[str, tuple[str, ...]] = {
    "item_id": ("item_id", "itemid", "id", "product_id", "productid", "sku", "movie_id",
                "movieid", "asin", "article_id", "track_id", "item"),
    "title": ("title", "name", "product_name", "item_name", "product_title", "movie_title"),
    "categories": ("categories", "category", "genres", "genre", "class", "category_name",
                   "department"),
    "text": ("text", "description", "overview", "plot", "summary", "desc",
             "product_description", "about"),
    "year": ("year", "release_year"),
    "brand": ("brand", "manufacturer", "maker"),
}  # fmt: skip


_HINT = (
    "name the columns with --user-col/--item-col/--time-col "
    "(user_col/item_col/time_col; --time-col '' if there is none)"
)


def _norm(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def find_column(columns: Sequence[object], aliases: Sequence[str]) -> str | None:
    """The first column whose normalised name is one of `aliases` (in alias order)."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), str(c))
    for alias in aliases:
        if alias in by_norm:
            return by_norm[alias]
    return None


@dataclass
class InteractionColumns:
    """Resolved column names of an interaction file (None = not present / not used)."""

    user: str
    item: str
    time: str | None
    value: str | None
    event: str | None


def resolve_interaction_columns(
    src: _Source,
    report: LoadReport,
    *,
    user: str | None,
    item: str | None,
    time: str | None,
    value: str | None,
    event: str | None,
) -> InteractionColumns:
    """Explicit names must exist; None means "find it by its common names".

    `time=""` means the file has no time column (file order is kept).
    """
    cols = [str(c) for c in src.frame.columns]

    def pick(role: str, explicit: str | None, required: bool) -> str | None:
        if explicit:
            src.require([explicit], _HINT)
            return explicit
        found = find_column(cols, INTERACTION_ALIASES[role])
        if found is None and required:
            src.require([INTERACTION_ALIASES[role][0]], _HINT)
        return found

    u = pick("user", user, True)
    i = pick("item", item, True)
    assert u is not None and i is not None
    t = None if time == "" else pick("time", time, False)
    if time is None and t is None:
        report.notes.append(
            "no time column (looked for " + ", ".join(INTERACTION_ALIASES["time"][:5])
            + ", ...): interactions keep file order; pass --time-col to name one"
        )  # fmt: skip
    if value:
        src.require([value], _HINT)
    ev = event if event else (None if event == "" else pick("event", None, False))
    if event:
        src.require([event], _HINT)
    res = InteractionColumns(u, i, t, value or None, ev)
    used = {u: "user id", i: "item id"}
    if t:
        used[t] = "timestamp"
    if value:
        used[value] = "value (rating / weight)"
    if ev:
        used[ev] = "event type"
    name = src.path.name
    for c in cols:
        if c in used:
            report.columns.append((name, c, used[c]))
        elif _norm(c) in ("rating", "ratings", "score", "stars", "value", "quantity", "qty"):
            report.columns.append((name, c, f"ignored (pass --value-col {c} to read it)"))
        else:
            report.columns.append((name, c, "ignored"))
    return res


def _split_categories(series: pd.Series, sep: str) -> pd.Series:
    text = series.astype(object).where(series.notna(), "").astype(str)
    return text.str.split(sep, regex=False).map(lambda xs: [x.strip() for x in xs if x.strip()])


def _holds_lists(series: pd.Series) -> bool:
    first = series.dropna()
    return bool(len(first)) and isinstance(first.iloc[0], list | tuple | np.ndarray)


def item_column_plan(
    src: _Source,
    *,
    id_col: str | None,
    title_col: str | None,
    category_col: str | None,
    text_cols: Sequence[str] | None,
    interaction_item_col: str | None = None,
) -> dict[str, str | list[str] | None]:
    """Which item-table column plays which role (explicit names must exist)."""
    cols = [str(c) for c in src.frame.columns]
    hint = "name it with --item-id-col / --title-col / --category-col / --text-col"

    def pick(role: str, explicit: str | None) -> str | None:
        if explicit:
            src.require([explicit], hint)
            return explicit
        return find_column(cols, ITEM_ALIASES[role])

    if id_col:
        item_id = pick("item_id", id_col)
    elif interaction_item_col is not None and interaction_item_col in cols:
        item_id = interaction_item_col
    else:
        item_id = find_column(cols, ITEM_ALIASES["item_id"])
        if item_id is None:
            src.require(
                ["item_id"],
                "name the id column with --item-id-col (item_id_col); looked for "
                + ", ".join(ITEM_ALIASES["item_id"][:6]) + ", ...",
            )  # fmt: skip
    texts: list[str] | None
    if text_cols:
        src.require(list(text_cols), hint)
        texts = list(text_cols)
    else:
        one = find_column(cols, ITEM_ALIASES["text"])
        texts = [one] if one else None
    plan: dict[str, str | list[str] | None] = {
        "item_id": item_id,
        "title": pick("title", title_col),
        "categories": pick("categories", category_col),
        "text": texts,
        "year": find_column(cols, ITEM_ALIASES["year"]),
        "brand": find_column(cols, ITEM_ALIASES["brand"]),
    }
    taken: set[str] = set()
    for role, col in list(plan.items()):  # one column, one role (first role wins)
        if isinstance(col, str):
            if col in taken:
                plan[role] = None
            taken.add(col)
    return plan


_NON_FINITE = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _numeric_attribute(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A column that holds only numbers (and NaN/inf words) as numbers, non-finite ones set
    to missing; other columns unchanged. Returns (values, mask of values made missing)."""
    from recsage.data.sources.assemble import _infer_numeric

    none = np.zeros(len(series), bool)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        inf = np.isinf(arr)
        return (pd.Series(np.where(inf, np.nan, arr)) if inf.any() else series), inf
    if len(series) == 0 or not all(isinstance(v, str) for v in series.dropna().iloc[:1]):
        return series, none
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    present = (text != "").to_numpy()
    word = text.str.lower().isin(_NON_FINITE).to_numpy()
    nums = pd.to_numeric(text.where(present & ~word, None), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    if not present.any() or (present & ~word & np.isnan(nums)).any():
        return series, none  # text, not numbers
    if not word.any():
        return _infer_numeric(series), none
    return pd.Series(np.where(word, np.nan, nums)), word & present


def build_item_table(
    src: _Source,
    report: LoadReport,
    *,
    id_col: str | None = None,
    title_col: str | None = None,
    category_col: str | None = None,
    category_sep: str = "|",
    text_cols: Sequence[str] | None = None,
    interaction_item_col: str | None = None,
) -> pd.DataFrame:
    """Item table in file order with `item_id` first and canonical role columns
    (title, categories as lists, text, year, brand); other columns kept as attributes.

    Every column's fate is recorded in `report.columns`; non-finite numbers in numeric
    attributes become missing and are counted in `report.notes`.
    """
    from recsage.data.sources.assemble import _check_unique_ids, _id_strings, _infer_numeric

    plan = item_column_plan(
        src, id_col=id_col, title_col=title_col, category_col=category_col,
        text_cols=text_cols, interaction_item_col=interaction_item_col,
    )  # fmt: skip
    frame = src.frame
    name = src.path.name
    id_name = str(plan["item_id"])
    ids, missing = _id_strings(frame[id_name])
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise src.error(pos, id_name, "missing item id in the item table")
    _check_unique_ids(src, id_name, ids)
    out = pd.DataFrame({"item_id": ids})
    uses: dict[str, str] = {id_name: "item id"}
    title = plan["title"]
    if isinstance(title, str):
        out["title"] = frame[title].astype(object).where(frame[title].notna(), None).to_numpy()
        uses[title] = "title"
    cat = plan["categories"]
    if isinstance(cat, str):
        series = frame[cat]
        lists = (
            series.map(lambda v: [str(x) for x in v] if v is not None else [])
            if _holds_lists(series)
            else _split_categories(series, category_sep)
        )
        out["categories"] = lists.to_numpy()
        n_distinct = len({c for row in lists for c in row})
        split_note = "" if _holds_lists(series) else f"split on '{category_sep}', "
        uses[cat] = f"categories ({split_note}{n_distinct:,} distinct)"
    texts = plan["text"]
    if isinstance(texts, list):
        parts = [frame[c].astype(object).where(frame[c].notna(), "").astype(str) for c in texts]
        joined = parts[0]
        for p in parts[1:]:
            joined = joined.str.cat(p, sep=". ").str.strip(". ")
        out["text"] = joined.where(joined.str.strip() != "", None).to_numpy()
        for c in texts:
            uses[c] = "text (item description" + (", joined)" if len(texts) > 1 else ")")
    for role in ("year", "brand"):
        col = plan[role]
        if isinstance(col, str) and col not in uses:
            out[role] = (_infer_numeric(frame[col]) if role == "year" else frame[col]).to_numpy()
            uses[col] = role
    for col in frame.columns:
        c = str(col)
        if c in uses:
            continue
        if c.startswith("Unnamed:"):
            empty = frame[col].isna().all()
            uses[c] = "ignored (" + ("empty; a trailing delimiter?" if empty else "no name") + ")"
            continue
        values, bad = _numeric_attribute(frame[col])
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            where = f"line {int(src.lines[pos])}" if src.lines is not None else f"row {pos + 1}"
            report.notes.append(
                f"{name}: {int(bad.sum()):,} non-finite value(s) (NaN/inf) in '{c}' set to "
                f"missing (first at {where})"
            )
        out[c if c not in out.columns else f"{c}_attr"] = values.to_numpy()
        kind = "number" if pd.api.types.is_numeric_dtype(values.dtype) else "text"
        uses[c] = f"attribute ({kind}; kept in the item table)"
    if not any(k in out.columns for k in ("title", "text", "categories")):
        report.notes.append(
            f"{name}: no title, description or category column found (looked for "
            f"{', '.join(ITEM_ALIASES['title'][:3])}, {', '.join(ITEM_ALIASES['text'][:3])}, "
            f"{', '.join(ITEM_ALIASES['categories'][:3])}); text search and explanations only "
            "see item ids: name them with --title-col / --text-col / --category-col"
        )
    for col in frame.columns:
        report.columns.append((name, str(col), uses.get(str(col), "ignored")))
    return out
