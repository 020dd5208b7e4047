"""Merge channel outputs: dedupe, per-channel quotas, interleave by rank, keep provenance."""

from __future__ import annotations

import numpy as np

from recsage.types import CandidateBatch


def merge_channels(
    outputs: list[tuple[str, np.ndarray, np.ndarray]],
    *,
    max_candidates: int,
    quotas: dict[str, int] | None = None,
) -> CandidateBatch:
    """Union of channel lists per row, interleaved round-robin by each channel's rank.

    Each output is (channel name, items (B, n_c), scores (B, n_c)). An item found by several
    channels appears once, with every channel's score (`<name>`) and rank (`<name>_rank`,
    0-based) and a bitmask of its sources. Rows keep at most `max_candidates` items.
    """
    quotas = quotas or {}
    names = tuple(name for name, _, _ in outputs)
    if len(names) > 62:
        raise ValueError("at most 62 channels can be merged")
    n_rows = outputs[0][1].shape[0] if outputs else 0
    rows_l, items_l, chan_l, rank_l, score_l = [], [], [], [], []
    for c, (name, items, scores) in enumerate(outputs):
        q = min(items.shape[1], quotas.get(name, items.shape[1]))
        it = items[:, :q]
        r = np.broadcast_to(np.arange(q), it.shape)
        ok = it >= 0
        rows_l.append(np.broadcast_to(np.arange(n_rows)[:, None], it.shape)[ok])
        items_l.append(it[ok])
        chan_l.append(np.full(int(ok.sum()), c))
        rank_l.append(r[ok])
        score_l.append(scores[:, :q][ok])
    if not outputs or sum(len(x) for x in items_l) == 0:
        empty = np.full((n_rows, 0), -1, np.int64)
        return CandidateBatch(empty, {}, np.zeros((n_rows, 0), np.int64), names)
    row = np.concatenate(rows_l)
    item = np.concatenate(items_l).astype(np.int64)
    chan = np.concatenate(chan_l)
    rank = np.concatenate(rank_l)
    score = np.concatenate(score_l).astype(np.float32)
    n_ch = max(1, len(names))
    priority = rank * n_ch + chan  # round-robin: rank 0 of every channel first

    order = np.lexsort((priority, item, row))
    row, item, chan = row[order], item[order], chan[order]
    rank, score, priority = rank[order], score[order], priority[order]
    new_group = np.ones(len(row), bool)
    new_group[1:] = (row[1:] != row[:-1]) | (item[1:] != item[:-1])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    g_row, g_item, g_priority = row[starts], item[starts], priority[starts]
    g_sources = np.bitwise_or.reduceat(np.left_shift(np.int64(1), chan.astype(np.int64)), starts)

    # position of each unique item within its row, by priority
    g_order = np.lexsort((g_priority, g_row))
    sorted_rows = g_row[g_order]
    row_start = np.searchsorted(sorted_rows, np.arange(n_rows))
    pos_sorted = np.arange(len(g_order)) - row_start[sorted_rows]
    pos = np.empty(len(g_order), np.int64)
    pos[g_order] = pos_sorted
    counts = np.bincount(g_row, minlength=n_rows)
    width = int(min(max_candidates, counts.max(initial=0)))
    keep = pos < width

    out_items = np.full((n_rows, width), -1, np.int64)
    out_sources = np.zeros((n_rows, width), np.int64)
    out_items[g_row[keep], pos[keep]] = g_item[keep]
    out_sources[g_row[keep], pos[keep]] = g_sources[keep]
    columns: dict[str, np.ndarray] = {}
    occ_pos = pos[group]
    occ_keep = occ_pos < width
    for c, name in enumerate(names):
        sel = occ_keep & (chan == c)
        col = np.full((n_rows, width), np.nan, np.float32)
        col[row[sel], occ_pos[sel]] = score[sel]
        rk = np.full((n_rows, width), np.nan, np.float32)
        rk[row[sel], occ_pos[sel]] = rank[sel]
        columns[name] = col
        columns[f"{name}_rank"] = rk
    return CandidateBatch(out_items, columns, out_sources, names)
