"""The cross-experiment table (the shape of the earlier work's Table 5) from several metrics.json.

One row per (experiment, evaluated dataset) (its model; `dataset` from the metrics file's folder
<results>/<dataset>/eval/<exp>/) and one row per baseline and dataset (random, most frequent, oracle);
columns flat-hit@k, precision@k, recall@k, F1@k and duplicates (the original research code's
definitions, `metrics`), each with its 95% interval, the number of queries kept (those with labels and
at least one labelled retrieved sentence: precision, recall and duplicates average over them) and,
when the evaluation computed it, the original's BLEU; then each protocol's columns
(`summary_columns`). Baselines depend on the query set and the bank, not on the model: when every
experiment's baseline values are identical they appear once, otherwise once per experiment.
summary.md: that table, then each protocol's section (`summary_section`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from txtrayalign.utils import atomic_path

from . import EvaluationInputError
from .bootstrap import interval_cell, interval_columns
from .metrics import HEADLINE_METRICS
from .protocols import PROTOCOLS

OPTIONAL = ("bleu",)  # shown when present in metrics.json
TITLES = {
    "flat_hit": "flat-hit@{k}",
    "precision": "precision@{k}",
    "recall": "recall@{k}",
    "f1": "F1@{k}",
    "duplicates": "duplicates@{k}",
    "bleu": "BLEU@{k}",
}
BASELINES = ("random", "most_frequent", "oracle")


def load_metrics(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"metrics file not found: {p}")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"{p}: not valid JSON ({exc})") from exc


def dataset_of(path: str | Path) -> str:
    """The evaluated dataset: the results folder above eval/ (<results>/<dataset>/eval/<exp>/metrics.json)."""
    parts = Path(path).parts
    return parts[-4] if len(parts) >= 4 and parts[-3] == "eval" else ""


def _row(experiment: str, method: str, k: int, entry: dict, n_queries: int, source: Path) -> dict:
    missing = [name for name in ("kept", *HEADLINE_METRICS) if name not in entry]
    if missing:
        raise EvaluationInputError(f"{source}: metric(s) {missing} missing for {method} at k={k}")
    row: dict = {
        "experiment": experiment,
        "dataset": dataset_of(source),
        "method": method,
        "k": k,
        "n_queries": n_queries,
        "kept": int(entry["kept"]["value"]),
    }
    for name in (*HEADLINE_METRICS, *OPTIONAL):
        row.update(interval_columns(name, entry.get(name)))
    return row


def _runs(metrics_paths: list[str | Path]) -> list[tuple[str, Path, dict]]:
    if not metrics_paths:
        raise EvaluationInputError("no metrics files given")
    runs = []
    for path in metrics_paths:
        m = load_metrics(path)
        runs.append((m.get("experiment") or Path(path).parent.name, Path(path), m))
    return runs


def summary_table(metrics_paths: list[str | Path], k: int) -> pd.DataFrame:
    """Model rows in the given order, then the baseline rows."""
    models, baselines = [], {b: [] for b in BASELINES}
    for name, path, m in _runs(metrics_paths):
        for method in ("model", *BASELINES):
            by_k = m.get("methods", {}).get(method, {}).get("k", {})
            if str(k) not in by_k:
                raise EvaluationInputError(f"{path}: no {method} results at k={k} (evaluated k: {m.get('k')})")
            row = _row(name, method, k, by_k[str(k)], m.get("n_queries", 0), path)
            for protocol in PROTOCOLS:
                row.update(protocol.summary_columns(m.get(protocol.NAME), method, k))
            (models if method == "model" else baselines[method]).append(row)
    rows = list(models)
    for method in BASELINES:  # per evaluated dataset: once when every experiment's values agree
        for dataset in dict.fromkeys(r["dataset"] for r in baselines[method]):
            same = [r for r in baselines[method] if r["dataset"] == dataset]
            values = [{c: r[c] for c in r if c != "experiment"} for r in same]
            if all(v == values[0] for v in values):
                rows.append({**same[0], "experiment": "(baseline)"})
            else:
                rows.extend(same)
    return pd.DataFrame(rows)


def _cell(value, low, high) -> str:
    return interval_cell(*(None if v is None or pd.isna(v) else float(v) for v in (value, low, high)))


def to_markdown(table: pd.DataFrame, k: int) -> str:
    columns = [*HEADLINE_METRICS, *(c for c in OPTIONAL if c in table and table[c].notna().any())]
    by_dataset = "dataset" in table and table["dataset"].nunique() > 1  # a cross-dataset summary
    header = ["experiment", *(["dataset"] if by_dataset else []), "method", "queries kept",
              *[TITLES[c].format(k=k) for c in columns]]
    lines = [
        f"Image-to-text retrieval at k={k}: value [95% bootstrap interval]. A query observation is hit "
        "once when any retrieved sentence has its CheXpert value (1 / 0 / -1); precision, recall and "
        "duplicates average over the queries kept (with labels and a labelled retrieved sentence), "
        "flat-hit over all queries.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * (3 if by_dataset else 2) + ["---:"] * (1 + len(columns))) + "|",
    ]
    for _, r in table.iterrows():
        cells = [_cell(r[c], r[f"{c}_ci_low"], r[f"{c}_ci_high"]) for c in columns]
        kept = f"{r['kept']} / {r['n_queries']}"
        lines.append("| " + " | ".join([str(r["experiment"]), *([str(r["dataset"])] if by_dataset else []),
                                        str(r["method"]), kept, *cells]) + " |")
    return "\n".join(lines) + "\n"


def protocol_sections(metrics_paths: list[str | Path], k: int) -> str:
    """summary.md's sections after the retrieval table: each protocol's, for the experiments that have it."""
    runs = _runs(metrics_paths)
    return "\n".join(protocol.summary_section([(name, m.get(protocol.NAME)) for name, _, m in runs], k)
                     for protocol in PROTOCOLS)


def write_summary(
    metrics_paths: list[str | Path], k: int, out_csv: str | Path, out_md: str | Path
) -> pd.DataFrame:
    """Write summary.csv and summary.md atomically; returns the table."""
    table = summary_table(metrics_paths, k)
    with atomic_path(out_csv, suffix=".csv.tmp") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_md, suffix=".md.tmp") as tmp:
        tmp.write_text(to_markdown(table, k) + "\n" + protocol_sections(metrics_paths, k))
    return table
