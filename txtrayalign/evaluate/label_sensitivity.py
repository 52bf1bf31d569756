"""The labeller-sensitivity table: one retrieval scored by each labeller, averaging and uncertain policy.

Rows: (truth labeller, retrieved-text labeller) x uncertain counted as positive / as negative x
averaging (micro, macro, example-based F1), over the 14 observations (or `TOP5_OBSERVATIONS`).

- Labellers: the query side can be labelled by any labeller of text (`chexpert`: ours, `chexbert`)
  or carry the dataset's `official` labels; the retrieved text only by a labeller of text. Default
  pairs: each text labeller on both sides, then `official` truth against each text labeller. A pair
  whose labels are missing (no CheXbert checkpoint, no official table) is a row marked absent, with
  the reason, so the table keeps its shape.
- Positive: label 1, and -1 too when uncertain counts as positive; 0 and NaN are negative.
- micro F1: 2 TP / (2 TP + FP + FN) pooled over observations and queries; macro F1: the mean over
  observations of each one's F1 (0 where it has no true and no predicted positive), as the report-
  generation metrics; example-based F1: the mean over queries of each query's F1 over the
  observations, `empty_example` (1: both empty is full agreement) for a query with no positive on
  either side. They equal scikit-learn's `f1_score(average="micro" | "macro" | "samples")` (tested).
- Intervals: percentile bootstrap over queries, the resample counts shared with the other metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS
from txtrayalign.evaluate.bootstrap import interval_cell, point_and_interval_many

UNCERTAIN = ("positive", "negative")
AVERAGING = ("micro", "macro", "example")
SCOPES = {"all": list(range(len(OBSERVATIONS))), "top5": [OBSERVATIONS.index(o) for o in TOP5_OBSERVATIONS]}


def positives(labels: np.ndarray, uncertain: str) -> np.ndarray:
    """(N, 14) bool: label 1, or 1 and -1 when uncertain counts as positive."""
    if uncertain not in UNCERTAIN:
        raise ValueError(f"uncertain must be one of {UNCERTAIN}, got {uncertain!r}")
    labels = np.asarray(labels, dtype=np.float64)
    return (labels == 1) | ((labels == -1) if uncertain == "positive" else False)


def _f1_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """2TP / (2TP + FP + FN), `empty` where there is no positive on either side."""
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), empty)


def f1_arrays(
    truth: np.ndarray, predicted: np.ndarray, cols: Sequence[int] = SCOPES["all"], empty_example: float = 1.0
) -> dict[str, np.ndarray]:
    """Per-query arrays whose sums give the three F1s: tp/fp/fn (N, len(cols)), example F1 and 1 (N,)."""
    t = np.asarray(truth, dtype=bool)[:, cols]
    p = np.asarray(predicted, dtype=bool)[:, cols]
    tp, fp, fn = (t & p).astype(float), (~t & p).astype(float), (t & ~p).astype(float)
    example = _f1_of_counts(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1), empty_example)
    return {"tp": tp, "fp": fp, "fn": fn, "example": example, "n": np.ones(len(t))}


def f1_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """micro, macro and example-based F1 from summed `f1_arrays` (leading axis: resamples)."""
    tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
    return {
        "micro": _f1_of_counts(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)),
        "macro": _f1_of_counts(tp, fp, fn).mean(axis=1),
        "example": sums["example"] / sums["n"],
    }


def default_pairs(truth_names: Sequence[str], retrieved_names: Sequence[str]) -> list[tuple[str, str]]:
    """Each text labeller on both sides, then the official truth against each text labeller."""
    pairs = [(name, name) for name in truth_names if name in retrieved_names]
    pairs += [(t, r) for t in truth_names if t not in retrieved_names for r in retrieved_names]
    return pairs


def sensitivity_table(
    truth: Mapping[str, np.ndarray | str],
    retrieved: Mapping[str, np.ndarray | str],
    pairs: Sequence[tuple[str, str]] | None = None,
    counts: np.ndarray | None = None,
    scope: str = "all",
    empty_example: float = 1.0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The sensitivity table as rows (truth, retrieved, uncertain, averaging, value, ci_low, ci_high, absent).

    Args:
        truth: labeller name -> (N, 14) labels of each query's own report, or a string: why absent.
        retrieved: labeller name -> (N, 14) labels of each query's retrieved text, or why absent.
        pairs: (truth name, retrieved name) rows; default `default_pairs`.
        counts: (B, N) resample counts (`bootstrap.resample_counts`) or None for no intervals.
        scope: "all" (14 observations) or "top5".
    """
    cols = SCOPES[scope]
    pairs = list(pairs) if pairs is not None else default_pairs(list(truth), list(retrieved))
    groups, where = [], []
    rows: list[dict] = []
    for t_name, r_name in pairs:
        t_lab, r_lab = truth.get(t_name, "not configured"), retrieved.get(r_name, "not configured")
        absent = "; ".join(
            f"{side} {name}: {value}" for side, name, value in (("truth", t_name, t_lab), ("retrieved", r_name, r_lab))
            if isinstance(value, str)
        )
        for uncertain in UNCERTAIN:
            if absent:
                rows += [dict(truth=t_name, retrieved=r_name, uncertain=uncertain, averaging=a, value=np.nan,
                              ci_low=np.nan, ci_high=np.nan, absent=absent) for a in AVERAGING]
                continue
            if np.shape(t_lab) != np.shape(r_lab):
                raise ValueError(f"labels of {t_name} {np.shape(t_lab)} and {r_name} {np.shape(r_lab)} differ in shape")
            arrays = f1_arrays(positives(t_lab, uncertain), positives(r_lab, uncertain), cols, empty_example)
            groups.append((arrays, f1_statistic))
            where.append(len(rows))
            rows += [dict(truth=t_name, retrieved=r_name, uncertain=uncertain, averaging=a, absent="")
                     for a in AVERAGING]
    for start, result in zip(where, point_and_interval_many(groups, counts, alpha) if groups else [], strict=True):
        for i, a in enumerate(AVERAGING):
            entry = result[a]
            rows[start + i].update(value=entry["value"], ci_low=entry["ci_low"], ci_high=entry["ci_high"])
    table = pd.DataFrame(rows, columns=["truth", "retrieved", "uncertain", "averaging", "value", "ci_low",
                                        "ci_high", "absent"])
    return table.astype({"value": float, "ci_low": float, "ci_high": float})


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """One line per (truth, retrieved, uncertain), one column per averaging: `value [low, high]` or `absent`."""

    def cell(row) -> str:
        return "absent" if row["absent"] else interval_cell(row["value"], row["ci_low"], row["ci_high"], digits)

    header = "| truth labels | retrieved text labels | uncertain as | " + " | ".join(f"{a} F1" for a in AVERAGING) + " |"
    lines = [header, "|" + "---|" * (3 + len(AVERAGING))]
    notes = {}
    for (t, r, u), group in table.groupby(["truth", "retrieved", "uncertain"], sort=False):
        cells = [cell(row) for _, row in group.set_index("averaging").loc[list(AVERAGING)].reset_index().iterrows()]
        lines.append(f"| {t} | {r} | {u} | " + " | ".join(cells) + " |")
        if group["absent"].iloc[0]:
            notes[(t, r)] = group["absent"].iloc[0]
    lines += [""] + [f"- {t} / {r} absent: {why}" for (t, r), why in notes.items()] if notes else []
    return "\n".join(lines) + "\n"
