"""Linear probing of frozen image embeddings with 1%, 10% and 100% of the training labels (MGCA, GLoRIA, BenchX).

Per observation, a logistic regression on the training images' embeddings, scored by AUROC on the
query (test) images:

- Targets, training and test alike, as zero-shot's (`zeroshot.binary_targets`): 1 positive, 0
  negative; uncertain (-1) left out by default (or counted positive / negative); blank negative by
  default (or left out). Labels are the study's report labels.
- Label subsets: for each fraction f < 1 and seed s, round(f * N) training images (at least 1) drawn
  without replacement by `numpy.random.Generator(PCG64([s, round(f * 1e6)]))` from the dicom_id-sorted
  training images; 100% is one fit (every seed draws the same set). Written as `linear_probe_ids.csv`
  (fraction, seed, dicom_id).
- Model: features standardised with the subset's mean and standard deviation, then scikit-learn's
  L2-regularised logistic regression objective, 1/2 |w|^2 + C sum_i loss_i (intercept not penalised),
  solved for all 14 observations at once: the objectives are independent, so their sum (each scaled by
  1 / (C n_o), which leaves its minimiser unchanged) is minimised by one L-BFGS (scipy) whose every step
  is two (N, D) x (D, 14) products, stopping when every gradient entry is below 1e-5 (scikit-learn's
  default: 1e-4 on the same scaled objective). Same minimiser as `sklearn.linear_model.LogisticRegression(C=C)`
  per observation (tested). An observation with one class only in a subset is not fitted there.
- AUROC per observation: the mean over seeds of scikit-learn's `roc_auc_score`; 95% interval: the
  percentile bootstrap over test images (the evaluation's resamples) of that seed mean (the weighted
  Mann-Whitney statistic of `zeroshot.weighted_auroc`). `mean` / `mean_top5`: over observations with
  an AUROC; `seed_std`: the standard deviation of the mean AUROC over seeds. Random baseline: 0.5.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS

from .bootstrap import percentile_interval
from .zeroshot import binary_targets, weighted_auroc

log = logging.getLogger(__name__)

PROBE_FRACTIONS = (0.01, 0.1, 1.0)
PROBE_SEEDS = (0, 1, 2)


def draw_label_subsets(
    dicom_id: Sequence[str], fractions: Sequence[float] = PROBE_FRACTIONS, seeds: Sequence[int] = PROBE_SEEDS
) -> pd.DataFrame:
    """The training subsets (module docstring): `fraction`, `seed`, `dicom_id`, sorted by id in each."""
    ids = np.sort(np.asarray(dicom_id, dtype=str))
    parts = []
    for fraction in fractions:
        if fraction >= 1:
            parts.append(pd.DataFrame({"fraction": 1.0, "seed": int(seeds[0]), "dicom_id": ids}))
            continue
        size = max(1, int(round(fraction * ids.size)))
        for seed in seeds:
            rng = np.random.default_rng([int(seed), int(round(fraction * 1e6))])
            chosen = np.sort(ids[rng.choice(ids.size, size=size, replace=False)])
            parts.append(pd.DataFrame({"fraction": float(fraction), "seed": int(seed), "dicom_id": chosen}))
    return pd.concat(parts, ignore_index=True)


def _objective(params: np.ndarray, x: np.ndarray, y: np.ndarray, keep: np.ndarray, scale: np.ndarray, c: float):
    d, o = x.shape[1], y.shape[1]
    w = params[: d * o].reshape(d, o)
    b = params[d * o :]
    z = (x @ w.astype(np.float32)).astype(np.float64) + b
    loss = np.logaddexp(0.0, z) - y * z  # log-loss of a logit z and target y
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
    r = keep * (p - y) * scale  # scale = 1 / n_o per observation
    value = float((keep * loss * scale).sum() + 0.5 * ((w * w).sum(axis=0) * scale / c).sum())
    grad_w = (x.T @ r.astype(np.float32)).astype(np.float64) + w * scale / c
    return value, np.concatenate([grad_w.ravel(), r.sum(axis=0)])


def fit_logistic(x: np.ndarray, targets: np.ndarray, c: float = 1.0, max_iter: int = 1000, tol: float = 1e-5):
    """Weights (D, 14) and intercepts (14,) of all observations' regressions at once (NaN targets: left out).

    Observations with one class only get zero weights and NaN intercepts (not fitted).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    t = np.asarray(targets, dtype=np.float64)
    keep = ~np.isnan(t)
    y = np.where(keep, t, 0.0)
    fitted = ((y == 1) & keep).any(axis=0) & ((y == 0) & keep).any(axis=0)
    keep = keep & fitted
    scale = 1.0 / np.maximum(keep.sum(axis=0), 1)
    d, o = x.shape[1], t.shape[1]
    res = minimize(_objective, np.zeros(d * o + o), args=(x, y, keep.astype(np.float64), scale, c),
                   jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12})
    if not res.success:  # float32 products: a line search can stall within their rounding of the optimum
        level = logging.WARNING if np.abs(res.jac).max() > 1e-3 else logging.DEBUG
        log.log(level, "linear probe: L-BFGS stopped after %d iterations (largest gradient %.1e): %s",
                res.nit, np.abs(res.jac).max(), res.message)
    w = res.x[: d * o].reshape(d, o)
    b = np.where(fitted, res.x[d * o :], np.nan)
    return w, b


def probe_scores(train_x: np.ndarray, train_targets: np.ndarray, test_x: np.ndarray, c: float = 1.0) -> np.ndarray:
    """(N_test, 14) logits of the probe fitted on standardised training features; NaN columns: not fitted."""
    train_x = np.asarray(train_x, dtype=np.float32)
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w, b = fit_logistic((train_x - mean) / std, train_targets, c)
    return ((np.asarray(test_x, dtype=np.float32) - mean) / std) @ w.astype(np.float32) + b


def seed_aurocs(scores: np.ndarray, targets: np.ndarray, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """AUROC per observation (14,) by scikit-learn and per resample (B, 14) by the weighted statistic."""
    from sklearn.metrics import roc_auc_score

    n_res = 0 if counts is None else counts.shape[0]
    full, boot = np.full(len(OBSERVATIONS), np.nan), np.full((n_res, len(OBSERVATIONS)), np.nan)
    for j in range(len(OBSERVATIONS)):
        keep = ~np.isnan(targets[:, j])
        y = targets[keep, j]
        if np.isnan(scores[:, j]).any() or not ((y == 1).any() and (y == 0).any()):
            continue
        full[j] = roc_auc_score(y, scores[keep, j])
        if n_res:
            boot[:, j] = weighted_auroc(scores[keep, j], y, counts[:, keep])
    return full, boot


def _entry(value: float, boot: np.ndarray | None, alpha: float) -> dict:
    """The value and its interval; resamples in which an observation lacks a class have no AUROC: they
    are left out of the interval (and of a mean's) and counted, as in the zero-shot protocol."""
    entry = {"value": None if np.isnan(value) else float(value), "ci_low": None, "ci_high": None}
    if boot is not None and boot.size and not np.isnan(value):
        entry["ci_low"], entry["ci_high"] = percentile_interval(boot, alpha)
        entry["resamples_left_out"] = int(np.isnan(boot).sum())
    return entry


def summarise_fraction(full: np.ndarray, boot: np.ndarray, alpha: float = 0.05) -> dict:
    """Seed means of `full` (S, 14) and `boot` (S, B, 14) into per-observation and mean entries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: observations never fitted
        value = np.nanmean(full, axis=0)
        boot_mean = np.nanmean(boot, axis=0) if boot.shape[1] else None
    out = {"auroc": {}}
    for j, name in enumerate(OBSERVATIONS):
        col = None if boot_mean is None else boot_mean[:, j]
        out["auroc"][name] = {**_entry(value[j], col, alpha), "n_seeds": int((~np.isnan(full[:, j])).sum())}
    for key, names in (("mean", OBSERVATIONS), ("mean_top5", TOP5_OBSERVATIONS)):
        cols = [OBSERVATIONS.index(o) for o in names if not np.isnan(value[OBSERVATIONS.index(o)])]
        mean = float(value[cols].mean()) if cols else np.nan
        out[key] = _entry(mean, None if boot_mean is None or not cols else boot_mean[:, cols].mean(axis=1), alpha)
    per_seed = np.nanmean(full[:, cols], axis=1) if cols else np.array([])
    out["seed_std"] = float(per_seed.std()) if per_seed.size > 1 else None
    return out


def linear_probe_evaluation(
    train_embeddings: np.ndarray,
    train_dicom_id: Sequence[str],
    train_labels: np.ndarray,
    test_embeddings: np.ndarray,
    test_labels: np.ndarray,
    subsets: pd.DataFrame,
    c: float = 1.0,
    uncertain: str = "exclude",
    blank: str = "negative",
    counts: np.ndarray | None = None,
) -> dict:
    """metrics.json's `linear_probe`: per fraction, AUROC per observation and means with intervals.

    `subsets`: `draw_label_subsets`'s table; `counts`: (B, N_test) bootstrap resamples of the test images.
    """
    train_targets = binary_targets(train_labels, uncertain, blank)
    test_targets = binary_targets(test_labels, uncertain, blank)
    position = pd.Series(np.arange(len(train_dicom_id)), index=np.asarray(train_dicom_id, dtype=str))
    out: dict = {"settings": {"C": c, "uncertain": uncertain, "blank": blank, "features": "standardised"},
                 "n_train": int(len(train_dicom_id)), "n_test": int(len(test_labels)), "fractions": {},
                 "random": {"auroc": 0.5}}
    for fraction, part in subsets.groupby("fraction", sort=True):
        fulls, boots = [], []
        for seed, rows in part.groupby("seed", sort=True):
            idx = position.loc[rows["dicom_id"].to_numpy(str)].to_numpy()
            scores = probe_scores(np.asarray(train_embeddings)[idx], train_targets[idx], test_embeddings, c)
            full, boot = seed_aurocs(scores, test_targets, counts)
            fulls.append(full)
            boots.append(boot)
            log.info("linear probe %.3g%% seed %d: mean AUROC %.3f", 100 * fraction, seed, np.nanmean(full))
        entry = summarise_fraction(np.array(fulls), np.array(boots))
        entry.update(n_train=int(part.groupby("seed").size().iloc[0]), seeds=sorted(int(s) for s in part["seed"].unique()))
        out["fractions"][f"{fraction:g}"] = entry
    return out


def plot_auroc_against_share(result: dict, path: str | Path, title: str = "linear probe") -> Path:
    """Mean AUROC (14 and top 5) against the share of training labels (log axis), 95% intervals, chance dashed."""
    from .plots import plt, save_figure

    shares = sorted(result["fractions"], key=float)
    x = [100 * float(f) for f in shares]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (key, label) in enumerate((("mean", "mean AUROC (14)"), ("mean_top5", "mean AUROC (top 5)"))):
        entries = [result["fractions"][f][key] for f in shares]
        y = np.array([np.nan if e["value"] is None else e["value"] for e in entries])
        lo = np.array([np.nan if e["ci_low"] is None else e["ci_low"] for e in entries])
        hi = np.array([np.nan if e["ci_high"] is None else e["ci_high"] for e in entries])
        ax.errorbar(x, y, yerr=np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)]), marker="o", capsize=3,
                    color=f"C{i}", label=label)
    ax.axhline(0.5, ls="--", color="grey", lw=1, label="random")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}%" for v in x])
    ax.set_ylim(0.4, 1)
    ax.set_xlabel("share of the training labels")
    ax.set_ylabel("AUROC on the query images (95% interval)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path))
