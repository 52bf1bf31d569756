"""The per-group figures of the subgroup evaluation: retrieval, zero-shot AUROC, TPR/FPR, underdiagnosis.

- Retrieval: the headline hit metrics (`metrics.hit_arrays`) of the model's top-k sentences, every k.
- Intersections (age×sex, race×sex) get retrieval, TPR/FPR and underdiagnosis; AUROC only the single
  attributes (each attribute's AUROC costs about one pass of the overall AUROC's bootstrap).
- Zero-shot AUROC per observation (`zeroshot.weighted_auroc` on the group's images under the resample
  weights) and their mean over the observations with both classes in every reported group of the
  attribute and in its rest, so that the groups' means average the same observations.
- TPR and FPR per observation at one threshold per observation for everyone, the one maximising F1 on
  the validation split's queries (CheXclusion's choice); without validation queries, chosen on the
  evaluated queries themselves (said so in `threshold_from`: optimistic overall, the same for every
  group). An observation without a positive there gets 0.5 (the prompt pair's indifference point).
- Underdiagnosis (Seyyed-Kalantari et al. 2021): among queries whose labels have a finding (one of the
  12 pathologies positive; No Finding and Support Devices are not findings), the share called normal:
  * zero-shot: the No Finding score is at or above its threshold;
  * retrieval: none of the top-k (summary k) retrieved sentences has a pathology positive or uncertain,
    i.e. the retrieved text reads as a normal report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS

from .metrics import HEADLINE_METRICS, hit_arrays, hit_statistic
from .prevalence import f1_by_resample, rare_against_common
from .subgroups import (
    Group,
    adjust_flags,
    compare_many,
    define_groups,
    family_figures,
    overall_many,
    with_full_row,
)

NO_FINDING = OBSERVATIONS.index("No Finding")
BLOCK = 64  # resample columns per pass of the AUROC (see auroc_figures)
PATHOLOGIES = [i for i, o in enumerate(OBSERVATIONS) if o not in ("No Finding", "Support Devices")]


def f1_thresholds(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(14,) per observation the score threshold (predict positive at >= it) with the best F1; 0.5 without positives."""
    out = np.full(scores.shape[1], 0.5)
    for j in range(scores.shape[1]):
        keep = ~np.isnan(targets[:, j])
        s, y = scores[keep, j], targets[keep, j] == 1
        if not y.any():
            continue
        order = np.argsort(-s, kind="stable")
        s, y = s[order], y[order]
        tp, fp = np.cumsum(y), np.cumsum(~y)
        last = np.r_[s[1:] != s[:-1], True]  # a cut between distinct scores only
        f1 = 2 * tp / (tp + fp + y.sum())
        best = np.flatnonzero(last)[np.argmax(f1[last])]
        out[j] = s[best]
    return out


def rate_arrays(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    called = scores >= thresholds[None, :]
    pos, neg = targets == 1, targets == 0
    return {"pos": pos.astype(float), "neg": neg.astype(float), "tp": (pos & called).astype(float),
            "fp": (neg & called).astype(float)}


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def rate_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tpr, fpr = _div(sums["tp"], sums["pos"]), _div(sums["fp"], sums["neg"])
    out = {f"tpr:{o}": tpr[..., j] for j, o in enumerate(OBSERVATIONS)}
    out.update({f"fpr:{o}": fpr[..., j] for j, o in enumerate(OBSERVATIONS)})
    return out


def underdiagnosis_arrays(labels: np.ndarray, normal: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per query: has a finding, and for each way of calling it normal, whether it was (see module doc)."""
    finding = (np.asarray(labels)[:, PATHOLOGIES] == 1).any(axis=1)
    return {"finding": finding.astype(float), **{name: (finding & called).astype(float) for name, called in normal.items()}}


def underdiagnosis_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"underdiagnosis_{name}": _div(v, sums["finding"]) for name, v in sums.items() if name != "finding"}


def retrieval_normal(retrieved_labels: np.ndarray) -> np.ndarray:
    """(N,) the retrieved sentences (N, k, 14) have no pathology positive or uncertain."""
    return ~np.isin(retrieved_labels[:, :, PATHOLOGIES], (1.0, -1.0)).any(axis=(1, 2))


def retrieval_statistic(k: int):
    def statistic(sums):
        return {f"{m}@{k}": v for m, v in hit_statistic(sums).items() if m in HEADLINE_METRICS}
    return statistic


def _tie_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted sequence of keys: each element's first index and exclusive end index among its equals."""
    new = np.r_[True, np.any(keys[1:] != keys[:-1], axis=-1) if keys.ndim > 1 else keys[1:] != keys[:-1]]
    starts = np.flatnonzero(new)
    block = np.cumsum(new) - 1
    ends = np.r_[starts[1:], len(new)]
    return starts[block], ends[block]


def _cumulative(w: np.ndarray) -> np.ndarray:
    """(n + 1, B) running sums over the rows of w (n, B), a zero row first."""
    out = np.zeros((w.shape[0] + 1, w.shape[1]), dtype=w.dtype)
    np.cumsum(w, axis=0, out=out[1:])
    return out


def _within_groups(wp: np.ndarray, wn: np.ndarray, s: np.ndarray, c: np.ndarray, m: int, ties: bool) -> np.ndarray:
    """(m, B) each group's own Mann-Whitney numerator (pairs inside the group), rows in score order,
    `c` each row's group (-1: none): one running sum per group in (group, score) order."""
    perm = np.argsort(c, kind="stable")  # by group, score order kept inside
    cs, gwp, gwn = c[perm], wp[perm], wn[perm]
    out = np.zeros((m, wp.shape[1]))
    bounds = np.searchsorted(cs, np.arange(m + 1))
    if ties:
        start, end = _tie_bounds(np.stack([cs, s[perm]], axis=1))
        gc = _cumulative(gwn)
        inside = gwp * (0.5 * (gc[start] + gc[end]) - gc[np.searchsorted(cs, cs, side="left")])
    for j in range(m):
        a, b = bounds[j], bounds[j + 1]
        if ties:
            out[j] = inside[a:b].sum(0, dtype=np.float64)
        elif b > a:  # a positive carries no negative weight: the running sum at it is what lies below
            out[j] = np.einsum("ib,ib->b", gwp[a:b], np.cumsum(gwn[a:b], axis=0), dtype=np.float64)
    return out


def _observation_aurocs(score: np.ndarray, target: np.ndarray, weights_t: np.ndarray, codes: list[np.ndarray],
                        sizes: list[int]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """AUROC of one observation under each weight column of `weights_t` (n, 1 + B): all queries (1 + B,)
    and, per attribute, each group's and its rest's (1 + B, groups), by the weighted Mann-Whitney
    statistic (ties halved).

    Sorted by score once; a pair (positive, negative) counts `w_p w_n` (1/2 when tied). A group's
    numerator comes from running sums in (group, score) order (`_within_groups`); the rest's is the whole
    minus the pairs with a member of the group: num(rest) = num(all) - cross_pos - cross_neg + num(group),
    the cross terms and the class weights of every group of every attribute from one product each."""
    order = np.argsort(score, kind="stable")
    s, pos, neg = score[order], (target[order] == 1)[:, None], (target[order] == 0)[:, None]
    w = weights_t[order]
    wp, wn = w * pos, w * neg
    cn, cp = _cumulative(wn), _cumulative(wp)
    ties = bool((s[1:] == s[:-1]).any())
    if ties:
        start, end = _tie_bounds(s)
        below, over = 0.5 * (cn[start] + cn[end]), cp[-1] - 0.5 * (cp[start] + cp[end])
    else:
        below, over = cn[:-1], cp[-1] - cp[1:]
    contrib_pos, contrib_neg = wp * below, wn * over  # each place's pairs with the whole
    num_all, p_all, n_all = contrib_pos.sum(0, dtype=np.float64), cp[-1].astype(np.float64), cn[-1].astype(np.float64)
    coded = [code[order] for code in codes]
    offsets = np.cumsum([0, *sizes])
    onehot = np.zeros((offsets[-1], len(s)), dtype=w.dtype)
    for c, off in zip(coded, offsets, strict=False):
        known = np.flatnonzero(c >= 0)
        onehot[off + c[known], known] = 1.0
    p_g, n_g = (onehot @ wp).astype(np.float64), (onehot @ wn).astype(np.float64)
    cross = (onehot @ contrib_pos).astype(np.float64) + (onehot @ contrib_neg)
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        everyone = num_all / (p_all * n_all)
        for c, m, off in zip(coded, sizes, offsets, strict=False):
            rows = slice(off, off + m)
            num_g = _within_groups(wp, wn, s, c, m, ties)
            num_rest = num_all - cross[rows] + num_g
            out.append(((num_g / (p_g[rows] * n_g[rows])).T,
                        (num_rest / ((p_all - p_g[rows]) * (n_all - n_g[rows]))).T))
    return everyone, out


def auroc_figures(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                  groups: Sequence[Group]) -> tuple[dict, list[dict], np.ndarray]:
    """AUROC per observation and their mean (`auroc_mean`) overall and per group, with gaps to the rest
    (single attributes; intersections get the count-based figures only, see the module docstring).

    The mean is over the observations with both classes among all queries, in every reported group of
    the attribute and in its rest, so that the groups of an attribute average the same observations;
    a resample where one of them is undefined is left out of the mean's interval."""
    attributes = list(dict.fromkeys(g.attribute for g in groups if not g.suppressed and "×" not in g.attribute))
    members = {a: [i for i, g in enumerate(groups) if g.attribute == a and not g.suppressed] for a in attributes}
    codes = []
    for a in attributes:
        code = np.full(scores.shape[0], -1)
        for j, i in enumerate(members[a]):
            code[groups[i].rows] = j
        codes.append(code)
    # queries along rows (the gathers read whole rows), float32: resample counts are small integers
    # in blocks of resamples small enough for the processor's cache: every pass of one observation over
    # a block then reads the cache, not memory (the statistic is computed per resample column anyway)
    blocks = [np.ascontiguousarray(weights[b:b + BLOCK].T, dtype=np.float32) for b in range(0, weights.shape[0], BLOCK)]
    everyone = np.full((weights.shape[0], scores.shape[1]), np.nan)
    per_attribute = [(np.full((weights.shape[0], len(members[a]), scores.shape[1]), np.nan),) * 1 +
                     (np.full((weights.shape[0], len(members[a]), scores.shape[1]), np.nan),) for a in attributes]
    for j in range(scores.shape[1]):
        keep = ~np.isnan(targets[:, j])
        y = targets[keep, j]
        if not ((y == 1).any() and (y == 0).any()):
            continue
        kept_codes, sizes = [c[keep] for c in codes], [len(members[a]) for a in attributes]
        for b, block in enumerate(blocks):
            cols = slice(b * BLOCK, b * BLOCK + block.shape[1])
            all_j, parts = _observation_aurocs(scores[keep, j], y, block[keep], kept_codes, sizes)
            everyone[cols, j] = all_j
            for (g_vals, r_vals), (g_j, r_j) in zip(per_attribute, parts, strict=True):
                g_vals[cols, :, j], r_vals[cols, :, j] = g_j, r_j
    names = [f"auroc:{o}" for o in OBSERVATIONS]
    overall = overall_many(names, everyone)
    figures: list[dict] = [{} for _ in groups]
    for a, (g_vals, r_vals) in zip(attributes, per_attribute, strict=True):
        full = ~np.isnan(g_vals[0]).any(axis=0) & ~np.isnan(r_vals[0]).any(axis=0) & ~np.isnan(everyone[0])
        for j, i in enumerate(members[a]):
            figures[i] = compare_many(names, g_vals[:, j], r_vals[:, j])
            if full.any():
                figures[i].update(compare_many(["auroc_mean"], g_vals[:, j, full].mean(1, keepdims=True),
                                               r_vals[:, j, full].mean(1, keepdims=True)))
                figures[i]["auroc_mean"]["observations"] = [o for o, f in zip(OBSERVATIONS, full, strict=True) if f]
        if full.any():
            overall.setdefault("auroc_mean_by_attribute", {})[a] = overall_many(
                ["auroc_mean"], everyone[:, full].mean(1, keepdims=True))["auroc_mean"]
    return overall, figures, everyone


def _group_json(g: Group, figures: dict) -> dict:
    head = {"attribute": g.attribute, "group": g.name, "suppressed": g.suppressed}
    if g.suppressed:
        return head
    return {**head, "n": int(len(g.rows)), "patients": g.patients, "metrics": figures}


def subgroup_evaluation(patients: pd.DataFrame, query_labels: np.ndarray, retrieved_labels: np.ndarray,
                        ks: Sequence[int], summary_k: int, counts: np.ndarray | None, settings: Mapping,
                        zeroshot_scores: np.ndarray | None = None, zeroshot_targets: np.ndarray | None = None,
                        validation: tuple[np.ndarray, np.ndarray] | None = None,
                        prevalence: dict[str, float] | None = None, predicted: np.ndarray | None = None) -> dict:
    """metrics.json's `subgroups`: every group's figures with intervals and gaps (see `subgroups`).

    `patients`: one row per query (subject_id + attribute columns); `retrieved_labels` (N, max k, 14):
    labels of the model's retrieved sentences; `zeroshot_scores`/`zeroshot_targets` (N, 14) and
    `validation` (scores, targets) of the validation queries for the thresholds; `prevalence` (training
    share positive per observation) and `predicted` (N, 14: labels of the top-summary_k sentences) for
    rare against common (`prevalence.rare_against_common`, threshold `settings["rare_below"]`).
    """
    groups, missing = define_groups(patients, settings["attributes"], settings["age_bins"],
                                    settings["intersections"], settings["min_size"])
    weights = with_full_row(counts, len(patients))
    families = [(hit_arrays(query_labels, retrieved_labels[:, :k]), retrieval_statistic(k)) for k in ks]
    normal = {"retrieval": retrieval_normal(retrieved_labels[:, :summary_k])}
    threshold_from, thresholds, auroc = None, None, ({}, [{} for _ in groups], None)
    if zeroshot_scores is not None:
        if validation is not None and validation[0].shape[0]:
            thresholds, threshold_from = f1_thresholds(*validation), "validation queries (best F1)"
        else:
            thresholds = f1_thresholds(zeroshot_scores, zeroshot_targets)
            threshold_from = "the evaluated queries (best F1; no validation queries)"
        normal["zeroshot"] = zeroshot_scores[:, NO_FINDING] >= thresholds[NO_FINDING]
        families.append((rate_arrays(zeroshot_scores, zeroshot_targets, thresholds), rate_statistic))
        auroc = auroc_figures(zeroshot_scores, zeroshot_targets, weights, groups)
    families.append((underdiagnosis_arrays(query_labels, normal), underdiagnosis_statistic))
    overall, figures = family_figures(families, weights, groups)
    overall.update(auroc[0])
    for f, part in zip(figures, auroc[1], strict=True):
        f.update(part)
    critical = adjust_flags(figures)
    rare_common = None
    if prevalence is not None and predicted is not None:
        per_observation = {"f1": f1_by_resample(query_labels, predicted, weights)}
        if auroc[2] is not None:
            per_observation["auroc"] = auroc[2]
        rare_common = rare_against_common(prevalence, per_observation, settings["rare_below"])
    return {
        "settings": {**{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in settings.items()},
                     "summary_k": int(summary_k), "confidence": 1 - 0.05,
                     "flag_critical_z": critical,
                     "threshold_from": threshold_from,
                     "thresholds": None if thresholds is None else dict(zip(OBSERVATIONS, map(float, thresholds), strict=True))},
        "n_queries": int(len(patients)),
        "missing": missing,
        "overall": overall,
        "groups": [_group_json(g, f) for g, f in zip(groups, figures, strict=True)],
        "rare_common": rare_common,
    }
