"""Protocol `linear_probe`: logistic regressions on frozen image embeddings with 1%, 10% and 100% of
the training labels, AUROC on the query images (`evaluation.linear_probe`; MGCA, GLoRIA, BenchX;
`txtrayalign.evaluate.linear_probe`).

Reads the training images' embeddings (embeddings/<exp>/queries.train.h5, embedded only when the probe is on)
and their studies' labels (the label stage's report labels). metrics.json `linear_probe`: {"settings",
"n_train", "n_test", "fractions": {fraction: {"auroc": {observation: entry}, "mean", "mean_top5",
"seed_std", "n_train", "seeds"}}, "random"}; the drawn subsets: linear_probe_ids.csv beside metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from txtrayalign.tables import read_table

from ..bootstrap import entry_cell, interval_columns
from ..context import Context
from ..embed import queries_count, read_queries
from ..inputs import LABEL_COLUMNS, EvaluationInputs
from ..labels import study_label_rows
from ..linear_probe import draw_label_subsets, linear_probe_evaluation, plot_auroc_against_share

log = logging.getLogger(__name__)

NAME = "linear_probe"
FIGURE = "linear_probe.png"
IDS_FILE = "linear_probe_ids.csv"


def training_set(path: str, labels_path: str):
    """The training images of queries.train.h5 whose study has report labels, and those labels (N, 14)."""
    train = read_queries(path)
    labels = read_table(labels_path, "report_labels", LABEL_COLUMNS)
    labelled = np.isin(train.study_id, labels["study_id"].to_numpy())
    if not labelled.all():
        log.info("linear probe: %d of %d training images have no report labels: left out",
                 int((~labelled).sum()), labelled.size)
    train = replace(train, embeddings=train.embeddings[labelled], dicom_id=train.dicom_id[labelled],
                    study_id=train.study_id[labelled], view=train.view[labelled])
    return train, study_label_rows(labels, train.study_id)


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["linear_probe"]
    if not settings["enabled"]:
        return None
    path = inputs.paths.get("train_queries")
    if not path:
        log.warning("no training images' embeddings given (--train-queries): linear probe skipped")
        return None
    if not queries_count(path):
        log.warning("%s holds no image (the training split is empty): linear probe skipped", path)
        return None
    train, train_labels = training_set(path, inputs.paths["report_labels"])
    subsets = draw_label_subsets(train.dicom_id, settings["fractions"], settings["seeds"])
    result = linear_probe_evaluation(
        train.embeddings.astype(np.float32), train.dicom_id, train_labels,
        inputs.queries.embeddings.astype(np.float32), inputs.queries.labels, subsets, c=settings["C"],
        uncertain=settings["uncertain"], blank=settings["blank"], counts=context.counts,
    )
    result["settings"].update(labels=inputs.queries.labels_from, train_queries=path,
                              report_labels=inputs.paths["report_labels"],
                              fractions=list(settings["fractions"]), seeds=list(settings["seeds"]))
    return result


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Linear probe\n"]
    done = [(name, result) for name, result in runs if result]
    if not done:
        out.append("Not evaluated (evaluation.linear_probe.enabled false, or no training embeddings).\n")
        return "\n".join(out)
    first = done[0][1]["settings"]
    out.append(
        "A logistic regression per observation on the frozen image embeddings (standardised, C = "
        f"{first['C']}) of a share of the training images, AUROC on the query images (MGCA, GLoRIA, BenchX). "
        f"Uncertain: {first['uncertain']}, not mentioned: {first['blank']}. Mean over seeds [95% bootstrap "
        f"interval over the query images]; ± the seeds' standard deviation; subsets: {IDS_FILE}. Random: 0.5. "
        "The means cover the observations with both classes in the subset and in the test images (counted "
        "below), so a small share can average fewer of them.\n"
    )
    shares = sorted({f for _, r in done for f in r["fractions"]}, key=float)
    header = ["experiment", "AUROC", *[f"{100 * float(f):g}% of labels" for f in shares]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(shares)) + "|"]
    for name, result in done:
        for key, label in (("mean", "mean (14)"), ("mean_top5", "mean (top 5)")):
            cells = []
            for f in shares:
                part = result["fractions"].get(f)
                cell = entry_cell(part[key]) if part else "n/a"
                if part and key == "mean" and part.get("seed_std") is not None:
                    cell += f" ± {part['seed_std']:.3f}"
                cells.append(cell)
            lines.append("| " + " | ".join([name, label, *cells]) + " |")
        fitted = [sum(e["value"] is not None for e in result["fractions"][f]["auroc"].values())
                  if f in result["fractions"] else 0 for f in shares]
        lines.append("| " + " | ".join([name, "observations with an AUROC", *map(str, fitted)]) + " |")
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    """`linear_probe_auroc_<share>` (+ intervals) on the model row."""
    out: dict = {}
    if not result or method != "model":
        return out
    for fraction, part in result["fractions"].items():
        name = f"linear_probe_auroc_{100 * float(fraction):g}pct"
        out.update(interval_columns(name, part["mean"]))
    return out


def write_subsets(result: dict | None, out_dir: Path) -> Path:
    """linear_probe_ids.csv (fraction, seed, dicom_id): the subsets drawn again from the training images'
    ids (the draw depends on nothing else); only the header when the probe did not run."""
    import pandas as pd

    from txtrayalign.utils import atomic_path

    table = pd.DataFrame(columns=["fraction", "seed", "dicom_id"])
    if result is not None:
        s = result["settings"]
        train, _ = training_set(s["train_queries"], s["report_labels"])
        table = draw_label_subsets(train.dicom_id, s["fractions"], s["seeds"])
    path = Path(out_dir) / IDS_FILE
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        table.to_csv(tmp, index=False)
    return path


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    """linear_probe.png: mean AUROC against the label share (and linear_probe_ids.csv beside it)."""
    write_subsets(result, out_dir)
    path = Path(out_dir) / FIGURE
    if result is None:
        from ..plots import message_figure

        return [message_figure(path, f"{experiment}: linear probe not evaluated\n"
                               "(evaluation.linear_probe.enabled false, or no training embeddings)")]
    return [plot_auroc_against_share(result, path, f"{experiment}: linear probe")]
