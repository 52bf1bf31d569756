"""Figures of one experiment's metrics.json (matplotlib, Agg backend), written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from txtrayalign.constants import OBSERVATIONS  # noqa: E402
from txtrayalign.utils import atomic_path  # noqa: E402

HEADLINE = ("flat_hit", "precision", "recall", "f1")


def headline_k(metrics: dict, preferred: int = 2) -> str:
    """The k shown in single-k figures: `preferred` when evaluated, else the smallest k."""
    ks = [int(k) for k in metrics["k"]]
    return str(preferred if preferred in ks else min(ks))


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def f1_by_observation(metrics: dict, path: Path, k: str | None = None) -> Path:
    """Grouped bars: report-generation F1 per observation for each method at one k."""
    k = k or headline_k(metrics)
    methods = list(metrics["methods"])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(methods)
    x = np.arange(len(OBSERVATIONS))
    for i, method in enumerate(methods):
        values = [metrics["f1_by_observation"][method][k][o] for o in OBSERVATIONS]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=method)
    ax.set_xticks(x, OBSERVATIONS, rotation=40, ha="right")
    ax.set_ylabel("F1 (positive = 1)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{metrics['experiment']}: report-generation F1 per observation, k={k}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def precision_recall_vs_k(metrics: dict, path: Path) -> Path:
    """Precision@k and recall@k (earlier definitions) against k, one line per method, with 95% CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("precision", "recall"), strict=True):
        for method, entry in metrics["methods"].items():
            ks = sorted(entry["k"], key=int)
            vals = [entry["k"][k][name] for k in ks]
            y = np.array([v["value"] if v["value"] is not None else np.nan for v in vals])
            lo = np.array([v["ci_low"] if v["ci_low"] is not None else np.nan for v in vals])
            hi = np.array([v["ci_high"] if v["ci_high"] is not None else np.nan for v in vals])
            xs = [int(k) for k in ks]
            ax.plot(xs, y, marker="o", label=method)
            ax.fill_between(xs, lo, hi, alpha=0.15)
        ax.set_xlabel("k")
        ax.set_ylabel(f"{name}@k")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([int(k) for k in metrics["k"]], [str(k) for k in metrics["k"]])
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metrics['experiment']}: precision and recall against k")
    return _save(fig, path)


def model_vs_baselines(metrics: dict, path: Path, k: str | None = None) -> Path:
    """Bars of the headline hit metrics per method at one k, with 95% bootstrap intervals."""
    k = k or headline_k(metrics)
    methods = list(metrics["methods"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(methods)
    x = np.arange(len(HEADLINE))
    for i, method in enumerate(methods):
        entry = metrics["methods"][method]["k"][k]
        y = np.array([entry[m]["value"] or 0.0 for m in HEADLINE])
        lo = np.array(
            [entry[m]["ci_low"] if entry[m]["ci_low"] is not None else y[j] for j, m in enumerate(HEADLINE)]
        )
        hi = np.array(
            [entry[m]["ci_high"] if entry[m]["ci_high"] is not None else y[j] for j, m in enumerate(HEADLINE)]
        )
        err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        ax.bar(x + i * width - 0.4 + width / 2, y, width, yerr=err, capsize=3, label=method)
    ax.set_xticks(x, [f"{m}@{k}" for m in HEADLINE])
    ax.set_title(f"{metrics['experiment']}: model against baselines (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def zeroshot_figure(metrics: dict, path: Path) -> Path:
    """Zero-shot AUROC per observation (`zeroshot.plot_auroc`); a figure saying why when it was skipped."""
    from .zeroshot import plot_auroc

    if "zeroshot" in metrics:
        return plot_auroc(metrics["zeroshot"], path, title=f"{metrics['experiment']}: zero-shot AUROC")
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{metrics['experiment']}: zero-shot classification not evaluated\n"
            "(evaluation.zeroshot.enabled false, or no prompt embeddings in bank.h5)", ha="center", va="center")
    return _save(fig, path)


def write_all(metrics: dict, out_dir: str | Path) -> list[Path]:
    """The standard figures of one experiment."""
    out = Path(out_dir)
    return [
        f1_by_observation(metrics, out / "f1_by_observation.png"),
        precision_recall_vs_k(metrics, out / "precision_recall_vs_k.png"),
        model_vs_baselines(metrics, out / "model_vs_baselines.png"),
        zeroshot_figure(metrics, out / "zeroshot.png"),
    ]
