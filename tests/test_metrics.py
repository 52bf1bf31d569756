"""Metrics against hand-computed toy cases, bootstrap equivalence, oracle and random baselines."""

from __future__ import annotations

import numpy as np
import pytest

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate.baselines import oracle_retrieval, random_retrieval
from txtrayalign.evaluate.bootstrap import point_and_interval, resample_counts
from txtrayalign.evaluate.evaluation import aggregate_sentence_labels
from txtrayalign.evaluate.metrics import (
    duplicate_counts,
    exact_pair_metrics,
    hit_arrays,
    hit_metrics,
    report_generation_metrics,
)

NAN = np.nan


def lab(**values: float) -> np.ndarray:
    """A 14-observation label row from keyword names (spaces as underscores)."""
    row = np.full(len(OBSERVATIONS), NAN, dtype=np.float32)
    for name, v in values.items():
        row[OBSERVATIONS.index(name.replace("_", " "))] = v
    return row


# q1: three labels; its sentences hit Cardiomegaly once (s1; s1's 1 vs -1 for effusion is no hit),
#     then Cardiomegaly and Pleural Effusion (-1 == -1) in s2.
# q2: no label at all; two unlabelled sentences (identical rows: one duplicate).
# q3: one label; two identical sentences both hit it (two hits, recall 2, one duplicate).
QUERIES = np.stack(
    [
        lab(Cardiomegaly=1, Edema=0, Pleural_Effusion=-1),
        lab(),
        lab(Edema=0),
    ]
)
RETRIEVED = np.stack(
    [
        np.stack(
            [
                lab(Cardiomegaly=1, Edema=1, Pleural_Effusion=1),
                lab(Cardiomegaly=1, Pleural_Effusion=-1, Pneumonia=0),
            ]
        ),
        np.stack([lab(), lab()]),
        np.stack([lab(Edema=0), lab(Edema=0)]),
    ]
)


def test_hit_arrays_per_query_by_hand():
    a1 = hit_arrays(QUERIES, RETRIEVED[:, :1])
    np.testing.assert_allclose(a1["hits"], [1, 0, 1])
    np.testing.assert_allclose(a1["flat_hit"], [1, 0, 1])
    np.testing.assert_allclose(a1["precision"], [1 / 3, 0, 1])  # q2: nothing labelled retrieved -> 0
    np.testing.assert_allclose(a1["recall_n"], [1, 0, 1])  # q2 has no labels: left out of recall
    np.testing.assert_allclose(a1["recall"][[0, 2]], [1 / 3, 1])
    np.testing.assert_allclose(a1["duplicates"], [0, 0, 0])

    a2 = hit_arrays(QUERIES, RETRIEVED)
    np.testing.assert_allclose(a2["hits"], [3, 0, 2])
    np.testing.assert_allclose(a2["precision"], [3 / 6, 0, 1])
    np.testing.assert_allclose(a2["recall"][[0, 2]], [1, 2])  # per-pair hits: recall may exceed 1
    np.testing.assert_allclose(a2["distinct_recall"][[0, 2]], [2 / 3, 1])
    np.testing.assert_allclose(a2["duplicates"], [0, 1, 1])


def test_hit_metrics_averages_by_hand():
    m = hit_metrics(QUERIES, RETRIEVED)
    p, r = (0.5 + 0 + 1) / 3, (1 + 2) / 2
    assert m["flat_hit"]["value"] == pytest.approx(2 / 3)
    assert m["precision"]["value"] == pytest.approx(p)
    assert m["recall"]["value"] == pytest.approx(r)
    assert m["f1"]["value"] == pytest.approx(2 * p * r / (p + r))  # F1 of the averages
    assert m["duplicates"]["value"] == pytest.approx(2 / 3)
    assert m["distinct_recall"]["value"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["f1"]["ci_low"] is None  # no resamples given


def test_hit_metrics_all_queries_unlabelled_gives_undefined_recall():
    m = hit_metrics(np.stack([lab(), lab()]), np.stack([np.stack([lab(Edema=1)])] * 2))
    assert m["recall"]["value"] is None and m["f1"]["value"] is None
    assert m["precision"]["value"] == 0.0 and m["flat_hit"]["value"] == 0.0


def test_duplicates_treat_nan_as_equal_and_count_each_repeat():
    rows = np.stack([np.stack([lab(Edema=1), lab(Edema=1), lab(Edema=1), lab(), lab(), lab(Edema=0)])])
    np.testing.assert_array_equal(duplicate_counts(rows), [3])


def test_report_generation_by_hand():
    truth = np.stack([lab(Cardiomegaly=1, Edema=1), lab(Edema=0, Atelectasis=1)])
    pred = np.stack([lab(Cardiomegaly=1, Edema=-1), lab(Edema=1, Atelectasis=1, Fracture=1)])
    m = report_generation_metrics(truth, pred)
    # TP: Cardiomegaly (q1), Atelectasis (q2); FP: Edema, Fracture (q2); FN: Edema (q1); -1 is negative.
    assert m["micro_precision_all"]["value"] == pytest.approx(2 / 4)
    assert m["micro_recall_all"]["value"] == pytest.approx(2 / 3)
    assert m["micro_f1_all"]["value"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    for name in ("precision", "recall", "f1"):
        assert m[f"macro_{name}_all"]["value"] == pytest.approx(2 / 14)
        assert m[f"macro_{name}_top5"]["value"] == pytest.approx(2 / 5)
    assert m["micro_precision_top5"]["value"] == pytest.approx(2 / 3)
    assert m["micro_recall_top5"]["value"] == pytest.approx(2 / 3)


def test_exact_pair_by_hand_skips_queries_without_report():
    m = exact_pair_metrics(np.array([1, 3, 12, NAN]))
    assert m["recall@1"]["value"] == pytest.approx(1 / 3)
    assert m["recall@5"]["value"] == pytest.approx(2 / 3)
    assert m["recall@10"]["value"] == pytest.approx(2 / 3)
    assert m["mrr"]["value"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)


def test_aggregate_sentence_labels_precedence_and_no_finding():
    r = np.stack(
        [
            np.stack([lab(Edema=0, No_Finding=1), lab(Edema=-1), lab(Edema=1, Support_Devices=1)]),
            np.stack([lab(No_Finding=1, Support_Devices=1), lab(Pneumonia=0), lab()]),
        ]
    )
    out = aggregate_sentence_labels(r)
    np.testing.assert_array_equal(out[0], lab(Edema=1, Support_Devices=1))  # finding drops No Finding
    np.testing.assert_array_equal(out[1], lab(No_Finding=1, Support_Devices=1, Pneumonia=0))


def test_bootstrap_equals_explicit_resample_indexing():
    x = np.array([0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75])
    n, b = x.size, 200
    got = point_and_interval(
        {"x": x, "n": np.ones(n)}, lambda s: {"mean": s["x"] / s["n"]}, resample_counts(n, b, 7)
    )
    idx = np.random.default_rng(7).integers(0, n, size=(b, n))
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert got["mean"]["value"] == pytest.approx(x.mean())
    assert got["mean"]["ci_low"] == pytest.approx(lo) and got["mean"]["ci_high"] == pytest.approx(hi)


def test_bootstrap_is_deterministic_and_brackets_the_value():
    rng = np.random.default_rng(0)
    q = rng.choice([1.0, 0.0, -1.0, NAN], size=(60, 14))
    r = rng.choice([1.0, 0.0, -1.0, NAN], size=(60, 3, 14))
    a = hit_metrics(q, r, resample_counts(60, 300, 1))
    assert a == hit_metrics(q, r, resample_counts(60, 300, 1))
    for name, v in a.items():
        assert v["ci_low"] <= v["value"] <= v["ci_high"], name


def _random_case(rng, n, m):
    q = rng.choice([1.0, 0.0, -1.0, NAN], size=(n, 14), p=[0.2, 0.2, 0.1, 0.5])
    b = rng.choice([1.0, 0.0, -1.0, NAN], size=(m, 14), p=[0.08, 0.08, 0.04, 0.8])
    return q.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_oracle_at_least_as_good_as_any_retrieval_on_hit_metrics(seed):
    rng = np.random.default_rng(seed)
    q, b = _random_case(rng, 30, 80)
    for k in (1, 2, 5):
        oracle = hit_arrays(q, b[oracle_retrieval(q, b, k)[0]])
        for other in (random_retrieval(30, 80, k, seed), np.argsort(rng.random((30, 80)), axis=1)[:, :k]):
            model = hit_arrays(q, b[other])
            assert (oracle["hits"] >= model["hits"]).all()
            assert (oracle["flat_hit"] >= model["flat_hit"]).all()
            assert (oracle["recall"] >= model["recall"]).all()


def test_oracle_precision_is_not_an_upper_bound_documented_case():
    q = np.stack([lab(Edema=1, Cardiomegaly=1, Atelectasis=1)])
    bank = np.stack([lab(Edema=1, Cardiomegaly=1, Atelectasis=1, Fracture=0), lab(Edema=1)])
    idx, hits = oracle_retrieval(q, bank, 1)
    assert idx.tolist() == [[0]] and hits.tolist() == [[3]]
    assert hit_arrays(q, bank[idx])["precision"][0] == pytest.approx(0.75)
    assert hit_arrays(q, bank[[[1]]])["precision"][0] == pytest.approx(1.0)


def test_random_baseline_close_to_its_expectation():
    rng = np.random.default_rng(11)
    q, b = _random_case(rng, 3000, 150)
    k = 5
    got = hit_arrays(q, b[random_retrieval(3000, 150, k, seed=2)])["hits"]
    # Expected hits of k distinct uniform sentences: k times the mean hits over the whole bank.
    expected = k * (b[None] == q[:, None]).sum(axis=2).mean(axis=1)
    se = np.sqrt(got.var() / got.size)
    assert abs(got.mean() - expected.mean()) < 4 * se
