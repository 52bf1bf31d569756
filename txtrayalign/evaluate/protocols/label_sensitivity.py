"""Protocol `label_sensitivity`: the model's top-`summary_k` sentences scored by each labeller pair
(`evaluation.sensitivity`; the table of `txtrayalign.evaluate.label_sensitivity`).

Truth: the query studies' labels by labeller (`inputs.truth`, plus CheXbert on each query's label
text when `labels.chexbert` names a checkpoint); retrieved text: the report-generation labels of the
retrieval metrics and CheXbert's. A labeller without labels is a row marked absent, with the reason.

metrics.json `label_sensitivity`: {"k", "method", "query_labels", "rows": [{truth, retrieved, ...}]}.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..context import Context
from ..inputs import EvaluationInputs, ordered_truth
from ..label_sensitivity import sensitivity_table, to_markdown

log = logging.getLogger(__name__)

NAME = "label_sensitivity"


def chexbert_labeller(settings: Mapping) -> Callable[[list[str]], np.ndarray] | str:
    """A CheXbert labeller of texts from `labels.chexbert`, or the reason there is none."""
    from txtrayalign.chexbert import CHECKPOINT_ENV

    checkpoint = settings["checkpoint"] or os.environ.get(CHECKPOINT_ENV)
    if not checkpoint:
        return f"no CheXbert checkpoint (labels.chexbert.checkpoint or ${CHECKPOINT_ENV})"
    from txtrayalign.chexbert import CheXbertLabeller

    return CheXbertLabeller.load(checkpoint, tokenizer=settings["tokenizer"], device=settings["device"],
                                 batch_size=settings["batch_size"]).label_texts


def _records(table: pd.DataFrame) -> list[dict]:
    rows = table.to_dict("records")
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in rows]


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    if not context.evaluation["sensitivity"]["enabled"]:
        return None
    k, model = context.summary_k, context.sentence_retrieval["model"]
    # the labels of the retrieval metrics' retrieved text: the text labeller's (ours), else the combined
    # sentence labels, whose labeller is the label stage's
    predicted_by = "chexpert" if context.labeller is not None else inputs.sentence_bank.labelled_by
    truth = dict(inputs.truth.labels)
    retrieved: dict[str, np.ndarray | str] = {
        "chexpert": "the sentence labels are CheXbert's and no CheXpert text labeller ran",
        predicted_by: model.predicted[k],
    }
    chexbert = chexbert_labeller(context.settings["labels"]["chexbert"])
    if isinstance(chexbert, str):
        retrieved.setdefault("chexbert", chexbert)
        truth.setdefault("chexbert", chexbert)  # the label stage's CheXbert labels are kept
    else:
        if predicted_by != "chexbert":
            texts = model.joined(k)
            log.info("CheXbert: labelling %d retrieved texts", len(texts))
            retrieved["chexbert"] = np.asarray(chexbert(texts), dtype=np.float32)
        if isinstance(truth.get("chexbert", ""), str):
            label_texts = inputs.queries.section_texts("label_text")
            truth["chexbert"] = (np.asarray(chexbert(list(label_texts)), dtype=np.float32) if label_texts is not None
                                 else "no query report texts (sections.parquet label_text) to label")
    table = sensitivity_table(ordered_truth(truth), retrieved, counts=context.counts)
    return {"k": int(k), "method": "model", "query_labels": inputs.queries.labels_from, "rows": _records(table)}


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Labeller sensitivity\n"]
    sens = [(name, result) for name, result in runs if result]
    if not sens:
        out.append("Not evaluated (evaluation.sensitivity.enabled false).\n")
        return "\n".join(out)
    first = sens[0][1]
    out.append(
        f"The model's top-{first['k']} sentences joined, labelled by each labeller, against each truth "
        "labeller of the query study (chexpert: labels/reports.parquet, the CheXpert rule on the whole report; "
        "chexpert-sentence-max: the maximum over its sentences' labels, the original's rule; official: the "
        "dataset's labels); F1 over the 14 observations, uncertain counted as positive or as negative. The "
        "evaluation's own micro F1 is the row of its query labels "
        f"({first.get('query_labels', 'report')}), uncertain as negative.\n"
    )
    for name, result in sens:
        out.append(f"**{name}**\n")
        table = pd.DataFrame(result["rows"]).astype({"value": float, "ci_low": float, "ci_high": float})
        out.append(to_markdown(table))
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    return {}
