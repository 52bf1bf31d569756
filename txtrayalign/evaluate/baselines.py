"""Baselines evaluated beside every model: random, most frequent sentences, and a label oracle.

All return (N, k) int64 indices into the sentence bank, best first, so the metrics treat them like the
model's retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .retrieval import topk_similarity

LABEL_VALUES = (1.0, 0.0, -1.0)
# Oracle score = HIT_WEIGHT * hits - labelled values of the sentence = (HIT_WEIGHT - 1) * hits - mismatches.
# With at most 14 mismatches, more hits always win; among equal hits, fewer mismatching labels win.
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


def oracle_retrieval(
    query_labels: np.ndarray, bank_labels: np.ndarray, k: int, query_chunk: int = 4096, key_chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the k bank sentences with the most hits (earlier definition), exactly.

    Hits are counted per (sentence, observation) pair, so a set's hits are the sum of its sentences'
    hits and the k sentences with the most hits each maximise the total: this is exact, not greedy.
    Hence the oracle is an upper bound on hits@k, flat-hit@k and recall@k for every query (not on
    distinct-recall). Among sentences with equal hits it prefers fewer mismatching labels (labelled
    values that are not hits), then the lower bank index. Precision@k is a ratio and is NOT
    guaranteed to be maximal: a model retrieving a sentence with one matching label and nothing
    else beats, on precision, the oracle's sentence with three hits and one mismatch.

    Search: sentences with the same label row score the same, so the oracle scores the U distinct
    label rows (hits as an inner product of one-hot encodings, exact small integers in float32) with
    the chunked exact top-k of `retrieval`, rows ordered by their first bank index so that ties go to
    the lower index. The k best sentences all belong to the k best rows in that order (a sentence of a
    later row is beaten by the first sentence of each of k earlier rows), so the answer is the top k of
    the first k sentences of each of those k rows. Returns (indices (N, k), hits (N, k)).
    """
    from .metrics import label_row_codes

    bank = np.asarray(bank_labels, dtype=np.float32)
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the bank size ({bank.shape[0]})")
    first, members = _pattern_members(label_row_codes(bank), k)
    patterns = bank[first]
    q = one_hot_labels(query_labels)
    b = one_hot_labels(patterns)
    labelled = b.sum(axis=1, keepdims=True)
    q_aug = np.concatenate([q, np.ones((q.shape[0], 1), np.float32)], axis=1)
    b_aug = np.concatenate([HIT_WEIGHT * b, -labelled], axis=1)
    kp = min(k, patterns.shape[0])
    p_scores, p_index = topk_similarity(q_aug, b_aug, kp, query_chunk=query_chunk, key_chunk=key_chunk)
    cand = members[p_index].reshape(q.shape[0], kp * k)  # (N, kp*k), -1 = padding
    cand_scores = np.repeat(p_scores, k, axis=1)
    cand_scores[cand < 0] = -np.inf
    cand_key = np.where(cand < 0, np.iinfo(np.int64).max, cand)
    order = np.lexsort((cand_key, -cand_scores), axis=1)[:, :k]
    index = np.take_along_axis(cand, order, axis=1)
    scores = np.take_along_axis(cand_scores, order, axis=1)
    hits = np.ceil(scores / (HIT_WEIGHT - 1.0))  # score = 32 hits - mismatches, 0 <= mismatches <= 14
    return index, hits
