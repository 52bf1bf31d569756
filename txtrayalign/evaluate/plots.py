"""Figures of one experiment's metrics.json (matplotlib, Agg backend), written atomically as PNG.

The single-k figures show `metrics["summary_k"]` (config `summary.k`), the k of summary.md; each
protocol with a `figures` function adds its own (`write_all`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from txtrayalign.constants import OBSERVATIONS  # noqa: E402
from txtrayalign.utils import atomic_path  # noqa: E402

from .metrics import HEADLINE_METRICS  # noqa: E402

RATES = tuple(m for m in HEADLINE_METRICS if m != "duplicates")  # duplicates: a count, off the 0-1 axis


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def message_figure(path: Path, text: str) -> Path:
    """A small figure that says why there is nothing to show (the workflow expects every file)."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return save_figure(fig, path)


def f1_by_observation(metrics: dict, path: Path) -> Path:
    """Grouped bars: report-generation F1 per observation for each method at the summary k."""
    k = str(metrics["summary_k"])
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
    return save_figure(fig, path)


def _interval_arrays(entries: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def values(key: str) -> np.ndarray:
        return np.array([np.nan if e[key] is None else e[key] for e in entries], dtype=float)

    return values("value"), values("ci_low"), values("ci_high")


def precision_recall_vs_k(metrics: dict, path: Path) -> Path:
    """Precision@k and recall@k (earlier definitions) against k, one line per method, with 95% CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("precision", "recall"), strict=True):
        for method, entry in metrics["methods"].items():
            ks = sorted(entry["k"], key=int)
            y, lo, hi = _interval_arrays([entry["k"][k][name] for k in ks])
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
    return save_figure(fig, path)


def model_vs_baselines(metrics: dict, path: Path) -> Path:
    """Bars of the headline hit rates per method at the summary k, with 95% bootstrap intervals."""
    k = str(metrics["summary_k"])
    methods = list(metrics["methods"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(methods)
    x = np.arange(len(RATES))
    for i, method in enumerate(methods):
        y, lo, hi = _interval_arrays([metrics["methods"][method]["k"][k][m] for m in RATES])
        y = np.nan_to_num(y)
        lo, hi = np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi)
        err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        ax.bar(x + i * width - 0.4 + width / 2, y, width, yerr=err, capsize=3, label=method)
    ax.set_xticks(x, [f"{m}@{k}" for m in RATES])
    ax.set_title(f"{metrics['experiment']}: model against baselines (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_all(metrics: dict, out_dir: str | Path) -> list[Path]:
    """The standard figures of one experiment, then each protocol's."""
    from .protocols import PROTOCOLS

    out = Path(out_dir)
    paths = [
        f1_by_observation(metrics, out / "f1_by_observation.png"),
        precision_recall_vs_k(metrics, out / "precision_recall_vs_k.png"),
        model_vs_baselines(metrics, out / "model_vs_baselines.png"),
    ]
    for protocol in PROTOCOLS:
        if hasattr(protocol, "figures"):
            paths += protocol.figures(metrics.get(protocol.NAME), out, metrics["experiment"])
    return paths
