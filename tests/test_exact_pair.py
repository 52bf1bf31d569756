"""Exact-pair retrieval both ways: hand-worked ranks with ties, missing partners, the exact random law."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from txtrayalign.evaluate import exact_pair
from txtrayalign.evaluate.bootstrap import resample_counts

# Reports of studies 10, 20, 30; r30 equals r10 (a tie for every query).
REPORTS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
REPORT_STUDY = np.array([10, 20, 30])
# Images: A (10), B (20), C (30), D (40: no report), E (20: a second image of study 20).
IMAGES = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6], [1.0, 0.0]])
IMAGE_STUDY = np.array([10, 20, 30, 40, 20])


def test_image_to_text_ranks_by_hand() -> None:
    ranks = exact_pair.partner_ranks(IMAGES, REPORTS, IMAGE_STUDY, REPORT_STUDY)
    # A: own 1, r30 tied at 1 -> 1 + 0.5. B: own .8 above .6, .6 -> 1. C: own 0; r20 (1) above, r10 (0) tied
    # -> 2.5. D: no report -> NaN. E: own 0; r10 and r30 (1) above -> 3.
    np.testing.assert_array_equal(ranks, [1.5, 1.0, 2.5, np.nan, 3.0])


def test_text_to_image_counts_any_image_of_the_study() -> None:
    ranks = exact_pair.partner_ranks(REPORTS, IMAGES, REPORT_STUDY, IMAGE_STUDY)
    # r10: A scores 1, E (study 20) ties at 1 -> 1.5. r20: partners B (.8) and E (0): best .8, C (1) above
    # -> 2 (E, its own study's weaker image, is not counted against it). r30: partner C (0); A, B, D, E above -> 5.
    np.testing.assert_array_equal(ranks, [1.5, 2.0, 5.0])


def test_chunking_does_not_change_ranks() -> None:
    rng = np.random.default_rng(3)
    q = rng.integers(-2, 3, (37, 4)).astype(float)  # small integers: exact products, many ties
    c = rng.integers(-2, 3, (23, 4)).astype(float)
    qg = rng.integers(0, 15, 37)
    for cg in (rng.integers(0, 15, 23), rng.permutation(23)):  # several partners; one each (by column)
        check_against_plain_count(q, c, qg, cg)


def check_against_plain_count(q: np.ndarray, c: np.ndarray, qg: np.ndarray, cg: np.ndarray) -> None:
    whole = exact_pair.partner_ranks(q, c, qg, cg)
    np.testing.assert_array_equal(exact_pair.partner_ranks(q, c, qg, cg, max_block_elements=50), whole)
    # against a plain definition: sort-free count per query
    s = q.astype(np.float32) @ c.astype(np.float32).T
    for i in range(37):
        part = cg == qg[i]
        if not part.any():
            assert np.isnan(whole[i])
            continue
        best = s[i, part].max()
        assert whole[i] == 1 + (s[i, ~part] > best).sum() + 0.5 * (s[i, ~part] == best).sum()


def test_metrics_by_hand_and_missing_left_out() -> None:
    ranks = np.array([1.5, 1.0, 2.5, np.nan, 3.0])
    got = exact_pair.rank_metrics(ranks, ks=(1, 2, 3))
    assert got["recall@1"]["value"] == pytest.approx(1 / 4)  # only B; 1.5 is no hit at 1
    assert got["recall@2"]["value"] == pytest.approx(2 / 4)
    assert got["recall@3"]["value"] == pytest.approx(1.0)
    assert got["mrr"]["value"] == pytest.approx((1 / 1.5 + 1 + 1 / 2.5 + 1 / 3) / 4)
    assert got["mean_rank"]["value"] == pytest.approx(2.0)
    assert got["median_rank"]["value"] == pytest.approx(2.0)  # (1.5 + 2.5) / 2
    result = exact_pair.direction_result(ranks, np.array([1, 1, 1, 0, 1]), 3)
    assert result["missing"] == 1 and result["n_queries"] == 5


def test_weighted_median_is_the_median_of_the_repeated_sample() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(1, 20, 30).astype(float)
    counts = resample_counts(30, 50, 1)
    got = exact_pair.weighted_median(values, counts, chunk=7)
    want = [np.median(np.repeat(values, c.astype(int))) for c in counts]
    np.testing.assert_array_equal(got, want)


def test_intervals_are_those_of_the_resampled_queries() -> None:
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 30, 40).astype(float)
    counts = resample_counts(40, 200, 2)
    got = exact_pair.rank_metrics(ranks, counts)
    boot = [np.mean(np.repeat(ranks, c.astype(int)) <= 5) for c in counts]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert got["recall@5"]["ci_low"] == pytest.approx(lo) and got["recall@5"]["ci_high"] == pytest.approx(hi)
    boot_median = [np.median(np.repeat(ranks, c.astype(int))) for c in counts]
    assert got["median_rank"]["ci_low"] == pytest.approx(np.percentile(boot_median, 2.5))


@pytest.mark.parametrize("m_total,m", [(5, 1), (5, 2), (6, 3)])
def test_random_rank_law_by_enumeration(m_total: int, m: int) -> None:
    law = exact_pair.random_rank_law(m_total, m)
    first = [min(pos) + 1 for pos in itertools.combinations(range(m_total), m)]
    want = np.bincount(first, minlength=m_total + 1)[1:] / math.comb(m_total, m)
    np.testing.assert_allclose(law, want, atol=1e-12)


def test_random_baseline_is_k_over_n_for_one_partner() -> None:
    got = exact_pair.random_rank_metrics(50, np.array([1, 1, 1, 0]), ks=(1, 5, 10))
    assert got["recall@1"]["value"] == pytest.approx(1 / 50)
    assert got["recall@5"]["value"] == pytest.approx(5 / 50)
    assert got["recall@10"]["value"] == pytest.approx(10 / 50)
    assert got["mean_rank"]["value"] == pytest.approx(51 / 2)
    assert got["mrr"]["value"] == pytest.approx(sum(1 / r for r in range(1, 51)) / 50)
    two = exact_pair.random_rank_metrics(5, np.array([2]), ks=(1,))
    assert two["recall@1"]["value"] == pytest.approx(1 - math.comb(3, 1) / math.comb(5, 1))
    assert two["mean_rank"]["value"] == pytest.approx(6 / 3)


def test_constant_model_scores_like_random_in_mean_rank() -> None:
    n = 9
    ranks = exact_pair.partner_ranks(np.ones((n, 3)), np.ones((n, 3)), np.arange(n), np.arange(n))
    np.testing.assert_array_equal(ranks, np.full(n, (n + 1) / 2))


def test_evaluation_both_directions() -> None:
    result = exact_pair.exact_pair_evaluation(IMAGES, IMAGE_STUDY, REPORTS, REPORT_STUDY, ks=(1, 2))
    i2t, t2i = result["image_to_text"], result["text_to_image"]
    assert i2t["n_candidates"] == 3 and i2t["missing"] == 1
    assert i2t["model"]["recall@2"]["value"] == pytest.approx(2 / 4)
    assert i2t["random"]["recall@1"]["value"] == pytest.approx(1 / 3)
    assert t2i["n_candidates"] == 5 and t2i["missing"] == 0
    assert t2i["model"]["recall@2"]["value"] == pytest.approx(2 / 3)
    # text -> image random: r10, r30 one partner among 5 (1/5), r20 two (1 - C(3,1)/C(5,1) = 2/5)
    assert t2i["random"]["recall@1"]["value"] == pytest.approx((1 / 5 + 2 / 5 + 1 / 5) / 3)


def test_recall_curve_and_figure(tmp_path) -> None:
    result = exact_pair.exact_pair_evaluation(IMAGES, IMAGE_STUDY, REPORTS, REPORT_STUDY, ks=(1,))
    curve = result["image_to_text"]["curve"]
    assert curve["k"] == [1, 2, 3]
    assert curve["model"] == pytest.approx([1 / 4, 2 / 4, 1.0])  # ranks 1.5, 1, 2.5, 3 (D missing)
    assert curve["random"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    path = exact_pair.plot_recall_against_k(result, tmp_path / "exact_pair.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
