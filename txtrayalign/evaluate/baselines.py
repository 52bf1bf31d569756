"""Baselines evaluated beside every model: random, most frequent sentences, and a label oracle.

All return (N, k) int64 indices into the sentence bank, best first, so the metrics treat them like the
model's retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABEL_VALUES = (1.0, 0.0, -1.0)
# Oracle score = HIT_WEIGHT * new hits - labelled values of the sentence. With at most 14 labelled
# values, more new hits always win; among equal new hits, fewer labelled values win.
HIT_WEIGHT = 33.0


def random_retrieval(n_queries: int, bank_size: int, k: int, seed: int | Sequence[int]) -> np.ndarray:
    """k distinct bank indices per query, uniformly at random (seeded `numpy.random.Generator`)."""
    if not 1 <= k <= bank_size:
        raise ValueError(f"k={k} must be between 1 and the bank size ({bank_size})")
    rng = np.random.default_rng(seed)
    out = np.empty((n_queries, k), dtype=np.int64)
    # Draw with replacement and redraw only the rows that repeat an index: few rows when k << bank size.
    out[:] = rng.integers(0, bank_size, size=(n_queries, k))
    while True:
        s = np.sort(out, axis=1)
        bad = np.nonzero((s[:, 1:] == s[:, :-1]).any(axis=1))[0]
        if bad.size == 0:
            return out
        if k * 4 > bank_size:
            for i in bad:
                out[i] = rng.choice(bank_size, size=k, replace=False)
        else:
            out[bad] = rng.integers(0, bank_size, size=(bad.size, k))


def random_ranks(n_queries: int, n_candidates: int, seed: int | Sequence[int]) -> np.ndarray:
    """Ranks of the true item under a random ordering of `n_candidates`: uniform on 1..n_candidates."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, n_candidates + 1, size=n_queries).astype(np.float64)


def most_frequent(text_counts: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most frequent bank texts (count descending, lower index first among ties)."""
    counts = np.asarray(text_counts)
    if not 1 <= k <= counts.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the bank size ({counts.shape[0]})")
    order = np.lexsort((np.arange(counts.shape[0]), -counts))
    return order[:k].astype(np.int64)


def one_hot_labels(labels: np.ndarray) -> np.ndarray:
    """(N, 14 * 3) float32 indicators of value 1, 0 and -1 per observation (NaN: all zero)."""
    lab = np.asarray(labels, dtype=np.float32)
    return np.concatenate([(lab == v) for v in LABEL_VALUES], axis=1).astype(np.float32)


def _pattern_members(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct label rows ordered by first occurrence: (first bank index of each (U,), the first k
    bank indices of each (U, k), padded with -1)."""
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")  # pattern order: by lowest member index
    position = np.empty_like(by_first)
    position[by_first] = np.arange(by_first.size)
    group = position[inverse.ravel()]
    order = np.lexsort((np.arange(group.size), group))  # members of each pattern by index
    sorted_group = group[order]
    starts = np.searchsorted(sorted_group, np.arange(by_first.size))
    rank = np.arange(group.size) - starts[sorted_group]
    keep = rank < k
    members = np.full((by_first.size, k), -1, dtype=np.int64)
    members[sorted_group[keep], rank[keep]] = order[keep]
    return first[by_first], members


def _greedy_pick(score: np.ndarray, chosen: np.ndarray, t: int, first: np.ndarray, members: np.ndarray,
                 n_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step t of the oracle for a block of queries: the label row each one picks (most new hits and
    fewest labels, i.e. the highest `score`, then the lowest bank index) and how many of that row's
    sentences it took before. `score` (queries, U) is changed in place."""
    rows = np.arange(score.shape[0])
    k = chosen.shape[1]
    # A label row offers its lowest untaken sentence: first[p] for rows not picked yet (first
    # grows with p, so argmax's first maximum is the lowest offer among them); rows picked
    # before are compared separately and drop out when all their sentences are taken.
    cand_p = np.empty((rows.size, t + 1), dtype=np.int64)
    cand_score = np.empty((rows.size, t + 1), dtype=np.float64)
    cand_offer = np.empty((rows.size, t + 1), dtype=np.int64)
    for s in range(t):
        p = chosen[:, s]
        taken = (chosen[:, :t] == p[:, None]).sum(axis=1)
        full = taken >= n_members[p]
        cand_p[:, s] = p
        cand_score[:, s] = np.where(full, -np.inf, score[rows, p])
        cand_offer[:, s] = np.where(full, -1, members[p, np.minimum(taken, k - 1)])
    for s in range(t):
        score[rows, chosen[:, s]] = -np.inf
    fresh = score.argmax(axis=1)
    cand_p[:, t] = fresh
    cand_score[:, t] = score[rows, fresh]
    cand_offer[:, t] = first[fresh]
    pick = np.lexsort((cand_offer, -cand_score), axis=1)[:, 0]
    best = cand_p[rows, pick]
    return best, (chosen[:, :t] == best[:, None]).sum(axis=1)


def oracle_retrieval(
    query_labels: np.ndarray, bank_labels: np.ndarray, k: int, max_block_elements: int = 1 << 22
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, k distinct bank sentences chosen greedily to cover the query's labels.

    Under the metrics' definition (`metrics`: a query observation counts once when any retrieved
    sentence has its value) the best k sentences form a maximum-coverage problem. The oracle solves it
    greedily: step t picks the sentence with the largest score HIT_WEIGHT * (query observations it
    hits that no earlier pick hit) - (labelled values of the sentence), i.e. most new hits first, then
    fewest labelled values (each one enlarges precision's denominator), then the lowest bank index.
    Once everything is covered it fills up with the sentences carrying the fewest labels (blank first).

    Guarantees: step 1 is the single sentence with the most hits, so flat-hit@k and every @1 figure
    except precision are the maximum possible; for k > 1 greedy coverage reaches at least (1 - 1/e)
    of the best possible hits (the classic bound) and in practice nearly all of them, but it is not
    proven optimal. Precision is a ratio and is not guaranteed maximal: a sentence with one matching
    label and nothing else beats, on precision, the oracle's sentence with three hits and one mismatch.

    Search: sentences with the same label row score the same, so the U distinct label rows are scored
    (hits as an inner product of one-hot encodings, exact small integers in float32), in blocks of
    queries of at most `max_block_elements` scores. Returns (indices (N, k), new hits per pick (N, k)).
    """
    from .metrics import label_row_codes

    bank = np.asarray(bank_labels, dtype=np.float32)
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the bank size ({bank.shape[0]})")
    first, members = _pattern_members(label_row_codes(bank), k)
    n_members = (members >= 0).sum(axis=1)
    b = one_hot_labels(bank[first])  # (U, 42)
    b_t = np.ascontiguousarray(HIT_WEIGHT * b.T)
    labelled = b.sum(axis=1)
    q_all = one_hot_labels(query_labels)
    n, u = q_all.shape[0], b.shape[0]
    index = np.empty((n, k), dtype=np.int64)
    new_hits = np.empty((n, k), dtype=np.float64)
    block = max(1, max_block_elements // max(u, 1))
    for start in range(0, n, block):
        uncovered = q_all[start : start + block].copy()
        rows = np.arange(uncovered.shape[0])
        chosen = np.empty((rows.size, k), dtype=np.int64)
        for t in range(k):
            score = uncovered @ b_t
            score -= labelled
            best, taken = _greedy_pick(score, chosen, t, first, members, n_members)
            chosen[:, t] = best
            index[start + rows, t] = members[best, taken]
            new_hits[start + rows, t] = (uncovered * b[best]).sum(axis=1)
            uncovered *= 1.0 - b[best]
    return index, new_hits
