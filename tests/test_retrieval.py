"""Chunked exact top-k retrieval, ranks and the baselines' selection rules."""

from __future__ import annotations

import numpy as np
import pytest

from txtrayalign.evaluate.baselines import most_frequent, oracle_retrieval, random_retrieval
from txtrayalign.evaluate.retrieval import rank_of_targets, topk_similarity


def reference_topk(q: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full scores, then a full stable sort per query: score descending, lower index first."""
    scores = q.astype(np.float64) @ keys.astype(np.float64).T
    cols = np.broadcast_to(np.arange(keys.shape[0]), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize(("query_chunk", "key_chunk"), [(1, 1), (3, 7), (5, 13), (17, 29), (1000, 1000)])
def test_chunked_topk_equals_full_sort_with_many_ties(query_chunk, key_chunk):
    rng = np.random.default_rng(1)
    # Small integer vectors: exact float32 products and many equal scores, so tie-breaking matters.
    q = rng.integers(-2, 3, size=(23, 6)).astype(np.float32)
    keys = rng.integers(-2, 3, size=(101, 6)).astype(np.float32)
    s, i = topk_similarity(q, keys, 9, query_chunk=query_chunk, key_chunk=key_chunk)
    ref_s, ref_i = reference_topk(q, keys, 9)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(s, ref_s.astype(np.float32))
    assert s.dtype == np.float32 and i.dtype == np.int64


def test_chunked_topk_on_real_valued_float16_embeddings():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((40, 32)).astype(np.float16)
    keys = rng.standard_normal((517, 32)).astype(np.float16)
    _, i = topk_similarity(q, keys, 5, query_chunk=7, key_chunk=61)
    _, ref_i = reference_topk(q.astype(np.float32), keys.astype(np.float32), 5)
    np.testing.assert_array_equal(i, ref_i)


def test_identical_keys_lower_index_wins():
    keys = np.ones((50, 4), dtype=np.float32)
    q = np.ones((3, 4), dtype=np.float32)
    _, i = topk_similarity(q, keys, 4, key_chunk=7)
    np.testing.assert_array_equal(i, np.tile(np.arange(4), (3, 1)))


def test_k_equal_to_bank_and_bad_arguments():
    keys = np.eye(3, dtype=np.float32)
    q = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    s, i = topk_similarity(q, keys, 3, key_chunk=2)
    np.testing.assert_array_equal(i, [[1, 2, 0]])
    np.testing.assert_allclose(s, [[1.0, 0.5, 0.0]])
    with pytest.raises(ValueError, match="k=4"):
        topk_similarity(q, keys, 4)
    with pytest.raises(ValueError, match="widths differ"):
        topk_similarity(q[:, :2], keys, 1)


def test_rank_of_targets_counts_better_and_earlier_ties():
    keys = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    ranks = rank_of_targets(q, keys, np.array([0, 1, 2]), max_block_elements=6)  # chunks of 2 queries
    np.testing.assert_array_equal(ranks, [1, 2, 3])


def test_random_retrieval_distinct_deterministic_and_seeded():
    a = random_retrieval(200, 12, 10, seed=3)
    assert all(len(set(row)) == 10 for row in a)
    assert a.min() >= 0 and a.max() < 12
    np.testing.assert_array_equal(a, random_retrieval(200, 12, 10, seed=3))
    assert not np.array_equal(a, random_retrieval(200, 12, 10, seed=4))
    with pytest.raises(ValueError):
        random_retrieval(2, 3, 4, seed=0)


def test_most_frequent_orders_by_count_then_index():
    np.testing.assert_array_equal(most_frequent(np.array([2, 5, 1, 5, 2]), 4), [1, 3, 0, 4])


def test_oracle_k1_equals_brute_force_lexicographic_choice():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n, m = int(rng.integers(1, 15)), int(rng.integers(1, 120))
        ql = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 14))
        bl = rng.choice([1.0, 0.0, -1.0, np.nan], size=(m, 14), p=[0.06, 0.06, 0.03, 0.85])
        idx, hits = oracle_retrieval(ql, bl, 1, max_block_elements=7)
        pair_hits = (bl[None] == ql[:, None]).sum(axis=2)
        score = 32 * pair_hits - ((~np.isnan(bl)).sum(axis=1)[None] - pair_hits)
        cols = np.broadcast_to(np.arange(m), score.shape)
        ref = np.lexsort((cols, -score), axis=1)[:, :1]
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_array_equal(hits, np.take_along_axis(pair_hits, idx, axis=1))


@pytest.mark.parametrize("max_block_elements", [1, 37, 10_000])
def test_rank_of_targets_equals_position_in_full_stable_sort(max_block_elements):
    rng = np.random.default_rng(9)
    q = rng.integers(-2, 3, size=(19, 5)).astype(np.float32)
    keys = rng.integers(-2, 3, size=(31, 5)).astype(np.float32)
    target = rng.integers(0, 31, size=19)
    _, order = reference_topk(q, keys, 31)
    expected = [int(np.nonzero(order[i] == target[i])[0][0]) + 1 for i in range(19)]
    np.testing.assert_array_equal(
        rank_of_targets(q, keys, target, max_block_elements=max_block_elements), expected
    )
