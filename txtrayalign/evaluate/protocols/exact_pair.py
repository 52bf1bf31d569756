"""Protocol `exact_pair`: the rank of each query's own partner, image -> report and report -> image
(`evaluation.exact_pair`; CXR-CLIP's evaluator, `txtrayalign.evaluate.exact_pair`).

The candidates are the query studies' reports (queries.h5 `report_embeddings`) and the query images.
metrics.json `exact_pair`: {"settings", "image_to_text", "text_to_image"}, each direction
{"n_queries", "missing", "n_candidates", "model": {metric: entry}, "random": {metric: entry}}.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..bootstrap import entry_cell, interval_columns, resample_counts
from ..context import Context, stream_seed
from ..exact_pair import exact_pair_evaluation, plot_recall_against_k
from ..inputs import EvaluationInputs

log = logging.getLogger(__name__)

NAME = "exact_pair"
FIGURE = "exact_pair.png"
DIRECTIONS = {"image_to_text": "image → report", "text_to_image": "report → image"}
COLUMNS = ("median_rank", "mean_rank", "mrr")


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["exact_pair"]
    if not settings["enabled"]:
        return None
    q = inputs.queries
    if q.report_embeddings.shape[0] == 0:
        log.warning("no query report embeddings in %s: exact-pair retrieval skipped", inputs.paths.get("queries"))
        return None
    n_boot = context.counts.shape[0] if context.counts is not None else 0
    reports = q.report_embeddings.shape[0]
    report_counts = resample_counts(reports, n_boot, stream_seed(context.seed, "exact_pair_reports")) if n_boot else None
    return exact_pair_evaluation(q.embeddings.astype(np.float32), q.study_id, q.report_embeddings.astype(np.float32),
                                 q.report_study_id, context.counts, report_counts, sorted(set(settings["k"])))


def _row(name: str, direction: str, method: str, part: dict, ks: list[int]) -> str:
    cells = [entry_cell(part[method].get(f"recall@{k}")) for k in ks]
    cells += [entry_cell(part[method].get(c), 1 if c != "mrr" else 3) for c in COLUMNS]
    where = f"{part['n_queries'] - part['missing']} ({part['missing']} missing) / {part['n_candidates']}"
    return "| " + " | ".join([name, DIRECTIONS[direction], method, *cells, where]) + " |"


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Exact-pair retrieval\n"]
    done = [(name, result) for name, result in runs if result]
    if not done:
        out.append("Not evaluated (evaluation.exact_pair.enabled false, or no query report embeddings).\n")
        return "\n".join(out)
    ks = done[0][1]["settings"]["ks"]
    out.append(
        "The rank of each query's own partner among all candidates (CXR-CLIP's evaluator): image → its study's "
        "report among the query studies' reports; report → the best of its study's images among the query "
        "images. Ties count half (mean rank of the tied candidates). Recall@K, median and mean rank, MRR; "
        "value [95% bootstrap interval over queries]; random: the exact expectation (R@K = K/N for one "
        "partner).\n"
    )
    header = ["experiment", "direction", "method", *[f"R@{q}" for q in ks], "median rank", "mean rank", "MRR",
              "queries / candidates"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(ks) + 4)) + "|"]
    for name, result in done:
        for direction in DIRECTIONS:
            for method in ("model", "random"):
                lines.append(_row(name, direction, method, result[direction], ks))
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    """`exact_pair_<i2t|t2i>_recall@K` (+ `_ci_low`, `_ci_high`) for the model and random rows."""
    out: dict = {}
    if not result or method not in ("model", "random"):
        return out
    for direction, short in (("image_to_text", "i2t"), ("text_to_image", "t2i")):
        for metric, entry in result[direction][method].items():
            out.update(interval_columns(f"exact_pair_{short}_{metric}", entry))
    return out


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    """exact_pair.png: recall against K, both directions, random beside."""
    path = Path(out_dir) / FIGURE
    if result is None:
        from ..plots import message_figure

        return [message_figure(path, f"{experiment}: exact-pair retrieval not evaluated\n"
                               "(evaluation.exact_pair.enabled false, or no query report embeddings)")]
    return [plot_recall_against_k(result, path, f"{experiment}: exact-pair retrieval")]
