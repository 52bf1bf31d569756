"""Metrics against hand-worked cases, bootstrap equivalence, oracle and random baselines, BLEU."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate.baselines import oracle_retrieval, random_retrieval
from txtrayalign.evaluate.bootstrap import point_and_interval, resample_counts
from txtrayalign.evaluate.labels import aggregate_sentence_labels, sentence_max_labels
from txtrayalign.evaluate.metrics import (
    duplicate_counts,
    exact_pair_metrics,
    hit_arrays,
    hit_metrics,
    report_generation_metrics,
)
from txtrayalign.evaluate.textmetrics import (
    bleu_arrays,
    bleu_statistic,
    clean_reference,
    hypothesis_tokens,
    original_bleu,
)

NAN = np.nan


def lab(**values: float) -> np.ndarray:
    """A 14-observation label row from keyword names (spaces as underscores)."""
    row = np.full(len(OBSERVATIONS), NAN, dtype=np.float32)
    for name, v in values.items():
        row[OBSERVATIONS.index(name.replace("_", " "))] = v
    return row


# Four queries, three retrieved sentences each (ranks 1, 2, 3).
# q1 (3 labels: Cardiomegaly 1, Edema 0, Pleural Effusion -1):
#   s1 Cardiomegaly 1, Edema 1, Effusion 1     -> hits Cardiomegaly (Edema 1 != 0, Effusion 1 != -1); 3 labelled
#   s2 Cardiomegaly 1, Effusion -1, Pneumonia 0 -> Cardiomegaly AGAIN (already hit: not counted twice),
#                                                  Effusion (-1 == -1); 3 labelled
#   s3 Edema 0                                 -> Edema; 1 labelled
#   k=1: hits 1, P 1/3, R 1/3.  k=2: hits {Card, Eff} = 2, P 2/6, R 2/3.  k=3: hits 3, P 3/7, R 3/3.
#   duplicates 0 at every k (three different label rows). Pairs: 1, 1+2 = 3, 3+1 = 4.
# q2 (no label at all): s Edema 1, Edema 1, blank -> SKIPPED at every k; flat-hit 0; pairs 0.
# q3 (Edema 0): s blank, blank, Edema 0
#   k=1, k=2: every retrieved sentence blank -> SKIPPED, flat-hit 0.
#   k=3: hits 1, 1 labelled -> P 1, R 1; rows {blank, blank, Edema 0}: 2 distinct -> duplicates 1. Pairs 1.
# q4 (Atelectasis 1, Pneumothorax 0): s Atelectasis 1, Atelectasis 1 (the same row), Pneumothorax -1
#   k=1: hits 1, P 1/1, R 1/2, dup 0.  k=2: hits still 1 (one observation), P 1/2, R 1/2, dup 1 (pairs 2).
#   k=3: Pneumothorax -1 != 0 -> hits 1, P 1/3, R 1/2, dup 1 (rows: 2 distinct of 3). Pairs 2.
QUERIES = np.stack(
    [
        lab(Cardiomegaly=1, Edema=0, Pleural_Effusion=-1),
        lab(),
        lab(Edema=0),
        lab(Atelectasis=1, Pneumothorax=0),
    ]
)
RETRIEVED = np.stack(
    [
        np.stack(
            [
                lab(Cardiomegaly=1, Edema=1, Pleural_Effusion=1),
                lab(Cardiomegaly=1, Pleural_Effusion=-1, Pneumonia=0),
                lab(Edema=0),
            ]
        ),
        np.stack([lab(Edema=1), lab(Edema=1), lab()]),
        np.stack([lab(), lab(), lab(Edema=0)]),
        np.stack([lab(Atelectasis=1), lab(Atelectasis=1), lab(Pneumothorax=-1)]),
    ]
)


def test_hit_arrays_per_query_by_hand():
    a1 = hit_arrays(QUERIES, RETRIEVED[:, :1])
    np.testing.assert_allclose(a1["kept"], [1, 0, 0, 1])  # q2: no labels; q3: blank sentence only
    np.testing.assert_allclose(a1["hits"], [1, 0, 0, 1])
    np.testing.assert_allclose(a1["flat_hit"], [1, 0, 0, 1])
    np.testing.assert_allclose(a1["precision"], [1 / 3, 0, 0, 1])
    np.testing.assert_allclose(a1["recall"], [1 / 3, 0, 0, 1 / 2])
    np.testing.assert_allclose(a1["duplicates"], [0, 0, 0, 0])

    a2 = hit_arrays(QUERIES, RETRIEVED[:, :2])
    np.testing.assert_allclose(a2["kept"], [1, 0, 0, 1])
    np.testing.assert_allclose(a2["hits"], [2, 0, 0, 1])  # Cardiomegaly once although two sentences match
    np.testing.assert_allclose(a2["pair_hits"], [3, 0, 0, 2])
    np.testing.assert_allclose(a2["precision"], [2 / 6, 0, 0, 1 / 2])
    np.testing.assert_allclose(a2["recall"], [2 / 3, 0, 0, 1 / 2])
    np.testing.assert_allclose(a2["duplicates"], [0, 0, 0, 1])

    a3 = hit_arrays(QUERIES, RETRIEVED)
    np.testing.assert_allclose(a3["kept"], [1, 0, 1, 1])
    np.testing.assert_allclose(a3["hits"], [3, 0, 1, 1])
    np.testing.assert_allclose(a3["pair_hits"], [4, 0, 1, 2])
    np.testing.assert_allclose(a3["flat_hit"], [1, 0, 1, 1])
    np.testing.assert_allclose(a3["precision"], [3 / 7, 0, 1, 1 / 3])
    np.testing.assert_allclose(a3["recall"], [1, 0, 1, 1 / 2])
    np.testing.assert_allclose(a3["duplicates"], [0, 0, 1, 1])


@pytest.mark.parametrize(
    "k, kept, flat, p, r, dup, pairs",
    [
        # k=1: kept q1, q4. P = (1/3 + 1)/2 = 2/3; R = (1/3 + 1/2)/2 = 5/12; flat = 2/4; dup = 0.
        (1, 2, 1 / 2, 2 / 3, 5 / 12, 0.0, 2 / 4),
        # k=2: kept q1, q4. P = (1/3 + 1/2)/2 = 5/12; R = (2/3 + 1/2)/2 = 7/12; flat 2/4; dup (0+1)/2.
        (2, 2, 1 / 2, 5 / 12, 7 / 12, 1 / 2, 5 / 4),
        # k=3: kept q1, q3, q4. P = (3/7 + 1 + 1/3)/3 = 37/63; R = (1 + 1 + 1/2)/3 = 5/6; flat 3/4;
        #      dup (0 + 1 + 1)/3 = 2/3; pairs (4 + 0 + 1 + 2)/4 = 7/4.
        (3, 3, 3 / 4, 37 / 63, 5 / 6, 2 / 3, 7 / 4),
    ],
)
def test_hit_metrics_averages_by_hand(k, kept, flat, p, r, dup, pairs):
    m = hit_metrics(QUERIES, RETRIEVED[:, :k])
    assert m["kept"]["value"] == kept
    assert m["flat_hit"]["value"] == pytest.approx(flat)  # over all four queries
    assert m["precision"]["value"] == pytest.approx(p)  # over the kept queries only
    assert m["recall"]["value"] == pytest.approx(r)
    # F1 of the averages: k=1 2(2/3)(5/12)/(13/12) = 20/39; k=2 2(5/12)(7/12)/1 = 35/72;
    # k=3 2(37/63)(5/6)/(37/63 + 5/6) = 370/537.
    assert m["f1"]["value"] == pytest.approx({1: 20 / 39, 2: 35 / 72, 3: 370 / 537}[k])
    assert m["f1"]["value"] == pytest.approx(2 * p * r / (p + r))
    assert m["duplicates"]["value"] == pytest.approx(dup)
    assert m["pair_hits"]["value"] == pytest.approx(pairs)
    assert m["f1"]["ci_low"] is None  # no resamples given


def test_no_query_kept_leaves_precision_recall_f1_undefined_but_flat_hit_zero():
    # q without labels, and q whose one retrieved sentence is blank: both skipped.
    m = hit_metrics(np.stack([lab(), lab(Edema=1)]), np.stack([np.stack([lab(Edema=1)]), np.stack([lab()])]))
    assert m["kept"]["value"] == 0
    assert m["precision"]["value"] is None and m["recall"]["value"] is None and m["f1"]["value"] is None
    assert m["flat_hit"]["value"] == 0.0


def test_duplicates_treat_nan_as_equal_and_count_each_repeat():
    rows = np.stack([np.stack([lab(Edema=1), lab(Edema=1), lab(Edema=1), lab(), lab(), lab(Edema=0)])])
    # six rows, three distinct (Edema 1, blank, Edema 0): 6 - 3 = 3
    np.testing.assert_array_equal(duplicate_counts(rows), [3])


def test_precision_recall_never_exceed_one_on_random_cases():
    rng = np.random.default_rng(3)
    q = rng.choice([1.0, 0.0, -1.0, NAN], size=(200, 14), p=[0.2, 0.2, 0.1, 0.5])
    r = rng.choice([1.0, 0.0, -1.0, NAN], size=(200, 10, 14), p=[0.15, 0.15, 0.1, 0.6])
    m = hit_metrics(q, r, resample_counts(200, 100, 0))
    for name in ("flat_hit", "precision", "recall", "f1"):
        assert 0 <= m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"] <= 1, name
    assert m["pair_hits"]["value"] > 1  # the per-pair count is not bounded: it is no recall


def test_sentence_max_labels_by_hand():
    sentences = pd.DataFrame({"sentence_id": [1, 2, 3, 4], "study_id": [10, 10, 10, 20]})
    labels = pd.DataFrame(
        np.stack([lab(Edema=0, Cardiomegaly=-1), lab(Edema=-1), lab(Cardiomegaly=1), lab()]),
        columns=OBSERVATIONS,
    )
    labels.insert(0, "sentence_id", [1, 2, 3, 4])
    out = sentence_max_labels(labels, sentences).set_index("study_id")
    # study 10: Edema max(0, -1) = 0 (CheXpert's report rule would give -1), Cardiomegaly max(-1, 1) = 1.
    np.testing.assert_array_equal(out.loc[10].to_numpy(np.float32), lab(Edema=0, Cardiomegaly=1))
    np.testing.assert_array_equal(out.loc[20].to_numpy(np.float32), lab())  # only a blank sentence


def test_original_bleu_by_hand():
    report = "No pleural effusion.\nHeart size is normal."
    # line break deleted -> "effusion.Heart", the full stop then becomes a space:
    assert clean_reference(report) == ["No", "pleural", "effusion", "Heart", "size", "is", "normal"]
    hyp = ["No pleural effusion", "Heart size is normal"]
    assert hypothesis_tokens(hyp) == ["No", "pleural", "effusion.", "Heart", "size", "is", "normal"]
    # unigrams: 6 of 7 match ("effusion." does not); bigrams: 4 of 6 ("No pleural", "Heart size",
    # "size is", "is normal"); equal lengths: brevity penalty 1. BLEU = sqrt(6/7 * 4/6) = sqrt(4/7).
    assert original_bleu(report, hyp) == pytest.approx(np.sqrt(4 / 7))
    assert original_bleu(report, ["Tube in place"]) == 0.0  # no matching bigram, no smoothing
    # hypothesis of 3 tokens, "No pleural" matches: p1 = 2/3 ("No", "pleural"), p2 = 1/2;
    # brevity penalty exp(1 - 7/3). BLEU = exp(1 - 7/3) * sqrt(2/3 * 1/2).
    assert original_bleu(report, ["No pleural effusions"]) == pytest.approx(
        np.exp(1 - 7 / 3) * np.sqrt(1 / 3)
    )


def test_bleu_mean_over_kept_queries():
    reports = ["No pleural effusion.\nHeart size is normal.", "Tube in place."]
    texts = np.array([["No pleural effusion", "Heart size is normal"], ["Tube in place", "x"]], dtype=object)
    arrays = bleu_arrays(reports, texts, np.array([1.0, 0.0]))  # query 2 skipped by the hit metrics
    assert arrays["bleu"][1] == 0.0
    got = point_and_interval(arrays, bleu_statistic, None)["bleu"]["value"]
    assert got == pytest.approx(np.sqrt(4 / 7))


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


def greedy_oracle_reference(q: np.ndarray, bank: np.ndarray, k: int) -> list[list[int]]:
    """The oracle's rule in plain Python: each step the untaken sentence with the most new hits, then
    the fewest labelled values, then the lowest index."""
    out = []
    for qi in q:
        covered: set[int] = set()
        chosen: list[int] = []
        for _ in range(k):
            best = None
            for j, row in enumerate(bank):
                if j in chosen:
                    continue
                hits = {o for o in range(14) if row[o] == qi[o]} - covered
                key = (-len(hits), int((~np.isnan(row)).sum()), j)
                if best is None or key < best[0]:
                    best = (key, j, hits)
            chosen.append(best[1])
            covered |= best[2]
        out.append(chosen)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_oracle_equals_the_plain_greedy_rule(seed):
    rng = np.random.default_rng(seed)
    q, b = _random_case(rng, 12, 40)
    b[5] = b[3]  # repeated label rows: the oracle must move on to the row's next sentence
    b[9] = b[3]
    for k in (1, 3, 6):
        idx, new_hits = oracle_retrieval(q, b, k, max_block_elements=50)  # several query blocks
        assert idx.tolist() == greedy_oracle_reference(q, b, k)
        np.testing.assert_array_equal(new_hits.sum(axis=1), hit_arrays(q, b[idx])["hits"])


@pytest.mark.parametrize("seed", range(4))
def test_oracle_against_exhaustive_best_sets(seed):
    rng = np.random.default_rng(seed)
    q, b = _random_case(rng, 10, 12)
    for k in (1, 2, 3):
        got = hit_arrays(q, b[oracle_retrieval(q, b, k)[0]])
        subsets = np.array(list(itertools.combinations(range(12), k)))  # every k-set of the bank
        best = np.stack([hit_arrays(q, b[np.broadcast_to(s, (10, k))])["hits"] for s in subsets]).max(0)
        # greedy maximum coverage: exact for k = 1, at least (1 - 1/e) of the optimum beyond
        assert (got["hits"] >= (1 - 1 / np.e) * best - 1e-9).all()
        if k == 1:
            np.testing.assert_array_equal(got["hits"], best)
        for other in (random_retrieval(10, 12, k, seed), np.argsort(rng.random((10, 12)), axis=1)[:, :k]):
            assert (got["flat_hit"] >= hit_arrays(q, b[other])["flat_hit"]).all()  # step 1 is the best


def test_oracle_precision_is_not_an_upper_bound_documented_case():
    q = np.stack([lab(Edema=1, Cardiomegaly=1, Atelectasis=1)])
    bank = np.stack([lab(Edema=1, Cardiomegaly=1, Atelectasis=1, Fracture=0), lab(Edema=1)])
    idx, hits = oracle_retrieval(q, bank, 1)
    assert idx.tolist() == [[0]] and hits.tolist() == [[3]]
    assert hit_arrays(q, bank[idx])["precision"][0] == pytest.approx(0.75)
    assert hit_arrays(q, bank[[[1]]])["precision"][0] == pytest.approx(1.0)


def test_oracle_covers_before_repeating_and_then_fills_with_blank_sentences():
    q = np.stack([lab(Edema=1, Cardiomegaly=1)])
    # 0 and 1 both hit Edema only; 2 hits Cardiomegaly; 3 is blank.
    bank = np.stack([lab(Edema=1), lab(Edema=1), lab(Cardiomegaly=1, Fracture=0), lab()])
    idx, hits = oracle_retrieval(q, bank, 3)
    # step 1: sentence 0 (1 hit, 1 label, lowest index); step 2: sentence 2 (the only new hit);
    # step 3: nothing new left, sentence 3 carries no label (score 0 beats sentence 1's -1).
    assert idx.tolist() == [[0, 2, 3]] and hits.tolist() == [[1, 1, 0]]


def test_random_baseline_close_to_its_expectation():
    rng = np.random.default_rng(11)
    q, b = _random_case(rng, 3000, 150)
    k = 5
    got = hit_arrays(q, b[random_retrieval(3000, 150, k, seed=2)])["pair_hits"]
    # Expected (sentence, observation) matches of k distinct uniform sentences: k times the bank mean.
    expected = k * (b[None] == q[:, None]).sum(axis=2).mean(axis=1)
    se = np.sqrt(got.var() / got.size)
    assert abs(got.mean() - expected.mean()) < 4 * se
