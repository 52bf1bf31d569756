"""Protocol `five_by_200`: CheXpert 5x200 retrieval precision and zero-shot accuracy (`evaluation.five_by_200`;
GLoRIA's and MedCLIP's tables, `txtrayalign.evaluate.five_by_200`).

The set is drawn from the query images (their views and labels) with `evaluation.five_by_200.seed`, or
read from `evaluation.five_by_200.ids`; each image's text is its study's report (queries.h5), each
class's prompt the positive zero-shot prompt of that observation (bank.h5). metrics.json
`five_by_200`: {"n", "n_by_class", "settings", "model", "random", "by_class", "ids": {observation: [dicom_id]}};
the ids are also written as five_by_200_ids.csv beside metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.utils import atomic_path

from ..bootstrap import entry_cell
from ..context import Context
from ..five_by_200 import FIVE_CLASSES, draw_five_by_200, five_by_200_evaluation, read_five_by_200_ids
from ..inputs import EvaluationInputs

log = logging.getLogger(__name__)

NAME = "five_by_200"
IDS_FILE = "five_by_200_ids.csv"


def the_set(inputs: EvaluationInputs, settings: dict) -> pd.DataFrame:
    """The 5x200 images (dicom_id, observation) among the query images whose study has a report."""
    q = inputs.queries
    has_report = np.isin(q.study_id, q.report_study_id)
    ids, labels = np.asarray(q.dicom_id, str), np.asarray(q.labels)
    if settings["ids"]:
        chosen = read_five_by_200_ids(settings["ids"], ids, labels)
        lacking = chosen.loc[~chosen["dicom_id"].isin(ids[has_report]), "dicom_id"]
        if len(lacking):
            log.warning("5x200: %d listed images have no report text: left out (first: %s)", len(lacking),
                        list(lacking[:5]))
        return chosen.loc[~chosen["dicom_id"].isin(lacking)].reset_index(drop=True)
    return draw_five_by_200(ids[has_report], labels[has_report], np.asarray(q.view)[has_report],
                            settings["per_class"], settings["seed"])


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["five_by_200"]
    if not settings["enabled"]:
        return None
    if inputs.prompts is None:
        log.warning("%s holds no prompt embeddings: 5x200 skipped", inputs.paths.get("bank"))
        return None
    q = inputs.queries
    chosen = the_set(inputs, settings)
    if chosen.empty:
        log.warning("5x200: no query image is frontal and positive for exactly one of %s: skipped", FIVE_CLASSES)
        return None
    row = pd.Series(np.arange(len(q.dicom_id)), index=np.asarray(q.dicom_id, str)).loc[chosen["dicom_id"]].to_numpy()
    report_row = pd.Series(np.arange(len(q.report_study_id)), index=q.report_study_id)
    texts = q.report_embeddings[report_row.loc[q.study_id[row]].to_numpy()]
    prompts = np.asarray(inputs.prompts.embeddings, np.float32)[[OBSERVATIONS.index(c) for c in FIVE_CLASSES], 0]
    n_boot = context.counts.shape[0] if context.counts is not None else 0
    result = five_by_200_evaluation(q.embeddings[row].astype(np.float32), texts.astype(np.float32),
                                    chosen["observation"].tolist(), prompts, sorted(set(settings["k"])), n_boot,
                                    context.seed)
    result["settings"].update(seed=settings["seed"], per_class=settings["per_class"], ids=settings["ids"],
                              labels=q.labels_from)
    result["ids"] = {c: chosen.loc[chosen["observation"] == c, "dicom_id"].tolist() for c in FIVE_CLASSES}
    return result


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## CheXpert 5x200\n"]
    done = [(name, result) for name, result in runs if result]
    if not done:
        out.append("Not evaluated (evaluation.five_by_200.enabled false, no prompt embeddings, or no eligible "
                   "image).\n")
        return "\n".join(out)
    ks = done[0][1]["settings"]["ks"]
    out.append(
        f"Frontal query images positive for exactly one of {', '.join(FIVE_CLASSES)}, up to 200 per class "
        f"(ids: {IDS_FILE} beside metrics.json). Image → report and report → image precision@K: share of the "
        "K retrieved of the query's class (GLoRIA); zero-shot accuracy: argmax over the five positive prompts "
        "(MedCLIP). Value [95% bootstrap interval over the images]; random: the exact expectation.\n"
    )
    header = ["experiment", "method", *[f"i→t P@{x}" for x in ks], *[f"t→i P@{x}" for x in ks], "zero-shot acc.",
              "images per class"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (2 * len(ks) + 2)) + "|"]
    for name, result in done:
        per_class = "/".join(str(n) for n in result["n_by_class"].values())
        for method in ("model", "random"):
            values = result[method]
            cells = [entry_cell(values.get(f"image_to_text_precision@{x}")) for x in ks]
            cells += [entry_cell(values.get(f"text_to_image_precision@{x}")) for x in ks]
            cells.append(entry_cell(values.get("zeroshot_accuracy")))
            lines.append("| " + " | ".join([name, method, *cells, per_class]) + " |")
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    """`five_by_200_<metric>` of the model and random rows."""
    if not result or method not in ("model", "random"):
        return {}
    return {f"five_by_200_{metric}": entry.get("value") for metric, entry in result[method].items()}


def write_ids(result: dict | None, out_dir: Path) -> Path:
    """five_by_200_ids.csv (dicom_id, observation), atomically; only the header when not evaluated."""
    rows = [] if result is None else [(d, c) for c, ids in result["ids"].items() for d in ids]
    path = Path(out_dir) / IDS_FILE
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        pd.DataFrame(rows, columns=["dicom_id", "observation"]).to_csv(tmp, index=False)
    return path


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    write_ids(result, out_dir)
    return []
