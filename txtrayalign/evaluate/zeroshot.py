"""Zero-shot classification of the 14 observations from image and prompt embeddings (CheXzero's protocol).

For each observation a positive and a negative prompt are embedded by the text encoder; an image's
score is the softmax over the pair of its similarities, i.e. the probability of the positive prompt:
`exp(s_pos / T) / (exp(s_pos / T) + exp(s_neg / T))` with cosine similarities `s` and temperature T
(1 in CheXzero; any T > 0 gives the same AUROC, which depends only on the order of `s_pos - s_neg`).
The default prompts are CheXzero's pair template ("{}", "no {}") on the lower-cased observation name,
except No Finding, whose template pair reads "no finding" / "no no finding"; it uses
"no acute cardiopulmonary process" / "acute cardiopulmonary process" instead. Every pair can be
replaced (`prompts=` / config `evaluation.zeroshot.prompts: {Observation: [positive, negative]}`).

Targets from the labels (1 / 0 / -1 / NaN in `OBSERVATIONS` order): 1 is positive, 0 negative;
uncertain (-1) is left out by default (`uncertain="exclude"`, or counted as "positive"/"negative");
not mentioned (NaN) is negative by default (`blank="negative"`: a report that does not mention a
finding is read as its absence), or left out (`blank="exclude"`). An observation without both
classes among the kept images has no AUROC (None, with its counts).

AUROC: scikit-learn's `roc_auc_score` on all images. 95% intervals: percentile bootstrap over images,
the same resample-count matrix as the retrieval metrics (`bootstrap.resample_counts`); a resample's
AUROC is the weighted Mann-Whitney statistic (ties count one half), which is what `roc_auc_score`
gives on the resampled images (tested), computed for all resamples at once instead of B x 14
scikit-learn calls. The mean AUROC (all observations with an AUROC, and the five of
`TOP5_OBSERVATIONS`) gets its interval from the per-resample means of the same observations. A
resample in which an observation lacks a class has no AUROC for it: it is left out of that interval
(and of the means'), and counted (`resamples_left_out`). An observation whose whole interval lies
below 0.5 is flagged `prompt_inverted` ("prompt inverted?" in the summary): the prompts rank the
images the wrong way round, as a model that met a finding's name mostly in negations does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.evaluate.bootstrap import entry_cell, percentile_interval, resample_counts

PAIR_TEMPLATE: tuple[str, str] = ("{}", "no {}")
PROMPT_OVERRIDES: dict[str, tuple[str, str]] = {
    "No Finding": ("no acute cardiopulmonary process", "acute cardiopulmonary process"),
}
UNCERTAIN_CHOICES = ("exclude", "positive", "negative")
BLANK_CHOICES = ("negative", "exclude")
MEAN_ROWS = {"mean": list(OBSERVATIONS), "mean_top5": list(TOP5_OBSERVATIONS)}


def default_prompts() -> dict[str, tuple[str, str]]:
    """Positive and negative prompt of every observation, in `OBSERVATIONS` order."""
    return {
        name: PROMPT_OVERRIDES.get(name, (PAIR_TEMPLATE[0].format(name.lower()), PAIR_TEMPLATE[1].format(name.lower())))
        for name in OBSERVATIONS
    }


def resolve_prompts(
    overrides: Mapping[str, Sequence[str]] | None = None, key: str = "evaluation.zeroshot.prompts"
) -> dict[str, tuple[str, str]]:
    """The default prompts with `overrides` applied; an unknown observation or a bad pair names its key."""
    prompts = default_prompts()
    for name, pair in (overrides or {}).items():
        if name not in prompts:
            raise InputError(f"{key}.{name}: not an observation; expected one of {OBSERVATIONS}")
        if (
            isinstance(pair, str)
            or len(pair) != 2
            or not all(isinstance(p, str) and p.strip() for p in pair)
        ):
            raise InputError(f"{key}.{name}: expected [positive prompt, negative prompt], got {pair!r}")
        prompts[name] = (pair[0], pair[1])
    return prompts


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def prompt_embeddings(
    encode_texts: Callable[[list[str]], np.ndarray], prompts: Mapping[str, Sequence[str]] | None = None
) -> np.ndarray:
    """(14, 2, D) embeddings of every observation's (positive, negative) prompt, one encoder call."""
    prompts = prompts or default_prompts()
    texts = [p for name in OBSERVATIONS for p in prompts[name]]
    emb = np.asarray(encode_texts(texts), dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"text encoder returned {emb.shape} for {len(texts)} prompts; expected ({len(texts)}, D)")
    return emb.reshape(len(OBSERVATIONS), 2, -1)


def pair_scores(image_embeddings: np.ndarray, prompt_emb: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, 14) probability of the positive prompt: softmax over (cos(img, pos), cos(img, neg)) / temperature."""
    img = _normalise(image_embeddings)
    txt = _normalise(prompt_emb)
    if img.ndim != 2 or txt.shape[:2] != (len(OBSERVATIONS), 2) or txt.shape[2] != img.shape[1]:
        raise ValueError(f"image embeddings {img.shape} and prompt embeddings {txt.shape} do not fit (N, D), (14, 2, D)")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    sims = np.einsum("nd,opd->nop", img, txt) / temperature  # (N, 14, 2)
    # softmax over the pair = logistic of the difference, computed without overflow
    return 1.0 / (1.0 + np.exp(sims[:, :, 1] - sims[:, :, 0]))


def binary_targets(labels: np.ndarray, uncertain: str = "exclude", blank: str = "negative") -> np.ndarray:
    """(N, 14) float: 1 positive, 0 negative, NaN left out, from 1 / 0 / -1 / NaN labels."""
    if uncertain not in UNCERTAIN_CHOICES:
        raise InputError(f"evaluation.zeroshot.uncertain: {uncertain!r} is not one of {UNCERTAIN_CHOICES}")
    if blank not in BLANK_CHOICES:
        raise InputError(f"evaluation.zeroshot.blank: {blank!r} is not one of {BLANK_CHOICES}")
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != len(OBSERVATIONS):
        raise ValueError(f"labels must be (N, {len(OBSERVATIONS)}), got {labels.shape}")
    out = np.full(labels.shape, np.nan)
    out[labels == 1] = 1.0
    out[labels == 0] = 0.0
    out[labels == -1] = {"exclude": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    if blank == "negative":
        out[np.isnan(labels)] = 0.0
    return out


def weighted_auroc(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of `scores` (n,) for binary `y` (n,) under each row of `weights` (B, n): (B,), NaN when undefined.

    The weighted Mann-Whitney statistic: P(score of a positive > score of a negative) + 1/2 P(equal),
    pairs weighted by the product of their weights; with resample counts as weights it is the AUROC of
    the resampled images. Per resample: cumulative negative weight in score order, read at each
    positive's place (strictly below it and up to its score, halving ties), so O(B n) in all.
    """
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(y) == 1
    w = np.asarray(weights, dtype=np.float64)
    neg_order = np.flatnonzero(~pos)[np.argsort(scores[~pos], kind="stable")]
    neg_scores = scores[neg_order]
    cum = np.zeros((w.shape[0], neg_order.size + 1))
    np.cumsum(w[:, neg_order], axis=1, out=cum[:, 1:])
    pos_scores = scores[pos]
    below = np.searchsorted(neg_scores, pos_scores, side="left")  # negatives strictly below
    upto = np.searchsorted(neg_scores, pos_scores, side="right")  # negatives below or equal
    w_pos = w[:, pos]
    num = 0.5 * np.einsum("bi,bi->b", w_pos, cum[:, below] + cum[:, upto])
    den = w_pos.sum(axis=1) * cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auroc_table(
    scores: np.ndarray,
    targets: np.ndarray,
    counts: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """AUROC per observation with percentile bootstrap intervals, then the `mean` and `mean_top5` rows.

    Args:
        scores: (N, 14) zero-shot scores (`pair_scores`), higher = more likely positive.
        targets: (N, 14) 1 / 0 / NaN (left out), from `binary_targets`.
        counts: (B, N) resample counts (`bootstrap.resample_counts`), shared with other metrics; when None,
            drawn from `n_boot` and `seed` (n_boot=0: no intervals).

    Returns:
        one row per observation (`observation`, `auroc`, `ci_low`, `ci_high`, `n_positive`, `n_negative`,
        `n_excluded`), then `mean` / `mean_top5` (NaN counts); AUROC NaN where undefined.
    """
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if scores.shape != targets.shape or scores.ndim != 2 or scores.shape[1] != len(OBSERVATIONS):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (N, {len(OBSERVATIONS)})")
    n = scores.shape[0]
    if counts is None and n_boot > 0:
        counts = resample_counts(n, n_boot, seed)
    if counts is not None and counts.shape[1] != n:
        raise ValueError(f"resample counts cover {counts.shape[1]} images, scores {n}")
    n_res = 0 if counts is None else counts.shape[0]
    boot = np.full((n_res, len(OBSERVATIONS)), np.nan)
    rows = []
    for j, name in enumerate(OBSERVATIONS):
        keep = ~np.isnan(targets[:, j])
        y = targets[keep, j]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        value = np.nan
        if n_pos and n_neg:
            value = float(roc_auc_score(y, scores[keep, j]))
            if n_res:
                boot[:, j] = weighted_auroc(scores[keep, j], y, counts[:, keep])
        lo, hi = percentile_interval(boot[:, j], alpha) if n_res and n_pos and n_neg else (None, None)
        rows.append(dict(observation=name, auroc=value, ci_low=lo, ci_high=hi, n_positive=n_pos,
                         n_negative=n_neg, n_excluded=int((~keep).sum()),
                         resamples_left_out=int(np.isnan(boot[:, j]).sum()) if n_pos and n_neg else 0))
    full = np.array([r["auroc"] for r in rows])
    for row_name, names in MEAN_ROWS.items():
        cols = [OBSERVATIONS.index(o) for o in names if not np.isnan(full[OBSERVATIONS.index(o)])]
        value = float(full[cols].mean()) if cols else np.nan
        # the mean of the same observations in every resample: one where any of them lacks a class is
        # left out (counted), never averaged over fewer observations than the value it brackets
        per_resample = boot[:, cols].mean(axis=1) if cols else np.full(n_res, np.nan)
        lo, hi = percentile_interval(per_resample, alpha) if cols and n_res else (None, None)
        rows.append(dict(observation=row_name, auroc=value, ci_low=lo, ci_high=hi, n_positive=np.nan,
                         n_negative=np.nan, n_excluded=np.nan,
                         resamples_left_out=int(np.isnan(per_resample).sum()) if cols else 0))
    table = pd.DataFrame(rows)
    return table.astype({"ci_low": float, "ci_high": float})


def zeroshot_evaluation(
    image_embeddings: np.ndarray,
    labels: np.ndarray,
    encode_texts: Callable[[list[str]], np.ndarray] | None = None,
    prompt_emb: np.ndarray | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    uncertain: str = "exclude",
    blank: str = "negative",
    temperature: float = 1.0,
    counts: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    alpha: float = 0.05,
) -> dict:
    """Everything `metrics.json` holds under `zeroshot`: settings, prompts, AUROC per observation and means.

    Give either `encode_texts` (list of prompts -> (M, D) embeddings) or `prompt_emb` (14, 2, D).
    """
    resolved = resolve_prompts(prompts)
    if prompt_emb is None:
        if encode_texts is None:
            raise ValueError("give encode_texts or prompt_emb")
        prompt_emb = prompt_embeddings(encode_texts, resolved)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape[0] != np.shape(image_embeddings)[0]:
        raise ValueError(f"{np.shape(image_embeddings)[0]} image embeddings but {labels.shape[0]} label rows")
    scores = pair_scores(image_embeddings, prompt_emb, temperature)
    table = auroc_table(scores, binary_targets(labels, uncertain, blank), counts, n_boot, seed, alpha)
    return to_json(table, resolved, uncertain=uncertain, blank=blank, temperature=temperature, n=len(labels))


def _none(v) -> float | int | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def prompt_inverted(row: Mapping) -> bool:
    """The whole interval below 0.5: the prompts rank the images the wrong way round (a model that met
    the finding's name mostly in negations), worth checking `evaluation.zeroshot.prompts`."""
    return row.get("ci_high") is not None and not np.isnan(row["ci_high"]) and float(row["ci_high"]) < 0.5


def to_json(table: pd.DataFrame, prompts: Mapping[str, Sequence[str]], **settings) -> dict:
    """JSON-ready dict: {"settings", "prompts", "auroc": {obs: {value, ci_low, ci_high, n_*}}, "mean", "mean_top5"}."""
    out: dict = {"settings": settings, "prompts": {k: list(v) for k, v in prompts.items()}, "auroc": {}}
    for row in table.to_dict("records"):
        entry = {"value": _none(row["auroc"]), "ci_low": _none(row["ci_low"]), "ci_high": _none(row["ci_high"]),
                 "resamples_left_out": int(row["resamples_left_out"]), "prompt_inverted": prompt_inverted(row)}
        if row["observation"] in MEAN_ROWS:
            out[row["observation"]] = entry
        else:
            entry.update({k: int(row[k]) for k in ("n_positive", "n_negative", "n_excluded")})
            out["auroc"][row["observation"]] = entry
    return out


def plot_auroc(result: dict, path: str | Path, title: str = "zero-shot AUROC") -> Path:
    """Horizontal bars of AUROC per observation with their 95% intervals, chance (0.5) dashed; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from txtrayalign.utils import atomic_path

    names = list(result["auroc"]) + ["mean"]
    entries = [result["auroc"][o] for o in names[:-1]] + [result["mean"]]
    value = np.array([np.nan if e["value"] is None else e["value"] for e in entries])
    lo = np.array([np.nan if e["ci_low"] is None else e["ci_low"] for e in entries])
    hi = np.array([np.nan if e["ci_high"] is None else e["ci_high"] for e in entries])
    y = np.arange(len(names))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    # never negative: a value outside its interval (or an interval left undefined) draws no bar there
    err = np.clip(np.vstack([np.nan_to_num(value - lo), np.nan_to_num(hi - value)]), 0, None)
    ax.barh(y, np.nan_to_num(value), xerr=err, color=["C0"] * (len(names) - 1) + ["C1"], capsize=2)
    for yi, v in zip(y, value, strict=True):
        if np.isnan(v):
            ax.text(0.01, yi, "n/a (one class only)", va="center", fontsize=7)
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC (95% bootstrap interval)")
    ax.set_title(title)
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def flagged_cell(entry: dict | None, digits: int = 3) -> str:
    """`entry_cell`, with "prompt inverted?" when the whole interval lies below 0.5."""
    return entry_cell(entry, digits) + (" prompt inverted?" if entry and entry.get("prompt_inverted") else "")


def to_markdown(results: Mapping[str, dict], digits: int = 3) -> str:
    """summary.md section: one row per observation (then the means), one column per experiment/method."""
    names = list(results)
    lines = ["| observation | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    first = results[names[0]]
    for obs in first["auroc"]:
        lines.append(f"| {obs} | " + " | ".join(flagged_cell(results[n]["auroc"][obs], digits) for n in names) + " |")
    for key, label in (("mean", "**mean (14)**"), ("mean_top5", "**mean (top 5)**")):
        lines.append(f"| {label} | " + " | ".join(entry_cell(results[n][key], digits) for n in names) + " |")
    return "\n".join(lines) + "\n"
