"""The cross-experiment table (the shape of the earlier work's Table 5) from several metrics.json.

One row per (experiment, evaluated dataset) (its model; `dataset` from the metrics file's folder
<results>/<dataset>/eval/<exp>/) and one row per baseline and dataset (random, most frequent, oracle);
columns flat-hit@k, precision@k, recall@k, F1@k and duplicates (the original research code's
definitions, `metrics`), each with its 95% interval, the number of queries kept (those with labels and
at least one labelled retrieved sentence: precision, recall and duplicates average over them) and,
when the evaluation computed it, the original's BLEU. Baselines
depend on the query set and the bank, not on the model: when every experiment's baseline values are
identical they appear once, otherwise once per experiment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from txtrayalign.utils import atomic_path

from . import EvaluationInputError, label_sensitivity, textmetrics, zeroshot
from .bootstrap import entry_cell, interval_cell

COLUMNS = ("flat_hit", "precision", "recall", "f1", "duplicates")
OPTIONAL = ("bleu",)  # shown when present in metrics.json
# From methods[m].text_similarity[k] (BLEU-4, ROUGE-L) and, for model rows, zeroshot.mean: in summary.csv.
TEXT_COLUMNS = ("bleu4", "rouge_l")
REPORT_COLUMNS = ("flat_hit", "precision", "recall", "f1", "micro_f1_all", "bleu4", "rouge_l")
TITLES = {
    "flat_hit": "flat-hit@{k}",
    "precision": "precision@{k}",
    "recall": "recall@{k}",
    "f1": "F1@{k}",
    "duplicates": "duplicates@{k}",
    "bleu": "BLEU@{k}",
    "bleu4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "micro_f1_all": "micro F1 (14)",
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


def _interval_columns(row: dict, name: str, entry: dict | None) -> None:
    entry = entry or {}
    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (
        entry.get("value"), entry.get("ci_low"), entry.get("ci_high"))


def dataset_of(path: str | Path) -> str:
    """The evaluated dataset: the results folder above eval/ (<results>/<dataset>/eval/<exp>/metrics.json)."""
    parts = Path(path).parts
    return parts[-4] if len(parts) >= 4 and parts[-3] == "eval" else ""


def _row(experiment: str, method: str, k: int, entry: dict, n_queries: int, source: Path) -> dict:
    if "kept" not in entry:
        raise EvaluationInputError(
            f"{source}: metric 'kept' missing for {method} at k={k} (written by an older version? "
            "rerun the evaluation)"
        )
    row: dict = {
        "experiment": experiment,
        "dataset": dataset_of(source),
        "method": method,
        "k": k,
        "n_queries": n_queries,
        "kept": int(entry["kept"]["value"]),
    }
    for name in (*COLUMNS, *OPTIONAL):
        if name not in entry:
            if name in OPTIONAL:
                row[name] = row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = None
                continue
            raise EvaluationInputError(f"{source}: metric {name!r} missing for {method} at k={k}")
        row[name] = entry[name]["value"]
        row[f"{name}_ci_low"] = entry[name]["ci_low"]
        row[f"{name}_ci_high"] = entry[name]["ci_high"]
    return row


def summary_table(metrics_paths: list[str | Path], k: int) -> pd.DataFrame:
    """Model rows in the given order, then the baseline rows."""
    if not metrics_paths:
        raise EvaluationInputError("no metrics files given")
    models, baselines = [], {b: [] for b in BASELINES}
    for path in metrics_paths:
        m = load_metrics(path)
        name = m.get("experiment") or Path(path).parent.name
        methods = m.get("methods", {})
        for method in ("model", *BASELINES):
            by_k = methods.get(method, {}).get("k", {})
            if str(k) not in by_k:
                raise EvaluationInputError(
                    f"{path}: no {method} results at k={k} (evaluated k: {m.get('k')})"
                )
            row = _row(name, method, k, by_k[str(k)], m.get("n_queries", 0), Path(path))
            text = methods[method].get("text_similarity", {}).get(str(k), {})
            for column in TEXT_COLUMNS:
                _interval_columns(row, column, text.get(column))
            _interval_columns(row, "zeroshot_mean_auroc", m.get("zeroshot", {}).get("mean") if method == "model" else None)
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
    columns = [*COLUMNS, *(c for c in OPTIONAL if c in table and table[c].notna().any())]
    by_dataset = "dataset" in table and table["dataset"].nunique() > 1  # a cross-dataset summary
    header = ["experiment", *(["dataset"] if by_dataset else []), "method", "queries kept", *[TITLES[c].format(k=k) for c in columns]]
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
        lines.append("| " + " | ".join([str(r["experiment"]), *([str(r["dataset"])] if by_dataset else []), str(r["method"]), kept, *cells]) + " |")
    return "\n".join(lines) + "\n"


def wider_sections(metrics_paths: list[str | Path], k: int) -> str:
    """summary.md's sections after the retrieval table: zero-shot AUROC, text similarity at k,
    report-level retrieval and the labeller-sensitivity table (each experiment that has them)."""
    runs = []
    for path in metrics_paths:
        m = load_metrics(path)
        runs.append((m.get("experiment") or Path(path).parent.name, m))
    out: list[str] = []

    zs = {name: m["zeroshot"] for name, m in runs if "zeroshot" in m}
    out.append("## Zero-shot classification\n")
    if zs:
        first = next(iter(zs.values()))["settings"]
        out.append(
            "AUROC of each observation from the softmax over its positive and negative prompt (CheXzero's "
            f"protocol), against the query labels ({first.get('labels', 'report')}; uncertain: "
            f"{first.get('uncertain')}, not mentioned: {first.get('blank')}); value [95% bootstrap interval].\n"
        )
        out.append(zeroshot.to_markdown(zs))
    else:
        out.append("Not evaluated (evaluation.zeroshot.enabled false, or no prompt embeddings).\n")

    out.append(f"## Text similarity at k={k}\n")
    texts = [(name, m) for name, m in runs
             if any(str(k) in e.get("text_similarity", {}) for e in m.get("methods", {}).values())]
    if texts:
        ref = texts[0][1].get("reference_section")
        out.append(
            f"The top-{k} retrieved sentences joined, against the query study's {ref} section: corpus BLEU-1..4 "
            "(NLTK, smoothing method 1), mean ROUGE-L F (rouge-score), BERTScore F1 when its model is local.\n"
        )
        for name, m in texts:
            results = {meth: e["text_similarity"][str(k)] for meth, e in m["methods"].items()
                       if str(k) in e.get("text_similarity", {})}
            out.append(f"**{name}**\n")
            out.append(textmetrics.to_markdown(results))
    else:
        out.append(f"Not computed at k={k} (no reference section, or evaluated at another summary k).\n")

    out.append("## Report-level retrieval\n")
    reports = [(name, m) for name, m in runs if m.get("report_k")]
    if reports:
        section = reports[0][1].get("report_section")
        out.append(
            f"CXR-RePaiR: the top report(s) from a bank of whole {section} sections of the bank splits (a query's "
            "own study excluded); hit metrics on the retrieved reports' labels, micro F1 of their labels "
            "(positive = 1), text metrics against the query's reference section.\n"
        )
        header = ["experiment", "method", "k", *[TITLES[c].format(k="k") for c in REPORT_COLUMNS]]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(REPORT_COLUMNS)) + "|"]
        for name, m in reports:
            for meth, entry in m["methods"].items():
                for rk, values in entry.get("report_level", {}).items():
                    cells = [entry_cell(values.get(c)) for c in REPORT_COLUMNS]
                    lines.append("| " + " | ".join([name, meth, rk, *cells]) + " |")
        out.append("\n".join(lines) + "\n")
    else:
        out.append("Not evaluated (evaluation.report_retrieval.enabled false, or no report bank).\n")

    out.append("## Labeller sensitivity\n")
    sens = [(name, m["label_sensitivity"]) for name, m in runs if "label_sensitivity" in m]
    if sens:
        s0 = sens[0][1]
        out.append(
            f"The model's top-{s0['k']} sentences joined, labelled by each labeller, against each truth "
            "labeller of the query study (chexpert: labels/reports.parquet, the CheXpert rule on the whole report; "
            "chexpert-sentence-max: the maximum over its sentences' labels, the original's rule; official: the "
            "dataset's labels); F1 over the 14 observations, uncertain counted as positive or as negative. The "
            "evaluation's own micro F1 is the row of its query labels "
            f"({s0.get('query_labels', 'report')}), uncertain as negative.\n"
        )
        for name, entry in sens:
            out.append(f"**{name}**\n")
            table = pd.DataFrame(entry["rows"]).astype({"value": float, "ci_low": float, "ci_high": float})
            out.append(label_sensitivity.to_markdown(table))
    else:
        out.append("Not evaluated (evaluation.sensitivity.enabled false).\n")
    return "\n".join(out)


def write_summary(
    metrics_paths: list[str | Path], k: int, out_csv: str | Path, out_md: str | Path
) -> pd.DataFrame:
    """Write summary.csv and summary.md atomically; returns the table."""
    table = summary_table(metrics_paths, k)
    with atomic_path(out_csv, suffix=".csv.tmp") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_md, suffix=".md.tmp") as tmp:
        tmp.write_text(to_markdown(table, k) + "\n" + wider_sections(metrics_paths, k))
    return table
