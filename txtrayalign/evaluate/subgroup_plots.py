"""Figures of the subgroup evaluation: the forest plot (a row of panels per attribute) and rare against common."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from txtrayalign.utils import atomic_path

from .subgroup_report import FOREST_METRICS, _overall


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def _message(path: str | Path, text: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return _save(fig, path)


def forest_plot(sg: Mapping | None, path: str | Path, title: str = "") -> Path:
    """Groups' values with their 95% intervals, the attribute's overall value dashed; flagged groups red."""
    if not sg or not sg.get("groups"):
        why = (sg or {}).get("demographics", {}).get("absent") if sg else "subgroup evaluation off"
        return _message(path, f"No subgroups: {why or 'no patient attributes'}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = sg["settings"]["summary_k"]
    metrics = [(m.format(k=k), t.format(k=k)) for m, t in FOREST_METRICS]
    attributes = list(dict.fromkeys(g["attribute"] for g in sg["groups"]))
    heights = [sum(g["attribute"] == a for g in sg["groups"]) + 1 for a in attributes]
    fig, axes = plt.subplots(len(attributes), len(metrics), figsize=(4 * len(metrics), 0.32 * sum(heights) + 1.5),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for r, a in enumerate(attributes):
        groups = [g for g in sg["groups"] if g["attribute"] == a]
        y = np.arange(len(groups))[::-1]
        for c, (metric, label) in enumerate(metrics):
            ax = axes[r, c]
            for yi, g in zip(y, groups, strict=True):
                e = (g.get("metrics") or {}).get(metric)
                if g["suppressed"] or not e or e.get("value") is None:
                    ax.text(0.02, yi, "suppressed" if g["suppressed"] else "n/a (AUROC: single attributes only)" if "×" in a and metric == "auroc_mean" else "n/a", va="center", fontsize=7,
                            transform=ax.get_yaxis_transform())
                    continue
                lo, hi = e.get("ci_low"), e.get("ci_high")
                err = None if lo is None else [[e["value"] - lo], [hi - e["value"]]]
                ax.errorbar(e["value"], yi, xerr=err, fmt="o", ms=4, capsize=2,
                            color="C3" if e.get("flagged") else "C0")
            ref = _overall(sg, metric, a)
            if ref and ref.get("value") is not None:
                ax.axvline(ref["value"], ls="--", color="grey", lw=1)
            ax.set_yticks(y, [g["group"] for g in groups], fontsize=8)
            ax.set_ylim(-0.7, len(groups) - 0.3)
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(a, fontsize=9)
    fig.suptitle(title or "Subgroups: value and 95% interval (red: worse than the rest, interval of the gap excludes 0)",
                 fontsize=9)
    return _save(fig, path)


def prevalence_plot(sg: Mapping | None, path: str | Path) -> Path:
    """Each observation's F1 and zero-shot AUROC against its training prevalence (log scale)."""
    rc = (sg or {}).get("rare_common")
    if not rc:
        return _message(path, "Rare against common: no training prevalence (no training studies)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("f1", "auroc") if n in next(iter(rc["observations"].values()))]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for obs, e in rc["observations"].items():
            v = e[name]
            if v["value"] is None:
                continue
            p = max(e["prevalence"], 1e-4)
            err = None if v["ci_low"] is None else [[v["value"] - v["ci_low"]], [v["ci_high"] - v["value"]]]
            ax.errorbar(p, v["value"], yerr=err, fmt="o", ms=4, capsize=2,
                        color="C1" if obs in rc["rare"] else "C0")
            ax.annotate(obs, (p, v["value"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.axvline(rc["threshold"], ls="--", color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("training prevalence (share of training studies positive)")
        ax.set_ylabel({"f1": "F1 of the retrieved sentences' labels", "auroc": "zero-shot AUROC"}[name])
    fig.suptitle(f"Rare (orange, prevalence < {rc['threshold']:g}) against common observations", fontsize=9)
    return _save(fig, path)
