"""For whom it fails: every headline figure per patient group, with the group's gap to the rest.

Groups (`evaluation.subgroups`): each attribute of the patient table (`index/patients.parquet`: sex,
age, race, insurance, a table dataset's extra columns), age cut into bins (`age_bins`: 0-20, 20-40,
40-60, 60-80, 80+), and intersections (`age×sex`, `race×sex`). A query's group is its study's; a
query without a value is in no group of that attribute (counted as `missing`). A group with fewer
than `min_size` queries is reported as suppressed: its name only, never a number (nor its size).

Figures per group, each with its 95% percentile bootstrap interval from the evaluation's own resample
matrix (`bootstrap.resample_counts`): a group's statistic in resample b uses the draws of its queries
in b, so every group and the overall figure come from the same resamples. The gap to the rest is the
group's value minus the value on all other queries (those without a value included), resampled together (the
difference in each resample), so its interval is that of the difference, not two separate
intervals (`excludes_zero`: that 95% interval excludes 0). A gap is *flagged* when the group is worse
(lower retrieval, AUROC or TPR; higher FPR, duplicates or underdiagnosis) beyond chance over all the
groups compared on that figure (`adjust_flags`: Bonferroni on the bootstrap z of the gap), since at 95%
alone about 1 in 40 comparisons would be flagged with nothing there.
All sums over queries (retrieval hits, TPR/FPR counts, underdiagnosis) come from one matrix product
per group (`counts[:, rows] @ per_query[rows]`, all families' columns at once); the rest is the total
minus the group. AUROC: see `fairness.auroc_figures`.

A resample in which a figure is undefined for the group or its rest (no kept query, no positive
for a TPR, one class only for an AUROC) is kept out of that figure's interval and counted
(`resamples_left_out`); the value is still the full data's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SumsFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
HIGHER_IS_WORSE = ("fpr", "underdiagnosis", "duplicates")  # metric names whose larger value is worse
ALPHA = 0.05


@dataclass
class Group:
    attribute: str  # "sex", "age", "age×sex"
    name: str  # "F", "60-80", "60-80 & F"
    rows: np.ndarray  # query rows in the group
    patients: int
    suppressed: bool


def age_labels(bins: Sequence[float]) -> list[str]:
    """Bin names: [0, 20, 40] -> "0-20", "20-40", "40+"."""
    edges = [int(b) if float(b).is_integer() else b for b in bins]
    return [f"{a}-{b}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f"{edges[-1]}+"]


def attribute_values(patients: pd.DataFrame, attributes: Sequence[str], age_bins: Sequence[float]) -> dict:
    """Per query (rows of `patients`), each attribute as an object array of strings (None: unknown); age binned."""
    out: dict[str, np.ndarray] = {}
    n = len(patients)
    for a in attributes:
        if a not in patients.columns:
            out[a] = np.full(n, None, dtype=object)
        elif a == "age":
            age = pd.to_numeric(patients[a], errors="coerce").to_numpy(float)
            codes = np.searchsorted(np.asarray(age_bins, float), age, side="right") - 1
            labels = np.array(age_labels(age_bins), dtype=object)
            ok = ~np.isnan(age) & (codes >= 0)
            out[a] = np.where(ok, labels[np.clip(codes, 0, len(labels) - 1)], None)
        else:
            out[a] = np.array([str(v).strip() if isinstance(v, str) and v.strip() else
                               (str(v) if v is not None and not isinstance(v, str) and pd.notna(v) else None)
                               for v in patients[a].astype(object)], dtype=object)
    return out


def define_groups(patients: pd.DataFrame, attributes: Sequence[str], age_bins: Sequence[float],
                  intersections: Sequence[str], min_size: int) -> tuple[list[Group], dict]:
    """Groups of every attribute and intersection ("age×sex"), in sorted order; and per attribute its
    number of queries without a value. `patients` is aligned with the queries and has `subject_id`."""
    singles = list(dict.fromkeys([*attributes, *(p for i in intersections for p in i.split("×"))]))
    values = attribute_values(patients, singles, age_bins)
    for inter in intersections:
        cols = [values[p] for p in inter.split("×")]
        values[inter] = np.array([None if any(v is None for v in vs) else " & ".join(vs)
                                  for vs in zip(*cols, strict=True)], dtype=object)
    subjects = patients["subject_id"].to_numpy()
    groups, missing = [], {}
    for attribute in [*attributes, *intersections]:
        col = values[attribute]
        known = np.array([v is not None for v in col], dtype=bool)
        missing[attribute] = int((~known).sum())
        for name in sorted(set(col[known]), key=_group_order):
            inside = known & (col == name)
            rows = np.flatnonzero(inside)
            groups.append(Group(attribute, name, rows, int(len(np.unique(subjects[rows]))),
                                suppressed=len(rows) < min_size))
    return groups, missing


def _group_order(name: str):
    head = name.split("-")[0].split("+")[0].split(" ")[0]
    return (0, float(head), name) if head.replace(".", "", 1).isdigit() else (1, 0.0, name)


def _intervals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (B, M) resampled values: the percentile interval of the defined ones (numpy's linear
    method, all columns at once), and how many were not defined."""
    left_out = np.isnan(values).sum(axis=0)
    ordered = np.sort(values, axis=0)  # NaN last
    valid = values.shape[0] - left_out
    cols = np.arange(values.shape[1])
    bounds = []
    for q in (ALPHA / 2, 1 - ALPHA / 2):
        at = np.maximum(valid - 1, 0) * q
        low, frac = np.floor(at).astype(int), at - np.floor(at)
        high = np.minimum(low + 1, np.maximum(valid - 1, 0))
        v = ordered[low, cols] * (1 - frac) + ordered[high, cols] * frac
        bounds.append(np.where(valid > 0, v, np.nan))
    return bounds[0], bounds[1], left_out


def _num(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def compare_many(names: Sequence[str], group_values: np.ndarray, rest_values: np.ndarray) -> dict[str, dict]:
    """Figures of one group: (1 + B, M) values of the group and of the rest, row 0 the full data's."""
    diff = group_values - rest_values
    if group_values.shape[0] > 1:
        lo, hi, out_g = _intervals(group_values[1:])
        d_lo, d_hi, out_d = _intervals(diff[1:])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            z = diff[0] / np.nanstd(diff[1:], axis=0)
    else:
        lo = hi = d_lo = d_hi = z = np.full(len(names), np.nan)
        out_g = out_d = np.zeros(len(names), dtype=int)
    out = {}
    for i, metric in enumerate(names):
        excludes = np.isfinite(d_lo[i]) and (d_lo[i] > 0 or d_hi[i] < 0)
        worse = (d_lo[i] > 0) if metric.startswith(HIGHER_IS_WORSE) else (d_hi[i] < 0)
        out[metric] = {"value": _num(group_values[0, i]), "ci_low": _num(lo[i]), "ci_high": _num(hi[i]),
                       "rest": _num(rest_values[0, i]), "gap": _num(diff[0, i]), "gap_low": _num(d_lo[i]),
                       "gap_high": _num(d_hi[i]), "excludes_zero": bool(excludes),
                       "flagged": bool(excludes and worse), "better": bool(excludes and not worse),
                       "z": _num(z[i]) if np.isfinite(z[i]) else None,
                       "resamples_left_out": int(max(out_g[i], out_d[i]))}
    return out


def adjust_flags(figures: Sequence[dict], alpha: float = ALPHA) -> dict[str, float]:
    """Flag a group's gap only when it is worse beyond chance over all the groups compared on that figure:
    |gap| / (bootstrap standard error) above the normal quantile 1 - alpha / (2 m), m the number of groups
    with a gap on the figure (Bonferroni). Without it one gap in 40 would be flagged by chance, and an
    evaluation compares dozens. Returns each figure's critical value; `excludes_zero` keeps the 95% reading."""
    from statistics import NormalDist

    counts: dict[str, int] = {}
    for f in figures:
        for metric, e in f.items():
            if e.get("z") is not None:
                counts[metric] = counts.get(metric, 0) + 1
    critical = {m: NormalDist().inv_cdf(1 - alpha / (2 * c)) for m, c in counts.items()}
    for f in figures:
        for metric, e in f.items():
            worse = e.get("gap") is not None and ((e["gap"] > 0) if metric.startswith(HIGHER_IS_WORSE) else (e["gap"] < 0))
            beyond = e.get("z") is not None and abs(e["z"]) > critical[metric]
            e["flagged"], e["better"] = bool(beyond and worse), bool(beyond and not worse)
    return critical


def overall_many(names: Sequence[str], values: np.ndarray) -> dict[str, dict]:
    """Figures on all queries: (1 + B, M) values, row 0 the full data's."""
    if values.shape[0] > 1:
        lo, hi, left_out = _intervals(values[1:])
    else:
        lo = hi = np.full(len(names), np.nan)
        left_out = np.zeros(len(names), dtype=int)
    return {m: {"value": _num(values[0, i]), "ci_low": _num(lo[i]), "ci_high": _num(hi[i]),
                "resamples_left_out": int(left_out[i])} for i, m in enumerate(names)}


def _stack(metrics: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    names = list(metrics)
    return names, np.stack([np.asarray(metrics[m], dtype=np.float64) for m in names], axis=1)


def group_sums(columns: np.ndarray, weights: np.ndarray, groups: Sequence[Group]) -> tuple[np.ndarray, list]:
    """Sums of the per-query `columns` (N, C) under `weights` (1 + B, N) over all queries and per group.

    Per attribute the weights are gathered once in group order, then one product per group on its slice."""
    total = weights @ columns
    out: list[np.ndarray | None] = [None] * len(groups)
    by_attribute: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if not g.suppressed:
            by_attribute.setdefault(g.attribute, []).append(i)
    for members in by_attribute.values():
        rows = np.concatenate([groups[i].rows for i in members])
        w, x = weights[:, rows], columns[rows]
        start = 0
        for i in members:
            stop = start + len(groups[i].rows)
            out[i] = w[:, start:stop] @ x[start:stop]
            start = stop
    return total, out


def family_figures(families: Sequence[tuple[Mapping[str, np.ndarray], SumsFn]], weights: np.ndarray,
                   groups: Sequence[Group]) -> tuple[dict, list[dict]]:
    """Every metric of every (per-query arrays, statistic) family, overall and per group with its gap
    to the rest (all other queries: the total's sums minus the group's), from one set of products."""
    n = weights.shape[1]
    layout, blocks, start = [], [], 0
    for per_query, _ in families:
        names = {}
        for name, arr in per_query.items():
            col = np.asarray(arr, dtype=np.float64).reshape(n, -1)
            names[name] = (start, start + col.shape[1], np.ndim(arr) > 1)
            blocks.append(col)
            start += col.shape[1]
        layout.append(names)
    total, by_group = group_sums(np.concatenate(blocks, axis=1), weights, groups)

    def unpack(sums, f):
        return {name: sums[:, a:b] if wide else sums[:, a] for name, (a, b, wide) in layout[f].items()}

    overall_vals, group_out = {}, [dict() for _ in groups]
    for f, (_, statistic) in enumerate(families):
        overall_vals.update(statistic(unpack(total, f)))
        for i, sums in enumerate(by_group):
            if sums is not None:
                group_out[i][f] = (statistic(unpack(sums, f)), statistic(unpack(total - sums, f)))
    names, values = _stack(overall_vals)
    overall = overall_many(names, values)
    figures = []
    for i, parts in enumerate(group_out):
        if groups[i].suppressed:
            figures.append({})
            continue
        g_names, g_vals = _stack({m: v for gv, _ in parts.values() for m, v in gv.items()})
        _, r_vals = _stack({m: v for _, rv in parts.values() for m, v in rv.items()})
        figures.append(compare_many(g_names, g_vals, r_vals))
    return overall, figures


def with_full_row(counts: np.ndarray | None, n: int) -> np.ndarray:
    """(1 + B, N) weights: ones (the full data) above the resample counts."""
    ones = np.ones((1, n))
    return ones if counts is None else np.vstack([ones, counts])
