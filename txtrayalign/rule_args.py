"""Command-line arguments of the workflow's rules from the configuration (workflow/rules/*.smk).

Plain functions of the resolved settings, so the rules stay declarative and the mapping from config
keys to arguments is tested (tests/test_evaluate_cli.py). Every string is a rule parameter: changing
one of these keys reruns that rule.

- `label_options(labels)`: the label stage's `--labeller` (and `--chexbert-*`).
- `embed_options(evaluation)`: what the embed stage embeds beside images and sentences.
- `evaluation_settings(evaluation, labels, summary)`: the evaluate command's `--settings` JSON;
  `headline_settings(...)`: the same with every protocol off (sentence-level metrics only).
- `needs_train_queries(experiment)`: whether its evaluation reads the training images' embeddings.
- `official_labels_option(dataset, data_root)`: `--official-labels` when the dataset ships its table.
- `needs_validation_queries(experiment)`: whether its evaluation reads the validation split's queries.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from txtrayalign.constants import CHEXPERT_TABLE


def embed_options(evaluation: dict) -> str:
    """`--prompts JSON --report-section S`: what the embed stage must embed beside images and sentences."""
    prompts = json.dumps(evaluation["zeroshot"]["prompts"], sort_keys=True)
    report = evaluation["report_retrieval"]
    section = report["section"] if report["enabled"] else "none"
    return f"--prompts {shlex.quote(prompts)} --report-section {shlex.quote(section)}"


def chexbert_options(labels: dict) -> str:
    """`--chexbert-*` options from `labels.chexbert` (no checkpoint: none, the CheXbert rows are absent)."""
    chexbert = labels["chexbert"]
    options = [f"--chexbert-batch-size {int(chexbert['batch_size'])}"]
    for key in ("checkpoint", "tokenizer", "device"):
        if chexbert.get(key):
            options.append(f"--chexbert-{key} {shlex.quote(str(chexbert[key]))}")
    return " ".join(options)


def label_options(labels: dict) -> str:
    """The label stage's `--labeller` (labels.labeller), with the CheXbert options when it is chexbert."""
    labeller = labels["labeller"]
    return f"--labeller {labeller}" + (f" {chexbert_options(labels)}" if labeller == "chexbert" else "")


# `evaluation` keys that choose what is embedded and which bank (rules embed*, bank_dir), which the
# evaluate command does not read: left out of its --settings so that changing them reruns an
# evaluation only through its inputs (e.g. `bank: source` leaves the training dataset's own evaluation be).
WORKFLOW_KEYS = ("query_split", "bank_splits", "dedupe", "dtype", "batch_size", "bank")


def evaluation_settings(evaluation: dict, labels: dict, summary: dict) -> str:
    """The evaluate command's `--settings`: the experiment's resolved `evaluation` block (less
    `WORKFLOW_KEYS`) and the `labels` and `summary` blocks as one JSON object (keys sorted: the same
    settings, the same text)."""
    scored = {key: value for key, value in evaluation.items() if key not in WORKFLOW_KEYS}
    return json.dumps({"evaluation": scored, "labels": labels, "summary": summary}, sort_keys=True)


def headline_settings(evaluation: dict, labels: dict, summary: dict) -> str:
    """`--settings` of a scoring with the sentence-level retrieval metrics only (sweep validation):
    every protocol with an `enabled` switch off, no gallery; `bank_splits` kept (the scoring takes the
    validation queries' own sentences out of the bank)."""
    off = {key: {**value, "enabled": False} for key, value in evaluation.items()
           if isinstance(value, dict) and "enabled" in value}
    settings = json.loads(evaluation_settings({**evaluation, **off, "gallery": 0}, labels, summary))
    settings["evaluation"]["bank_splits"] = list(evaluation["bank_splits"])  # the scoring's bank, less the queries'
    return json.dumps(settings, sort_keys=True)


def official_labels_option(dataset: dict, data_root: str | Path) -> str:
    """`--official-labels` with MIMIC-CXR's own table when the dataset folder holds it (raw data, there
    before the run, so the decision is stable); none for a table dataset, whose labels the index stage
    writes (with `labels.source: official` the report labels are the official ones already)."""
    path = Path(data_root) / CHEXPERT_TABLE
    if dataset.get("format") == "table" or not path.is_file():
        return ""
    return f"--official-labels {shlex.quote(str(path))}"


def needs_validation_queries(experiment: dict) -> bool:
    """Whether the evaluation of a resolved experiment reads the validation split's query embeddings
    (embeddings/<exp>/queries.validate.h5, rule embed_validation; `--validation-queries`).

    Subgroup evaluation (`evaluation.subgroups.enabled`) reads them: its TPR/FPR and underdiagnosis
    thresholds are chosen there. Validation-based selection (sweeps) switches it on here too."""
    return bool(experiment["evaluation"]["subgroups"]["enabled"])


def needs_train_queries(experiment: dict) -> bool:
    """Whether the evaluation of a resolved experiment reads the training split's image embeddings
    (embeddings/<exp>/queries.train.h5, rule embed_validation with split train; `--train-queries`): the linear probe's."""
    return bool(experiment["evaluation"]["linear_probe"]["enabled"])
