"""Item/user text templates: the one renderer of an item (or user) as text."""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from recsage.errors import ConfigError, DataError

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


_FORMATTER = string.Formatter()


ATTRIBUTES_FIELD = "attributes"


@dataclass(frozen=True)
class _Segment:
    text: str
    fields: tuple[str, ...]
    optional: bool


def _segment(text: str, *, optional: bool, part: str) -> _Segment:
    if not optional and ("[" in text or "]" in text):
        raise ConfigError(f"unbalanced or nested [...] in template part {part!r}")
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise ConfigError(f"bad template part {part!r}: {exc}") from None
    fields = tuple(name for _, name, _, _ in parsed if name is not None)
    for name in fields:
        if not name.isidentifier():
            raise ConfigError(
                f"template part {part!r}: field {{{name}}} must be a plain column name"
            )
    try:  # values are rendered as strings, so the format spec must accept a string
        text.format_map(dict.fromkeys(fields, "x"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad format spec in template part {part!r}: {exc}") from None
    return _Segment(text, fields, optional)


def _parse_part(part: str) -> tuple[_Segment, ...]:
    segments: list[_Segment] = []
    pos = 0
    for match in _OPTIONAL.finditer(part):
        if match.start() > pos:
            segments.append(_segment(part[pos : match.start()], optional=False, part=part))
        segments.append(_segment(match.group(1), optional=True, part=part))
        pos = match.end()
    if pos < len(part):
        segments.append(_segment(part[pos:], optional=False, part=part))
    return tuple(segments)


def _format_value(value: object) -> str | None:
    """One cell as display text; None when missing (None, NaN, empty string or list)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        values = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        items = [s for s in (_format_value(v) for v in values) if s]
        return ", ".join(items) or None
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        f = float(value)
        if np.isnan(f):
            return None
        return str(int(f)) if f.is_integer() else f"{f:g}"
    try:
        if pd.isna(cast(Any, value)):  # pd.NA, NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(value).strip() or None


@dataclass(frozen=True)
class TextTemplate:
    """Render one text per table row from parts such as ``"Brand: {brand}"``.

    Each part names columns in ``{braces}`` (format specs allowed). A part is dropped when a
    field outside ``[...]`` is missing, or when none of its fields has a value; a ``[...]``
    segment inside a part is dropped on its own when one of its fields is missing. Kept parts
    are joined with `sep`. ``{attributes}`` renders every column the template does not name
    (minus `exclude`) as ``"name: value; ..."``. `aliases` maps a field to the columns tried in
    order; `value_maps` rewrites values (e.g. ``{"gender": {"M": "male"}}``).
    """

    parts: tuple[str, ...]
    sep: str = ". "
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.parts, str):
            object.__setattr__(self, "parts", (self.parts,))
        parsed = tuple(_parse_part(p) for p in self.parts)
        object.__setattr__(self, "_parsed", parsed)

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names used by the template, in first-use order."""
        seen: dict[str, None] = {}
        for part in self._segments():
            for seg in part:
                seen.update(dict.fromkeys(seg.fields))
        return tuple(seen)

    @property
    def fingerprint(self) -> str:
        """Short hash of the template configuration (part of a cache/index key)."""
        payload = {
            "type": type(self).__name__,
            "parts": list(self.parts),
            "sep": self.sep,
            "aliases": {k: list(v) for k, v in sorted(self.aliases.items())},
            "value_maps": {k: dict(sorted(v.items())) for k, v in sorted(self.value_maps.items())},
            "exclude": list(self.exclude),
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def render(self, table: pd.DataFrame) -> list[str]:
        """One text per row of `table`, in row order."""
        columns = self._resolve(table.columns)
        n = len(table)
        values: dict[str, list[str | None]] = {}
        for name in self.fields:
            if name == ATTRIBUTES_FIELD and columns[name] is None:
                values[name] = self._attributes(table, set(c for c in columns.values() if c))
            elif columns[name] is None:
                values[name] = [None] * n
            else:
                series = table[columns[name]]
                values[name] = [self._map(name, _format_value(v)) for v in series.tolist()]
        if not values:
            return [self._render_row({}) for _ in range(n)]
        names = list(values)
        return [
            self._render_row(dict(zip(names, row, strict=True)))
            for row in zip(*values.values(), strict=True)
        ]

    def render_one(self, record: Mapping[str, object]) -> str:
        """Text for a single record given as a mapping of column -> value."""
        return self.render(pd.DataFrame([dict(record)]))[0]

    # internals

    def _segments(self) -> tuple[tuple[_Segment, ...], ...]:
        parsed: tuple[tuple[_Segment, ...], ...] = object.__getattribute__(self, "_parsed")
        return parsed

    def _resolve(self, available: pd.Index) -> dict[str, str | None]:
        present = {str(c) for c in available}
        out: dict[str, str | None] = {}
        for name in self.fields:
            candidates = self.aliases.get(name, ()) or (name,)
            if name not in candidates:
                candidates = (name, *candidates)
            out[name] = next((c for c in candidates if c in present), None)
        return out

    def _map(self, name: str, value: str | None) -> str | None:
        mapping = self.value_maps.get(name)
        if value is None or not mapping:
            return value
        return mapping.get(value, value)

    def _attributes(self, table: pd.DataFrame, used: set[str]) -> list[str | None]:
        skip = used | set(self.exclude)
        extra = [c for c in table.columns if str(c) not in skip and not str(c).startswith("_")]
        cols = [
            (str(c).replace("_", " "), [self._map(str(c), _format_value(v)) for v in table[c]])
            for c in extra
        ]
        out: list[str | None] = []
        for i in range(len(table)):
            pairs = [f"{label}: {vals[i]}" for label, vals in cols if vals[i] is not None]
            out.append("; ".join(pairs) or None)
        return out

    def _render_row(self, values: Mapping[str, str | None]) -> str:
        rendered: list[str] = []
        for part in self._segments():
            pieces: list[str] = []
            used_any = False
            has_fields = False
            for seg in part:
                has_fields = has_fields or bool(seg.fields)
                if any(values.get(f) is None for f in seg.fields):
                    if seg.optional:
                        continue
                    pieces = []
                    used_any = False
                    break
                used_any = used_any or bool(seg.fields)
                pieces.append(seg.text.format_map(values))
            text = "".join(pieces).strip()
            if text and (used_any or not has_fields):
                rendered.append(text)
        return self.sep.join(rendered)


ITEM_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title", "name"),
    "year": ("year", "release_year"),
    "categories": ("categories", "genres", "genre", "category"),
    "brand": ("brand",),
    "text": ("text", "description", "overview", "plot"),
}


USER_ALIASES: dict[str, tuple[str, ...]] = {
    "age": ("age",),
    "gender": ("gender", "sex"),
    "occupation": ("occupation", "job"),
    "preference": ("preference", "preferences", "stated_preference"),
}


_ID_COLUMNS = ("id", "item_id", "user_id", "external_id")


@dataclass(frozen=True)
class ItemTextTemplate(TextTemplate):
    """Item text: ``"Toy Story (1995). Categories: Animation, Comedy. Brand: ... . <text>"``.

    Add ``"{attributes}"`` to `parts` to also render the table's other columns.
    """

    parts: tuple[str, ...] = (
        "{title}[ ({year})]",
        "Categories: {categories}",
        "Brand: {brand}",
        "{text}",
    )
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(ITEM_ALIASES))
    exclude: tuple[str, ...] = _ID_COLUMNS


@dataclass(frozen=True)
class UserTextTemplate(TextTemplate):
    """User text from demographics plus optional stated preferences.

    E.g. ``"A 24-year-old male technician. Preferences: likes space opera"``.
    """

    parts: tuple[str, ...] = (
        "A[ {age}-year-old][ {gender}][ {occupation}]",
        "Preferences: {preference}",
    )
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(USER_ALIASES))
    value_maps: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"gender": {"M": "male", "F": "female", "m": "male", "f": "female"}}
    )
    exclude: tuple[str, ...] = _ID_COLUMNS

    def render(
        self,
        table: pd.DataFrame,
        preferences: Sequence[str | None] | pd.Series | None = None,
    ) -> list[str]:
        """One text per user row; `preferences` (one per row, None to skip) is appended."""
        if preferences is not None:
            prefs = list(preferences)
            if len(prefs) != len(table):
                raise DataError(
                    f"got {len(prefs)} preference texts for {len(table)} users", column="preference"
                )
            table = table.assign(preference=prefs)
        return super().render(table)
