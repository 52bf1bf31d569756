"""Protocol `subgroups`: for whom it fails — every headline figure per patient group with its gap to
the rest, and rare against common observations (`evaluation.subgroups`; README "For whom it fails").

Reads the query studies' patient table (`index/patients.parquet`, `--patients`), the model's sentence
retrieval and the zero-shot prompts (when embedded), the validation queries when the evaluation has
them (the thresholds of TPR/FPR and zero-shot underdiagnosis), and the training prevalence from the
report labels and sections. The figures: `txtrayalign.evaluate.fairness`; the statistics:
`txtrayalign.evaluate.subgroups`.

metrics.json `subgroups`: {"settings", "demographics", "n_queries", "missing", "overall", "groups",
"rare_common"}.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.tables import read_table

from ..bootstrap import resample_cluster_counts
from ..context import Context, stream_seed
from ..fairness import subgroup_evaluation
from ..inputs import EvaluationInputs
from ..subgroup_inputs import prevalence_from, query_patients, subgroup_settings
from ..subgroup_plots import forest_plot, prevalence_plot
from ..subgroup_report import section, write_long_table
from ..subgroup_report import summary_columns as subgroup_columns
from ..zeroshot import binary_targets, pair_scores

log = logging.getLogger(__name__)

NAME = "subgroups"
FIGURES = ("subgroups.png", "prevalence.png")
TABLE = "subgroups.csv"


def _zeroshot(inputs: EvaluationInputs, context: Context, queries):
    """(scores, targets) of `queries` from the prompt embeddings, with the zero-shot protocol's targets."""
    settings = context.evaluation["zeroshot"]
    scores = pair_scores(queries.embeddings.astype("float32"), inputs.prompts.embeddings)
    return scores, binary_targets(queries.labels, settings["uncertain"], settings["blank"])


def patient_counts(patients: pd.DataFrame, context: Context):
    """The resamples of the subgroup figures: patients drawn with replacement, each with all its query
    studies (a query without a known patient is its own). Groups are sets of patients, so intervals
    and gaps must count the patients' spread, not the studies' (a patient's studies go together)."""
    if context.counts is None:
        return None
    subject = patients["subject_id"].to_numpy()
    known = subject != -1
    clusters = np.where(known, subject.astype(str), np.char.add("query-", np.arange(len(subject)).astype(str)))
    return resample_cluster_counts(clusters, context.counts.shape[0], stream_seed(context.seed, "subgroups"))


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    config = context.evaluation["subgroups"]
    if not config["enabled"]:
        return None
    queries = inputs.queries
    if inputs.paths.get("patients"):
        patients, record = query_patients(inputs.paths["patients"], queries.study_id)
    else:
        patients = pd.DataFrame({"subject_id": queries.study_id})
        record = {"source": None, "absent": "no patient table given (--patients)"}
    settings = subgroup_settings(config)
    zeroshot = validation = None
    if inputs.prompts is not None and context.evaluation["zeroshot"]["enabled"]:
        zeroshot = _zeroshot(inputs, context, queries)
        if inputs.validation_queries is not None:
            validation = _zeroshot(inputs, context, inputs.validation_queries)
    prevalence = None
    if inputs.paths.get("sections"):
        splits = read_table(inputs.paths["sections"], "sections", ["study_id", "split"])
        labels = read_table(inputs.paths["report_labels"], "report_labels", ["study_id"], all_columns=True)
        prevalence = prevalence_from(labels, splits)
    model = context.sentence_retrieval["model"]
    result = subgroup_evaluation(
        patients, queries.labels, model.retrieved_labels(context.ks[-1]), context.ks, context.summary_k,
        patient_counts(patients, context), settings, *(zeroshot or (None, None)), validation=validation, prevalence=prevalence,
        predicted=model.predicted.get(context.summary_k),
    )
    result["demographics"] = record
    return result


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    return section(runs)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    return subgroup_columns(result if method == "model" else None)


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    """subgroups.png (forest plot), prevalence.png and the long table subgroups.csv."""
    paths = [forest_plot(result, out_dir / FIGURES[0], title=f"{experiment}: subgroups"),
             prevalence_plot(result, out_dir / FIGURES[1])]
    if result is not None:
        paths.append(write_long_table(result, out_dir / TABLE))
    return paths
