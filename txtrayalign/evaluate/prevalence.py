"""Rare against common observations: each observation's figures against its training prevalence.

Training prevalence: the share of the training split's studies whose report labels (labels/reports.parquet)
have the observation positive (1). An observation is *rare* below `threshold` (evaluation.subgroups.
rare_below, default 0.05), else common. Per observation: the model's report-generation F1 at the summary k
(its top-k sentences' labels, positive = 1) and the zero-shot AUROC, with intervals; then the mean of the
rare and of the common ones and their difference, each resample averaging the same observations (those
defined on the full data), so the difference's interval comes from the shared resamples too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS

from .metrics import per_observation_scores, report_generation_arrays
from .subgroups import compare_many, overall_many


def training_prevalence(report_labels: pd.DataFrame, studies: pd.DataFrame) -> dict[str, float] | None:
    """Share of training studies with each observation positive; None without training studies."""
    train = studies.loc[studies["split"] == "train", "study_id"].unique()
    labels = report_labels[report_labels["study_id"].isin(train)].drop_duplicates("study_id")
    if labels.empty:
        return None
    return {o: float((labels[o] == 1).mean()) for o in OBSERVATIONS}


def f1_by_resample(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(1 + B, 14) per-observation F1 (positive = 1) under each weight row."""
    arrays = report_generation_arrays(truth, predicted)
    sums = {k: weights @ v for k, v in arrays.items()}
    return per_observation_scores(sums["tp"], sums["fp"], sums["fn"])["f1"]


def rare_against_common(prevalence: dict[str, float], figures: dict[str, np.ndarray], threshold: float) -> dict:
    """Per observation its prevalence and figures; per figure the rare and common means and their gap.

    `figures`: name -> (1 + B, 14) values, row 0 on the full data (NaN: undefined)."""
    prev = np.array([prevalence[o] for o in OBSERVATIONS])
    rare = prev < threshold
    out: dict = {"threshold": threshold, "rare": [o for o, r in zip(OBSERVATIONS, rare, strict=True) if r],
                 "common": [o for o, r in zip(OBSERVATIONS, rare, strict=True) if not r],
                 "observations": {o: {"prevalence": float(p)} for o, p in zip(OBSERVATIONS, prev, strict=True)},
                 "comparison": {}}
    for name, values in figures.items():
        entries = overall_many(OBSERVATIONS, values)
        for o in OBSERVATIONS:
            out["observations"][o][name] = entries[o]
        defined = ~np.isnan(values[0])
        r, c = rare & defined, ~rare & defined
        if r.any() and c.any():
            cmp = compare_many([name], values[:, r].mean(1, keepdims=True), values[:, c].mean(1, keepdims=True))[name]
            out["comparison"][name] = {"rare": cmp["value"], "rare_ci": [cmp["ci_low"], cmp["ci_high"]],
                                       "common": cmp["rest"], "gap": cmp["gap"], "gap_low": cmp["gap_low"],
                                       "gap_high": cmp["gap_high"], "rare_worse": cmp["flagged"],
                                       "n_rare": int(r.sum()), "n_common": int(c.sum())}
        else:
            out["comparison"][name] = None
    return out
