"""Command-line options of the `embed` and `evaluate` rules from the configuration (workflow/rules/evaluate.smk).

Plain functions of the resolved experiment's `evaluation` block and the `labels` block, so the rules stay
declarative and the mapping from config keys to options is tested (tests/test_evaluate_cli.py). Every
option string is a rule parameter: changing one of these keys reruns that experiment's step.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path


def _block(evaluation: dict, key: str) -> dict:
    return evaluation.get(key) or {}


def _enabled(evaluation: dict, key: str) -> bool:
    return bool(_block(evaluation, key).get("enabled", True))


def embed_options(evaluation: dict) -> str:
    """`--prompts JSON --report-section S`: what the embed stage must embed beside images and sentences."""
    prompts = json.dumps(_block(evaluation, "zeroshot").get("prompts") or {}, sort_keys=True)
    section = (
        _block(evaluation, "report_retrieval").get("section", "impression")
        if _enabled(evaluation, "report_retrieval")
        else "none"
    )
    return f"--prompts {shlex.quote(prompts)} --report-section {shlex.quote(section)}"


def chexbert_options(labels: dict) -> str:
    """`--chexbert-*` options from `labels.chexbert` (no checkpoint: none, the CheXbert rows are absent)."""
    cb = labels.get("chexbert") or {}
    if "batch_size" in cb:  # always, from the workflow (the schema's default): the Snakefile imports no torch
        batch_size = cb["batch_size"]
    else:
        from txtrayalign.chexbert import DEFAULT_BATCH_SIZE as batch_size
    options = [f"--chexbert-batch-size {int(batch_size)}"]
    for key in ("checkpoint", "tokenizer", "device"):
        if cb.get(key):
            options.append(f"--chexbert-{key} {shlex.quote(str(cb[key]))}")
    return " ".join(options)


def label_options(labels: dict) -> str:
    """The label stage's `--labeller` (labels.labeller), with the CheXbert options when it is chexbert."""
    labeller = labels.get("labeller", "chexpert")
    return f"--labeller {labeller}" + (f" {chexbert_options(labels)}" if labeller == "chexbert" else "")


def official_labels_option(dataset: dict, data_root: str | Path) -> str:
    """`--official-labels` with MIMIC-CXR's own table when the dataset folder holds it (raw data, there
    before the run, so the decision is stable); none for a table dataset, whose labels the index stage
    writes (with `labels.source: official` the report labels are the official ones already)."""
    path = Path(data_root) / "mimic-cxr-2.0.0-chexpert.csv.gz"
    if dataset.get("format") == "table" or not path.is_file():
        return ""
    return f"--official-labels {shlex.quote(str(path))}"


def evaluate_options(
    evaluation: dict, labels: dict, summary_k: int, dataset: dict | None = None, data_root: str | Path = "."
) -> str:
    """The `evaluate` options of issue 15's metrics: zero-shot, report level, text metrics, sensitivity."""
    zs, rr, tm = (_block(evaluation, k) for k in ("zeroshot", "report_retrieval", "text_metrics"))
    options = [f"--summary-k {int(summary_k)}"]
    if _enabled(evaluation, "zeroshot"):
        options.append(f"--zeroshot-uncertain {zs.get('uncertain', 'exclude')} --zeroshot-blank {zs.get('blank', 'negative')}")
    else:
        options.append("--no-zeroshot")
    ks = [int(k) for k in rr.get("k", [1])] if _enabled(evaluation, "report_retrieval") else []
    options.append("--report-k" + "".join(f" {k}" for k in ks))
    reference = tm.get("reference_section", "impression") if _enabled(evaluation, "text_metrics") else "none"
    options.append(f"--reference-section {shlex.quote(reference)}")
    if tm.get("bertscore_model"):
        options.append(f"--bertscore-model {shlex.quote(str(tm['bertscore_model']))}")
    labeller = labels.get("labeller", "chexpert")
    name = "official" if labels.get("source", "labeller") == "official" else labeller
    options.append(f"--report-labels-name {name} --sentence-labels-name {labeller}")
    if _enabled(evaluation, "sensitivity"):
        options.append(chexbert_options(labels))
        official = official_labels_option(dataset or {}, data_root)
        if official:
            options.append(official)
    else:
        options.append("--no-sensitivity")
    return " ".join(options)
