"""Exact-pair retrieval (CXR-CLIP's evaluator): the rank of each query's own partner, both directions.

- image -> text: a query image's partner is its study's report; the candidates are the report bank (one
  report per query study). Several images of one study share that report.
- text -> image: a query report's partners are ALL the images of its study ("any image of the study
  counts"); the candidates are the query images. The rank is that of the study's best-scoring image:
  the study's other images are never counted against it.

Rank, with ties: 1 + (candidates that are not partners scoring strictly above the best partner)
+ 1/2 (non-partners scoring exactly equal to it), i.e. the mean rank over every order of the tied
candidates (the expected rank when ties are broken at random). A model whose embeddings are all equal
gets the random baseline's mean rank, never rank 1. Recall@K = share of queries with rank <= K
(a rank of 1.5, one tie at the top, is not a hit at K=1); MRR = mean 1/rank; mean and median rank.

A query without any partner among the candidates (an image whose study has no report text; a
sentence of a study without query images) gets no rank: it is left out of every figure, and counted
as `missing`. Every figure of the model gets a 95% percentile bootstrap interval over the queries
(`bootstrap.resample_counts`, the evaluation's shared resamples where the queries are the images).

Random baseline, exact, not simulated: ordering the M candidates at random, the first of a query's m
partners is at rank r with probability C(M - r, m - 1) / C(M, m); recall@K = 1 - C(M-m, K)/C(M, K)
(K/M for one partner), mean rank (M + 1)/(m + 1), and MRR and the median rank from the same law,
averaged over the kept queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.special import gammaln

from txtrayalign.utils import progress

from .bootstrap import percentile_interval, point_and_interval

EXACT_PAIR_KS = (1, 5, 10)


def partner_ranks(
    queries: np.ndarray,
    candidates: np.ndarray,
    query_group: np.ndarray,
    candidate_group: np.ndarray,
    max_block_elements: int = 1 << 24,
    show_progress: bool = False,
) -> np.ndarray:
    """(N,) rank of each query's best partner (candidates with the query's group id), NaN without one.

    Scores are inner products (cosine for L2-normalised embeddings) in float32, computed over query
    chunks of at most `max_block_elements` scores; no sort. Queries without a partner are skipped.
    When every group has one candidate (image -> text), the partner's score is read by its column.
    Ties: see the module docstring.
    """
    q_all = torch.as_tensor(np.asarray(queries)).to(torch.float32)
    c_all = torch.as_tensor(np.asarray(candidates)).to(torch.float32)
    if q_all.ndim != 2 or c_all.ndim != 2 or q_all.shape[1] != c_all.shape[1]:
        raise ValueError(f"queries {tuple(q_all.shape)} and candidates {tuple(c_all.shape)} must be (N, D), (M, D)")
    q_group = np.asarray(query_group, dtype=np.int64)
    c_group = np.asarray(candidate_group, dtype=np.int64)
    if q_group.shape[0] != q_all.shape[0] or c_group.shape[0] != c_all.shape[0]:
        raise ValueError("one group id per query and per candidate is needed")
    ranks = np.full(q_all.shape[0], np.nan)
    rows = np.flatnonzero(partner_counts(q_group, c_group) > 0)
    if not rows.size:
        return ranks
    groups, first = np.unique(c_group, return_index=True)
    column = torch.as_tensor(first[np.searchsorted(groups, q_group[rows])]) if groups.size == c_group.size else None
    c_group_t = torch.as_tensor(c_group)
    chunk = max(1, min(rows.size, max_block_elements // c_all.shape[0]))
    starts = range(0, rows.size, chunk)
    if show_progress:
        starts = progress(starts, desc="exact-pair ranks", total=len(starts), unit="block")
    for s in starts:
        sel = rows[s : s + chunk]
        scores = q_all[torch.as_tensor(sel)] @ c_all.T
        if column is not None:  # one partner each: its own column, itself left out of the ties
            best = torch.gather(scores, 1, column[s : s + chunk, None])
            above = (scores > best).sum(dim=1)
            tied = (scores == best).sum(dim=1) - 1
        else:
            partner = torch.as_tensor(q_group[sel])[:, None] == c_group_t[None, :]
            best = torch.where(partner, scores, torch.tensor(-torch.inf)).amax(dim=1, keepdim=True)
            above = ((scores > best) & ~partner).sum(dim=1)
            tied = ((scores == best) & ~partner).sum(dim=1)
        ranks[sel] = 1.0 + above.numpy() + 0.5 * tied.numpy()
    return ranks


def rank_arrays(ranks: np.ndarray, ks: Sequence[int] = EXACT_PAIR_KS) -> dict[str, np.ndarray]:
    """Per-query arrays for `point_and_interval`: `n` (has a rank), `rr`, `rank` and `recall@K` (0 when missing)."""
    r = np.asarray(ranks, dtype=np.float64)
    valid = ~np.isnan(r)
    safe = np.where(valid, r, 1.0)
    out = {"n": valid.astype(np.float64), "rr": np.where(valid, 1.0 / safe, 0.0), "rank": np.where(valid, r, 0.0)}
    for k in ks:
        out[f"recall@{k}"] = (valid & (safe <= k)).astype(np.float64)
    return out


def rank_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recall@K, MRR and mean rank from summed `rank_arrays` (leading axis: resamples)."""
    n = sums["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = {name: np.where(n > 0, v / np.where(n > 0, n, 1.0), np.nan) for name, v in sums.items() if name != "n"}
    out = {name: ratio[name] for name in ratio if name.startswith("recall@")}
    out["mrr"] = ratio["rr"]
    out["mean_rank"] = ratio["rank"]
    return out


def weighted_median(values: np.ndarray, weights: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Median of `values` (n,) under each row of integer `weights` (B, n), as `np.median` of the sample
    that repeats value i weights[b, i] times (the mean of the two middle values for an even total)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    v = values[order]
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    out = np.full(w.shape[0], np.nan)
    for s in range(0, w.shape[0], chunk):
        cum = np.cumsum(w[s : s + chunk, order], axis=1)
        total = cum[:, -1]
        ok = total > 0
        lower = (cum >= np.floor((total + 1) / 2)[:, None]).argmax(axis=1)
        upper = (cum >= (np.floor(total / 2) + 1)[:, None]).argmax(axis=1)
        out[s : s + chunk] = np.where(ok, (v[lower] + v[upper]) / 2, np.nan)
    return out


def rank_metrics(
    ranks: np.ndarray, counts: np.ndarray | None = None, ks: Sequence[int] = EXACT_PAIR_KS, alpha: float = 0.05
) -> dict[str, dict[str, float | None]]:
    """Recall@K, MRR, mean and median rank of `ranks` (NaN: missing) with bootstrap intervals (`counts`)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = point_and_interval(rank_arrays(ranks, ks), rank_statistic, counts, alpha)
    valid = ~np.isnan(ranks)
    entry: dict[str, float | None] = {"value": None, "ci_low": None, "ci_high": None}
    if valid.any():
        entry["value"] = float(np.median(ranks[valid]))
        if counts is not None:
            entry["ci_low"], entry["ci_high"] = percentile_interval(weighted_median(ranks[valid], counts[:, valid]), alpha)
    out["median_rank"] = entry
    return out


def random_rank_law(n_candidates: int, n_partners: int) -> np.ndarray:
    """P(rank = r), r = 1..M, of the first of m partners among M candidates in a random order."""
    m_total, m = int(n_candidates), int(n_partners)
    r = np.arange(1, m_total + 1)
    p = np.zeros(m_total)
    ok = r <= m_total - m + 1
    a = m_total - r[ok]
    log_p = gammaln(a + 1) - gammaln(m) - gammaln(a - m + 2) - (gammaln(m_total + 1) - gammaln(m + 1) - gammaln(m_total - m + 1))
    p[ok] = np.exp(log_p)
    return p / p.sum()


def random_rank_metrics(
    n_candidates: int, n_partners: np.ndarray, ks: Sequence[int] = EXACT_PAIR_KS
) -> dict[str, dict[str, float | None]]:
    """The random baseline's expected recall@K, MRR, mean rank and median rank (see module docstring).

    `n_partners`: (N,) partners of each query among the candidates (0: missing, left out).
    """
    parts = np.asarray(n_partners, dtype=np.int64)
    parts = parts[parts > 0]
    none = {"value": None, "ci_low": None, "ci_high": None}
    names = [f"recall@{k}" for k in ks] + ["mrr", "mean_rank", "median_rank"]
    if not parts.size or n_candidates < 1:
        return {name: dict(none) for name in names}
    r = np.arange(1, n_candidates + 1)
    mixture = np.zeros(n_candidates)
    for m, count in zip(*np.unique(parts, return_counts=True), strict=True):
        mixture += count * random_rank_law(n_candidates, m)
    mixture /= parts.size
    cdf = np.cumsum(mixture)
    values = {f"recall@{k}": float(cdf[min(k, n_candidates) - 1]) for k in ks}
    values["mrr"] = float((mixture / r).sum())
    values["mean_rank"] = float((mixture * r).sum())
    values["median_rank"] = float(r[np.searchsorted(cdf, 0.5 - 1e-12)])
    return {name: {**none, "value": values[name]} for name in names}


def direction_result(
    ranks: np.ndarray,
    n_partners: np.ndarray,
    n_candidates: int,
    counts: np.ndarray | None = None,
    ks: Sequence[int] = EXACT_PAIR_KS,
) -> dict:
    """One direction's JSON: query counts, the model's metrics with intervals and the random expectation."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        "n_queries": int(ranks.size),
        "missing": int(np.isnan(ranks).sum()),
        "n_candidates": int(n_candidates),
        "model": rank_metrics(ranks, counts, ks),
        "random": random_rank_metrics(n_candidates, n_partners, ks),
        "curve": recall_curve(ranks, n_partners, n_candidates),
    }


def recall_curve(ranks: np.ndarray, n_partners: np.ndarray, n_candidates: int, points: int = 30) -> dict:
    """Recall@K of the model and of random at about `points` K from 1 to the candidate count (log-spaced)."""
    valid = ~np.isnan(ranks)
    if not valid.any() or n_candidates < 1:
        return {"k": [], "model": [], "random": []}
    ks = np.unique(np.round(np.logspace(0, np.log10(n_candidates), points)).astype(int)).tolist()
    random = random_rank_metrics(n_candidates, n_partners, ks)
    return {"k": ks, "model": [float(np.mean(ranks[valid] <= k)) for k in ks],
            "random": [random[f"recall@{k}"]["value"] for k in ks]}


def plot_recall_against_k(result: dict, path: str | Path, title: str = "exact-pair retrieval") -> Path:
    """Recall@K against K (log axis), one line per direction, random dashed beside; PNG, atomic."""
    from .plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (direction, label) in enumerate((("image_to_text", "image → report"), ("text_to_image", "report → image"))):
        curve = result[direction]["curve"]
        if curve["k"]:
            ax.plot(curve["k"], curve["model"], marker="o", ms=3, color=f"C{i}", label=f"{label}: model")
            ax.plot(curve["k"], curve["random"], ls="--", color=f"C{i}", label=f"{label}: random")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("K (candidates retrieved)")
    ax.set_ylabel("recall@K (own partner within the top K)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path))


def partner_counts(query_group: np.ndarray, candidate_group: np.ndarray) -> np.ndarray:
    """(N,) how many candidates share each query's group id."""
    groups, sizes = np.unique(np.asarray(candidate_group, dtype=np.int64), return_counts=True)
    q = np.asarray(query_group, dtype=np.int64)
    pos = np.clip(np.searchsorted(groups, q), 0, max(len(groups) - 1, 0))
    if not len(groups):
        return np.zeros(q.shape[0], dtype=np.int64)
    return np.where(groups[pos] == q, sizes[pos], 0)


def exact_pair_evaluation(
    image_embeddings: np.ndarray,
    image_study_id: np.ndarray,
    report_embeddings: np.ndarray,
    report_study_id: np.ndarray,
    image_counts: np.ndarray | None = None,
    report_counts: np.ndarray | None = None,
    ks: Sequence[int] = EXACT_PAIR_KS,
) -> dict:
    """Both directions: `image_to_text` (queries: images, `image_counts` over them) and `text_to_image`
    (queries: reports, `report_counts` over them); see the module docstring."""
    img_study = np.asarray(image_study_id, dtype=np.int64)
    rep_study = np.asarray(report_study_id, dtype=np.int64)
    i2t = partner_ranks(image_embeddings, report_embeddings, img_study, rep_study)
    t2i = partner_ranks(report_embeddings, image_embeddings, rep_study, img_study)
    return {
        "settings": {"ks": [int(k) for k in ks], "ties": "mean rank of tied candidates"},
        "image_to_text": direction_result(i2t, partner_counts(img_study, rep_study), len(rep_study), image_counts, ks),
        "text_to_image": direction_result(t2i, partner_counts(rep_study, img_study), len(img_study), report_counts, ks),
    }
