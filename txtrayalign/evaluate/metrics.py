"""Retrieval metrics: the original research code's hit-based metrics, report-generation scores, exact pairs.

Label arrays hold the 14 CheXpert observations in `constants.OBSERVATIONS` order with values
1 (positive), 0 (negative), -1 (uncertain) and NaN (blank: not mentioned).

Hit-based metrics, exactly as the original research code's `eval()` defines them, for one query with
labels q (14,) and its k retrieved sentences with labels r_1..r_k (each (14,)):

- observation o of the query is HIT when ANY of the k sentences has r_j[o] == q[o], both labelled:
  the same value, 1, 0 or -1 (a blank never matches). Each observation counts once however many
  sentences match it, so hits <= labelled values of the query.
- hits = number of hit observations.
- precision@k = hits / (labelled values over the k retrieved sentences, every sentence counted,
  duplicates included); <= 1.
- recall@k = hits / (labelled values of the query); <= 1.
- duplicates@k = k minus the number of distinct label rows among the k (NaN equal to NaN).
- flat-hit@k = 1 if hits > 0 else 0.
- A query is SKIPPED when it has no labelled value, or when its k retrieved sentences are all blank.
  Skipped queries are left out of precision, recall and duplicates; flat-hit divides by ALL queries
  (a skipped query counts as a miss there). `kept` reports the number of queries kept.

Averaging: precision, recall, duplicates and hits are averaged over the kept queries, flat-hit over all
queries; F1@k = 2PR/(P+R) of the averaged P and R (0 when P+R = 0, undefined when no query is kept).
Every figure gets a 95% percentile bootstrap interval over queries (`bootstrap`); F1's interval comes
from each resample's averaged P and R, so it is the interval of the statistic as defined.

Extra (not in the headline table): `pair_hits` = the mean over ALL queries of the number of
(sentence, observation) pairs that match, the count an earlier version of this module used as hits;
it grows with k without bound and is no precision or recall.

Report-generation metrics: the k retrieved sentences are concatenated and labelled as one report;
an observation is positive when its label is 1 (0, -1 and NaN are negative), in the prediction and
in the query study's labels. Micro scores pool true/false positives and false negatives over the
observations and queries; macro scores average the per-observation precision, recall and F1 (each 0
where its denominator is 0). Both over all 14 observations and over `TOP5_OBSERVATIONS`.

Exact-pair retrieval: the 1-based rank of the query study's own report among the query split's
reports (ties: lower report index first); recall@K = share of queries with rank <= K; MRR = mean 1/rank.
"""

from __future__ import annotations

import numpy as np

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS

from .bootstrap import point_and_interval

HEADLINE_METRICS = ("flat_hit", "precision", "recall", "f1", "duplicates")
HIT_METRICS = (*HEADLINE_METRICS, "kept", "hits", "pair_hits")
EXACT_PAIR_KS = (1, 5, 10)


def hit_matrix(query_labels: np.ndarray, retrieved_labels: np.ndarray) -> np.ndarray:
    """(N, k, 14) bool: sentence j has the same labelled value as query i for observation o."""
    q = np.asarray(query_labels, dtype=np.float32)
    r = np.asarray(retrieved_labels, dtype=np.float32)
    return r == q[:, None, :]  # NaN == NaN is False: a blank never matches


def label_row_codes(labels: np.ndarray) -> np.ndarray:
    """An int64 code per label row (..., 14): equal codes exactly when rows are equal, NaN equal to NaN."""
    lab = np.asarray(labels, dtype=np.float32)
    digits = np.where(np.isnan(lab), 3, lab + 1).astype(np.int64)  # -1,0,1,NaN -> 0,1,2,3
    weights = 4 ** np.arange(lab.shape[-1], dtype=np.int64)
    return digits @ weights


def duplicate_counts(retrieved_labels: np.ndarray) -> np.ndarray:
    """(N,) k minus the number of distinct label rows among each query's k retrieved rows."""
    codes = np.sort(label_row_codes(retrieved_labels), axis=1)
    return (codes[:, 1:] == codes[:, :-1]).sum(axis=1).astype(np.float64)


def hit_arrays(query_labels: np.ndarray, retrieved_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query arrays for the hit-based metrics; `retrieved_labels` is (N, k, 14), already cut to k.

    Values of skipped queries are 0 and `kept` is 0 for them, so that sums over queries divided by the
    sum of `kept` are the means over kept queries (and resample the same way in the bootstrap).
    """
    q = np.asarray(query_labels, dtype=np.float32)
    r = np.asarray(retrieved_labels, dtype=np.float32)
    match = hit_matrix(q, r)
    hits = match.any(axis=1).sum(axis=1).astype(np.float64)  # each query observation once
    labelled_retrieved = (~np.isnan(r)).sum(axis=(1, 2)).astype(np.float64)
    labelled_query = (~np.isnan(q)).sum(axis=1).astype(np.float64)
    kept = (labelled_query > 0) & (labelled_retrieved > 0)
    return {
        "n": np.ones(q.shape[0]),
        "kept": kept.astype(np.float64),
        "flat_hit": (hits > 0).astype(np.float64),
        "precision": np.where(kept, hits / np.maximum(labelled_retrieved, 1.0), 0.0),
        "recall": np.where(kept, hits / np.maximum(labelled_query, 1.0), 0.0),
        "duplicates": np.where(kept, duplicate_counts(r), 0.0),
        "hits": np.where(kept, hits, 0.0),
        "pair_hits": match.sum(axis=(1, 2)).astype(np.float64),
    }


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _f1_of_means(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """2PR / (P + R) of mean precision and mean recall (0 when both are 0, NaN when undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = p + r
        return np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1.0), np.where(np.isnan(s), np.nan, 0.0))


def hit_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hit-based metrics from query sums (see module docstring); `kept` is a count of queries."""
    n, kept = sums["n"], sums["kept"]
    p = _div(sums["precision"], kept)
    r = _div(sums["recall"], kept)
    return {
        "flat_hit": _div(sums["flat_hit"], n),
        "precision": p,
        "recall": r,
        "f1": _f1_of_means(p, r),
        "duplicates": _div(sums["duplicates"], kept),
        "kept": kept.astype(np.float64),
        "hits": _div(sums["hits"], kept),
        "pair_hits": _div(sums["pair_hits"], n),
    }


def hit_metrics(
    query_labels: np.ndarray, retrieved_labels: np.ndarray, counts: np.ndarray | None = None
) -> dict[str, dict[str, float | None]]:
    """The hit-based metrics with bootstrap intervals (`counts` from `bootstrap.resample_counts`)."""
    return point_and_interval(hit_arrays(query_labels, retrieved_labels), hit_statistic, counts)


# --- report generation -------------------------------------------------------------------------

_TOP5_INDEX = [OBSERVATIONS.index(o) for o in TOP5_OBSERVATIONS]


def report_generation_arrays(truth: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query (N, 14) true-positive, false-positive and false-negative indicators (positive = 1)."""
    t = np.asarray(truth, dtype=np.float32) == 1
    p = np.asarray(predicted, dtype=np.float32) == 1
    return {
        "tp": (t & p).astype(np.float64),
        "fp": (~t & p).astype(np.float64),
        "fn": (t & ~p).astype(np.float64),
    }


def _zero_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def per_observation_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per observation (last axis) from summed counts; 0 where undefined."""
    p = _zero_div(tp, tp + fp)
    r = _zero_div(tp, tp + fn)
    return {"precision": p, "recall": r, "f1": _zero_div(2 * p * r, p + r)}


def report_generation_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Micro and macro precision/recall/F1 over the 14 observations and over the top 5."""
    out: dict[str, np.ndarray] = {}
    for scope, cols in (("all", slice(None)), ("top5", _TOP5_INDEX)):
        tp, fp, fn = sums["tp"][:, cols], sums["fp"][:, cols], sums["fn"][:, cols]
        per_obs = per_observation_scores(tp, fp, fn)
        micro = per_observation_scores(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
        for name in ("precision", "recall", "f1"):
            out[f"micro_{name}_{scope}"] = micro[name]
            out[f"macro_{name}_{scope}"] = per_obs[name].mean(axis=1)
    return out


def report_generation_metrics(
    truth: np.ndarray, predicted: np.ndarray, counts: np.ndarray | None = None
) -> dict[str, dict[str, float | None]]:
    """Report-generation metrics with bootstrap intervals."""
    return point_and_interval(report_generation_arrays(truth, predicted), report_generation_statistic, counts)


def f1_by_observation(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """F1 of each observation (positive = 1) over all queries: for plots."""
    arrays = report_generation_arrays(truth, predicted)
    scores = per_observation_scores(arrays["tp"].sum(0), arrays["fp"].sum(0), arrays["fn"].sum(0))
    return {o: float(v) for o, v in zip(OBSERVATIONS, scores["f1"], strict=True)}


# --- exact pairs -------------------------------------------------------------------------------


def exact_pair_arrays(ranks: np.ndarray, ks: tuple[int, ...] = EXACT_PAIR_KS) -> dict[str, np.ndarray]:
    """Per-query arrays from 1-based ranks of the own report; NaN rank (no report) leaves the query out."""
    r = np.asarray(ranks, dtype=np.float64)
    valid = ~np.isnan(r)
    out = {"n": valid.astype(np.float64), "reciprocal_rank": np.where(valid, 1.0 / np.where(valid, r, 1.0), 0.0)}
    for k in ks:
        out[f"recall@{k}"] = (valid & (np.nan_to_num(r, nan=np.inf) <= k)).astype(np.float64)
    return out


def exact_pair_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {name: _div(v, sums["n"]) for name, v in sums.items() if name.startswith("recall@")}
    out["mrr"] = _div(sums["reciprocal_rank"], sums["n"])
    return out


def exact_pair_metrics(
    ranks: np.ndarray, counts: np.ndarray | None = None, ks: tuple[int, ...] = EXACT_PAIR_KS
) -> dict[str, dict[str, float | None]]:
    """Recall@K and mean reciprocal rank with bootstrap intervals."""
    return point_and_interval(exact_pair_arrays(ranks, ks), exact_pair_statistic, counts)
