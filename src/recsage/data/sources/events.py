"""Event types with training weights: `--event-weights purchase=3,cart=2,view=1`."""

from __future__ import annotations

import math

from recsage.errors import ConfigError


def parse_event_weights(spec: str | dict[str, float] | None) -> dict[str, float] | None:
    """`"purchase=3,cart=2,view=1"` (or a mapping) -> {type: weight}, validated.

    Weights must be finite and >= 0; a weight of 0 drops that event type from the data.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    pairs: list[tuple[str, object]]
    if isinstance(spec, dict):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = []
        for part in spec.split(","):
            if not part.strip():
                continue
            key, sep, text = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"bad --event-weights entry {part.strip()!r}: expected TYPE=WEIGHT, "
                    "e.g. purchase=3,cart=2,view=1"
                )
            pairs.append((key.strip(), text.strip()))
    out: dict[str, float] = {}
    for name, value in pairs:
        try:
            weight = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"--event-weights: weight of '{name}' is not a number: {value!r}"
            ) from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"--event-weights: weight of '{name}' must be finite and >= 0, got {value}"
            )
        if name in out:
            raise ConfigError(f"--event-weights: '{name}' is given twice")
        out[name] = weight
    if not out:
        return None
    if all(w == 0 for w in out.values()):
        raise ConfigError("--event-weights: every weight is 0, nothing would be left to train on")
    return out


def parse_event_list(spec: str | None) -> tuple[str, ...] | None:
    """`"purchase,cart"` -> ("purchase", "cart"); None/empty -> None (every event counts)."""
    if spec is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in spec.split(",") if p.strip()))
    return names or None
