"""The `evaluate` and `summarize` subcommands (`embed`: `txtrayalign.evaluate.embed_cli`, apart, so that
the embed stage's code fingerprint leaves out the labeller that evaluation imports).

`evaluate` takes the input files as options and every setting as one JSON object (`--settings`: the
experiment's `evaluation` block, the `labels` and `summary` blocks; what it leaves out takes the
schema's default), so a new `evaluation.*` key reaches its protocol without an option of its own.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from txtrayalign.errors import InputError
from txtrayalign.utils import setup_logging

from . import EvaluationInputError, json_object

log = logging.getLogger(__name__)

INPUTS = {  # option -> (required, help); the keys of `inputs.load_inputs`' paths
    "queries": (True, "embeddings/<exp>/queries.h5"),
    "bank": (True, "embeddings/<exp>/bank.h5 (of the bank's dataset)"),
    "report_labels": (True, "labels/reports.parquet (the query studies' labels)"),
    "sentence_labels": (True, "labels/sentences.parquet of the bank's dataset (bank sentence labels)"),
    "sentences": (True, "text/sentences.parquet of the bank's dataset (bank sentence texts)"),
    "sections": (False, "text/sections.parquet: each query study's report (BLEU, text metrics, gallery)"),
    "bank_sections": (False, "text/sections.parquet of the bank's dataset when it is not the queries' "
                      "(evaluation.bank: source): the report bank's texts"),
    "bank_report_labels": (False, "labels/reports.parquet of the bank's dataset (the report bank's labels)"),
    "official_labels": (False, "the dataset's own study labels (parquet or its CSV): the official truth rows"),
    "patients": (False, "index/patients.parquet: each study's patient attributes (subgroups protocol)"),
    "validation_queries": (False, "embeddings/<exp>/queries.validate.h5: the validation split's queries"),
    "train_queries": (False, "embeddings/<exp>/queries.train.h5: the training split's images (linear probe)"),
}


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    for name, (required, text) in INPUTS.items():
        parser.add_argument("--" + name.replace("_", "-"), required=required, default=None, help=text)
    parser.add_argument("--images-index", default=None, help="images/<size>/index.parquet (gallery thumbnails)")
    parser.add_argument(
        "--settings", default=None,
        help='JSON object (or a .json file) {"evaluation": {...}, "labels": {...}, "summary": {...}}: the '
        "settings of config/README.md; missing keys take the schema's defaults",
    )
    parser.add_argument(
        "--report-labeller", choices=["chexpert", "sentence-labels"], default="chexpert",
        help="label the joined retrieved text with the CheXpert labeller, or combine the retrieved sentences' "
        "own labels (fast approximation)",
    )
    parser.add_argument("--out-dir", required=True, help="eval/<exp>: metrics.json, predictions.parquet, plots, gallery")
    parser.add_argument("--experiment", default=None, help="experiment name (default: the name of --out-dir)")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def read_settings(value: str | None) -> dict:
    """`--settings`: JSON text, or the path of a JSON file; resolved against the schema."""
    from .context import resolve_settings

    if value is None:
        return resolve_settings({})
    text = value if value.lstrip().startswith(("{", "[")) else _read_file(value)
    return resolve_settings(json_object(text, "--settings"))


def _read_file(path: str) -> str:
    if not Path(path).is_file():
        raise EvaluationInputError(f"--settings: neither a JSON object nor a file: {path}")
    return Path(path).read_text(encoding="utf-8")


def _labeller(choice: str):
    if choice == "sentence-labels":
        return None
    from .labels import default_labeller

    return default_labeller()


def run_evaluate(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    from . import plots
    from .evaluation import evaluate, write_outputs
    from .inputs import load_inputs

    try:
        settings = read_settings(args.settings)
        paths = {name: getattr(args, name) for name in INPUTS}
        inputs = load_inputs(paths, settings["evaluation"], settings["labels"],
                             experiment=args.experiment or Path(args.out_dir).name)
        result = evaluate(inputs, settings, labeller=_labeller(args.report_labeller))
    except (EvaluationInputError, InputError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    written = write_outputs(result, args.out_dir)
    figures = plots.write_all(result.metrics, args.out_dir)
    log.info("wrote %s, %s and %d figures", written["metrics"], written["predictions"], len(figures))
    page = write_gallery_page(result, args.out_dir, args.images_index)
    log.info("wrote %s (%d queries shown)", page, settings["evaluation"]["gallery"])
    return 0


def write_gallery_page(result, out_dir: str, images_index: str | None) -> Path:
    """gallery.html, always written (a page without queries for gallery 0, so the file a workflow
    expects exists); each query's report is its own study's, from the query dataset's sections."""
    from . import gallery
    from .embed import open_image_reader
    from .evaluation import predictions_table

    n = result.context.evaluation["gallery"]
    queries = result.inputs.queries
    reports = queries.section_texts("train_text")
    reader = open_image_reader(images_index) if images_index and n > 0 else None
    return gallery.write_gallery(
        out_dir, predictions_table(result), dict(zip(queries.dicom_id, queries.labels, strict=True)),
        {} if reports is None else dict(zip(queries.study_id.tolist(), reports, strict=True)),
        image_reader=reader, n=n, seed=result.context.seed, title=result.metrics["experiment"],
    )


# --- summarize ---------------------------------------------------------------------------------


def configure_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="+", required=True, help="eval/<exp>/metrics.json of each experiment")
    parser.add_argument("--k", type=int, required=True, help="the cut-off shown (config summary.k)")
    parser.add_argument("--out-csv", required=True, help="eval/summary.csv")
    parser.add_argument("--out-md", required=True, help="eval/summary.md")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run_summary(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    from .summary import write_summary

    try:
        table = write_summary(args.metrics, args.k, args.out_csv, args.out_md)
    except EvaluationInputError as exc:
        log.error("%s", exc)
        return 2
    print(f"summary of {len(args.metrics)} experiment(s), {len(table)} rows at k={args.k}:")
    print(f"  table:    {args.out_csv}")
    print(f"  markdown: {args.out_md}")
    return 0
