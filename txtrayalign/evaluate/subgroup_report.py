"""Showing the subgroup evaluation: summary.md's "Subgroups" section, summary.csv's columns, a long
table per experiment (subgroups.csv), the forest plot (one panel per attribute) and rare against common."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from txtrayalign.utils import atomic_path

from .bootstrap import interval_cell

# (metric in metrics.json, title); {k} is the summary k
TABLE_METRICS = (("flat_hit@{k}", "flat-hit@{k}"), ("f1@{k}", "F1@{k}"), ("auroc_mean", "zero-shot AUROC (mean)"),
                 ("underdiagnosis_zeroshot", "underdiagnosis (zero-shot)"),
                 ("underdiagnosis_retrieval", "underdiagnosis (retrieval@{k})"))
FOREST_METRICS = (("f1@{k}", "F1@{k}"), ("auroc_mean", "zero-shot AUROC (mean)"),
                  ("underdiagnosis_zeroshot", "underdiagnosis (zero-shot)"))


def _cell(entry: Mapping | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    text = interval_cell(entry["value"], entry.get("ci_low"), entry.get("ci_high"))
    if "gap" in entry and entry["gap"] is not None:
        mark = " ▼" if entry.get("flagged") else " ▲" if entry.get("better") else ""
        text += f"; gap {interval_cell(entry['gap'], entry.get('gap_low'), entry.get('gap_high'))}{mark}"
    return text


def _overall(result: Mapping, metric: str, attribute: str | None = None) -> Mapping | None:
    if metric == "auroc_mean":
        return result["overall"].get("auroc_mean_by_attribute", {}).get(attribute or "")
    return result["overall"].get(metric)


def group_table(result: Mapping) -> str:
    """One row per group (its attribute's overall row first); cells `value [CI]; gap [CI]` (▼ flagged)."""
    k = result["settings"]["summary_k"]
    metrics = [(m.format(k=k), t.format(k=k)) for m, t in TABLE_METRICS]
    lines = ["| attribute | group | queries (patients) | " + " | ".join(t for _, t in metrics) + " |",
             "|---|---|---:|" + "---:|" * len(metrics)]
    seen: set[str] = set()
    for g in result["groups"]:
        a = g["attribute"]
        if a not in seen:
            seen.add(a)
            cells = [_cell(_overall(result, m, a)) for m, _ in metrics]
            lines.append(f"| **{a}** | all | {result.get('n_queries', '')} | " + " | ".join(cells) + " |")
        if g["suppressed"]:
            lines.append(f"| {a} | {g['group']} | suppressed (< {result['settings']['min_size']}) | "
                         + " | ".join("—" for _ in metrics) + " |")
            continue
        cells = [_cell(g["metrics"].get(m)) for m, _ in metrics]
        lines.append(f"| {a} | {g['group']} | {g['n']} ({g['patients']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def flagged_rates(result: Mapping) -> list[str]:
    """`group: observation TPR/FPR gap [CI]` for every flagged per-observation rate or AUROC."""
    out = []
    for g in result["groups"]:
        for name, e in (g.get("metrics") or {}).items():
            if e.get("flagged") and ":" in name:
                kind, obs = name.split(":", 1)
                out.append(f"{g['attribute']} {g['group']}: {obs} {kind.upper()} "
                           f"{interval_cell(e['value'])} vs {interval_cell(e['rest'])} "
                           f"(gap {interval_cell(e['gap'], e['gap_low'], e['gap_high'])})")
    return out


def rare_common_table(rc: Mapping) -> str:
    lines = [f"Rare: training prevalence below {rc['threshold']:g} ({', '.join(rc['rare']) or 'none'}).", "",
             "| figure | rare (mean) | common (mean) | gap (rare − common) |", "|---|---:|---:|---:|"]
    for name, c in rc["comparison"].items():
        if c is None:
            lines.append(f"| {name} | n/a | n/a | n/a (no rare or no common observation with a value) |")
            continue
        mark = " ▼" if c["rare_worse"] else ""
        lines.append(f"| {name} | {interval_cell(c['rare'], *c['rare_ci'])} ({c['n_rare']}) | "
                     f"{interval_cell(c['common'])} ({c['n_common']}) | "
                     f"{interval_cell(c['gap'], c['gap_low'], c['gap_high'])}{mark} |")
    return "\n".join(lines) + "\n"


def section(runs: Sequence[tuple[str, Mapping | None]]) -> str:
    """summary.md's "Subgroups" section: per run (name, metrics.json's `subgroups` or None) its table."""
    out = ["## Subgroups\n"]
    results = [(n, r) for n, r in runs if r]
    if not results:
        out.append("Not evaluated (evaluation.subgroups.enabled false).\n")
        return "\n".join(out)
    s0 = results[0][1]["settings"]
    out.append(
        "Each group's figure with its 95% bootstrap interval and its gap to the rest (every other query), the "
        "interval of the difference from the same resamples; a resample draws patients, each with all of its "
        "studies (a patient's studies are not independent), so the intervals are wider than the headline "
        "table's, which draws studies. ▼ flagged: the group is worse beyond chance over all "
        "the groups compared on that figure (Bonferroni on the gap's bootstrap z; a 95% interval alone would flag "
        "about 1 in 40 gaps with nothing there), ▲ better likewise. Underdiagnosis: the share of queries with a "
        "finding called normal (zero-shot: No Finding score at or above its threshold; retrieval: no finding "
        f"positive or uncertain in the top-{s0['summary_k']} sentences). Thresholds from {s0.get('threshold_from')}."
        f" Groups under {s0['min_size']} queries are suppressed.\n")
    for name, sg in results:
        out.append(f"**{name}** (demographics: {_source(sg)})\n")
        if (sg.get("demographics") or {}).get("absent"):
            out.append(f"No demographics: {sg['demographics']['absent']}.\n")
        if sg["groups"]:
            out.append(group_table(sg))
            missing = {a: n for a, n in sg.get("missing", {}).items() if n}
            if missing:
                out.append("Queries without a value (in no group): "
                           + ", ".join(f"{a} {n}" for a, n in missing.items()) + ".\n")
            flags = flagged_rates(sg)
            out.append("Flagged per-observation gaps: " + ("; ".join(flags) if flags else "none") + ".\n")
        if sg.get("rare_common"):
            out.append(rare_common_table(sg["rare_common"]))
    return "\n".join(out)


def _source(sg: Mapping) -> str:
    d = sg.get("demographics") or {}
    return str(d.get("source") or "none")


def summary_columns(sg: Mapping | None) -> dict:
    """summary.csv's subgroup columns of one model row (empty when not evaluated)."""
    if not sg:
        return {}
    k = sg["settings"]["summary_k"]
    row: dict = {"subgroups_flagged": sum(bool(e.get("flagged")) for g in sg["groups"]
                                          for e in (g.get("metrics") or {}).values())}
    for metric in (f"f1@{k}", "auroc_mean", "underdiagnosis_zeroshot"):
        gaps = [(g["metrics"][metric]["gap"], f"{g['attribute']}={g['group']}") for g in sg["groups"]
                if not g["suppressed"] and g["metrics"].get(metric, {}).get("gap") is not None]
        worst = (max if metric.startswith("underdiagnosis") else min)(gaps, default=(None, None))
        key = metric.split("@")[0]
        row[f"worst_group_{key}"], row[f"worst_group_{key}_gap"] = worst[1], worst[0]
    for name, c in ((sg.get("rare_common") or {}).get("comparison") or {}).items():
        row[f"rare_minus_common_{name}"] = None if c is None else c["gap"]
    return row


def long_table(sg: Mapping) -> pd.DataFrame:
    """One row per (group, metric): value, interval, rest, gap and its interval, flagged."""
    rows = []
    for g in sg["groups"]:
        base = {"attribute": g["attribute"], "group": g["group"], "suppressed": g["suppressed"],
                "n": g.get("n"), "patients": g.get("patients")}
        if g["suppressed"]:
            rows.append(base)
        for metric, e in (g.get("metrics") or {}).items():
            rows.append({**base, "metric": metric, **{k: v for k, v in e.items() if k != "observations"}})
    return pd.DataFrame(rows)


def write_long_table(sg: Mapping, path: str | Path) -> Path:
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        long_table(sg).to_csv(tmp, index=False, float_format="%.6f")
    return Path(path)
