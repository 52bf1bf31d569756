"""Percentile bootstrap confidence intervals over queries, vectorised.

Every metric here is a function of *sums over queries* of per-query arrays (a mean is a sum of values
divided by a sum of validity indicators; micro scores are ratios of summed counts; macro scores are
averages of per-observation ratios of summed counts). A bootstrap resample draws N query indices with
replacement: with the (B, N) resample matrix `idx` drawn from a seeded `numpy.random.Generator`,
resample b's sum of a per-query array x is `x[idx[b]].sum()`, which equals `counts[b] @ x` where
`counts[b, i]` is how often query i was drawn. We compute all sums at once as one matrix product
`counts @ X` (X: every per-query column side by side), which is exactly the indexing result without
materialising a (B, N, columns) array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SumsFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def resample_counts(n: int, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """(n_boot, n) float64 matrix: how often each query is drawn in each resample.

    Built from the (n_boot, n) index matrix `Generator(PCG64(seed)).integers(0, n, (n_boot, n))`.
    """
    if n < 1:
        raise ValueError("cannot bootstrap an empty set of queries")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def resample_cluster_counts(clusters: np.ndarray, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """(n_boot, n) float64 matrix for queries grouped in clusters (a patient's studies): each resample
    draws the clusters with replacement and every query counts as often as its cluster was drawn.

    Studies of one patient share the patient's anatomy and history, so their outcomes go together;
    resampling them one by one treats them as independent and makes intervals of patient groups too
    narrow. `clusters`: one label per query; a label of its own per query gives `resample_counts`' law.
    """
    _, cluster_of_query = np.unique(np.asarray(clusters), return_inverse=True)
    drawn = resample_counts(int(cluster_of_query.max()) + 1, n_boot, seed)
    return drawn[:, cluster_of_query.ravel()]


def weighted_sums(per_query: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Sum every per-query array (N,) or (N, C) with each row of `weights` (B, N): returns (B,) or (B, C)."""
    names = list(per_query)
    if not names:
        return {}
    n = weights.shape[1]
    cols = [np.asarray(per_query[name], dtype=np.float64).reshape(n, -1) for name in names]
    widths = [c.shape[1] for c in cols]
    sums = weights @ np.concatenate(cols, axis=1)
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, width in zip(names, widths, strict=True):
        part = sums[:, start : start + width]
        out[name] = part if np.ndim(per_query[name]) > 1 else part[:, 0]
        start += width
    return out


def percentile_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """The (alpha/2, 1 - alpha/2) percentiles of the resample values, NaN (undefined) left out; None, None
    when none is defined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return None, None
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def point_and_interval(
    per_query: dict[str, np.ndarray],
    statistic: SumsFn,
    counts: np.ndarray | None,
    alpha: float = 0.05,
) -> dict[str, dict[str, float | None]]:
    """Every statistic's value on all queries and its percentile interval over the resamples.

    Args:
        per_query: named per-query arrays, (N,) or (N, C); NaN entries are not allowed here (callers
            pass value and validity separately; see `metrics`).
        statistic: maps sums (leading axis = resamples) to named metric arrays (leading axis kept).
        counts: the resample matrix from `resample_counts`, or None for no interval.
        alpha: 0.05 gives 95% intervals (2.5th and 97.5th percentiles).

    Returns:
        {metric: {"value": v, "ci_low": lo, "ci_high": hi}}; a metric undefined on the full data is
        None, and resamples where it is undefined (NaN) are left out of its percentiles.
    """
    return point_and_interval_many([(per_query, statistic)], counts, alpha)[0]


def point_and_interval_many(
    groups: Sequence[tuple[dict[str, np.ndarray], SumsFn]],
    counts: np.ndarray | None,
    alpha: float = 0.05,
) -> list[dict[str, dict[str, float | None]]]:
    """`point_and_interval` for several groups at once: all their sums in one matrix product."""
    merged = {(g, name): arr for g, (per_query, _) in enumerate(groups) for name, arr in per_query.items()}
    keys = list(merged)
    flat = {str(i): merged[key] for i, key in enumerate(keys)}
    n = next(iter(flat.values())).shape[0]
    full_flat = weighted_sums(flat, np.ones((1, n)))
    boot_flat = weighted_sums(flat, counts) if counts is not None else None
    results = []
    for g, (_, statistic) in enumerate(groups):
        names = [(str(i), key[1]) for i, key in enumerate(keys) if key[0] == g]
        full = statistic({name: full_flat[i] for i, name in names})
        boot = statistic({name: boot_flat[i] for i, name in names}) if boot_flat is not None else None
        out: dict[str, dict[str, float | None]] = {}
        for metric, values in full.items():
            v = float(values[0])
            entry: dict[str, float | None] = {
                "value": None if np.isnan(v) else v,
                "ci_low": None,
                "ci_high": None,
            }
            if boot is not None:
                entry["ci_low"], entry["ci_high"] = percentile_interval(boot[metric], alpha)
            out[metric] = entry
        results.append(out)
    return results


def interval_cell(value, low=None, high=None, digits: int = 3) -> str:
    """`value [low, high]` for a markdown table; `value` alone without an interval, `n/a` without a value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if low is None or (isinstance(low, float) and np.isnan(low)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def entry_cell(entry: dict | None, digits: int = 3) -> str:
    """`interval_cell` of one `point_and_interval` entry ({"value", "ci_low", "ci_high"}); n/a when None."""
    if not entry:
        return "n/a"
    return interval_cell(entry.get("value"), entry.get("ci_low"), entry.get("ci_high"), digits)


def interval_columns(name: str, entry: dict | None) -> dict:
    """Table columns `name`, `name_ci_low`, `name_ci_high` of one entry (None each when absent)."""
    entry = entry or {}
    return {name: entry.get("value"), f"{name}_ci_low": entry.get("ci_low"), f"{name}_ci_high": entry.get("ci_high")}
