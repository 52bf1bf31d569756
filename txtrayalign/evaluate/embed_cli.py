"""The `embed` subcommand: the query images and their reports (`--out-queries`), the sentence bank,
zero-shot prompts and report bank (`--out-bank`), or both, with a trained model (`txtrayalign.evaluate.embed`).

A module of its own, beside `cli.py` (evaluate, summarize): what it imports is what the embed stage's
code fingerprint covers, and that leaves out the labeller, which only evaluation runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from txtrayalign.errors import InputError
from txtrayalign.utils import setup_logging

from . import EvaluationInputError, is_none, json_object

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options; those of a setting take the schema's default (`evaluation.*`, its only home)."""
    from txtrayalign.settings import defaults_of, schema

    default = defaults_of(schema()["definitions"]["evaluation"])
    _input_options(parser)
    _setting_options(parser, default)
    parser.add_argument("--out-queries", default=None, help="output embeddings/<exp>/queries.h5 (the queries)")
    parser.add_argument("--out-bank", default=None, help="output embeddings/<exp>/bank.h5 (the banks)")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def _input_options(parser: argparse.ArgumentParser) -> None:
    """The files read."""
    parser.add_argument("--model-dir", required=True, help="trained experiment folder (models/<exp>)")
    parser.add_argument(
        "--images-index", default=None,
        help="images/<size>/index.parquet (dicom_id, shard, row); needed with --out-queries",
    )
    parser.add_argument(
        "--split", required=True, help="splits/<subset>.parquet (subject_id, study_id, dicom_id, split)"
    )
    parser.add_argument(
        "--sentences", default=None, help="text/sentences.parquet (the sentence bank's source); needed with --out-bank"
    )
    parser.add_argument(
        "--sections", required=True,
        help="text/sections.parquet (train_text: each query study's report; the report bank's texts)",
    )
    parser.add_argument(
        "--images-table", default=None, help="optional index/images.parquet: store each query image's view"
    )


def _setting_options(parser: argparse.ArgumentParser, default: dict) -> None:
    """What is embedded and how: the `evaluation.*` settings' defaults, and the run's own switches."""
    parser.add_argument(
        "--query-split", default=default["query_split"],
        help=f"split whose images are the queries (evaluation.query_split) [{default['query_split']}]"
    )
    parser.add_argument(
        "--bank-splits",
        default=",".join(default["bank_splits"]),
        help="comma-separated splits whose report sentences form the bank (evaluation.bank_splits)",
    )
    parser.add_argument("--no-dedupe", action="store_true", help="keep repeated sentence texts in the bank")
    parser.add_argument(
        "--prompts",
        default=json.dumps(default["zeroshot"]["prompts"]),
        help='zero-shot prompt overrides as JSON, {"Observation": ["positive", "negative"]} '
        "(default: CheXzero's pairs, see evaluate/zeroshot.py)",
    )
    parser.add_argument(
        "--report-section",
        default=default["report_retrieval"]["section"],
        help="section of sections.parquet whose bank-split texts form the report bank of report-level "
        f"retrieval (CXR-RePaiR); 'none': no report bank [{default['report_retrieval']['section']}]",
    )
    parser.add_argument(
        "--dtype", choices=["float16", "float32"], default=default["dtype"],
        help=f"stored embedding type [{default['dtype']}]"
    )
    parser.add_argument("--batch-size", type=int, default=default["batch_size"],
                        help=f"images or sentences per forward pass [{default['batch_size']}]")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-queries", type=int, default=None, help="embed only the first N query images")
    parser.add_argument("--no-reports", action="store_true",
                        help="with --out-queries: leave out the query studies' reports (the training images of the "
                        "linear probe need none)")
    parser.add_argument("--allow-empty", action="store_true",
                        help="with --out-queries: a query split without images writes an empty file (logged) "
                        "instead of failing; for the auxiliary splits (validate, train) whose readers then do without")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _needed(args: argparse.Namespace) -> None:
    """What each output needs, as one error naming the option."""
    if not (args.out_queries or args.out_bank):
        raise InputError("nothing to write: give --out-queries, --out-bank or both")
    if args.out_queries and not args.images_index:
        raise InputError("--out-queries needs --images-index (the query images)")
    if args.out_bank and not args.sentences:
        raise InputError("--out-bank needs --sentences (the sentence bank's source)")


def select(args: argparse.Namespace):
    """What to embed (`embed.EmbedInputs`), from the tables the options name."""
    from txtrayalign.tables import read_table

    from .embed import EmbedInputs, select_bank, select_queries
    from .zeroshot import resolve_prompts

    _needed(args)
    paths = {"split": args.split, "images_index": args.images_index, "sentences": args.sentences,
             "sections": args.sections}
    split = read_table(args.split, "split", ["study_id", "dicom_id", "split"])
    sections = read_table(args.sections, "sections", ["study_id", "train_text"], all_columns=True)
    inputs = EmbedInputs(queries=None, bank=None, reports=None)
    if args.out_queries:
        index = read_table(args.images_index, "image_shard_index", ["dicom_id", "shard", "row"])
        views = read_table(args.images_table, "index_images", ["dicom_id", "view"]) if args.images_table else None
        try:
            inputs.queries, inputs.reports = select_queries(
                split, index, sections, args.query_split, args.max_queries, paths, views)
        except EvaluationInputError as exc:
            if not args.allow_empty or args.out_bank:
                raise
            log.warning("%s: writing an empty %s (--allow-empty)", exc, args.out_queries)
            inputs.queries = pd.DataFrame({"dicom_id": [], "study_id": [], "view": []})
            inputs.reports = pd.DataFrame({"study_id": [], "text": []})
        if args.no_reports:
            inputs.reports = inputs.reports.iloc[:0]
    if args.out_bank:
        inputs.prompts = resolve_prompts(json_object(args.prompts, "--prompts"))
        inputs.report_section = None if is_none(args.report_section) else args.report_section
        sentences = read_table(args.sentences, "sentences", ["sentence_id", "study_id", "sentence"])
        inputs.bank, inputs.report_bank = select_bank(
            split, sentences, sections, [s.strip() for s in args.bank_splits.split(",") if s.strip()],
            dedupe=not args.no_dedupe, paths=paths, report_section=inputs.report_section)
    return inputs


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    import torch

    from txtrayalign.train import load_model

    from .embed import embed_all, open_image_reader, write_bank, write_queries

    try:
        inputs = select(args)
    except (EvaluationInputError, InputError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    if inputs.queries is not None and inputs.queries.empty:
        from .embed import write_empty_queries

        write_empty_queries(args.out_queries, {"query_split": args.query_split, "model_dir": str(args.model_dir)})
        return 0
    device = _device(args.device)
    log.info(
        "embedding %s query images, %s query reports, %s bank sentences, %s bank reports on %s",
        *("no" if df is None else len(df) for df in (inputs.queries, inputs.reports, inputs.bank, inputs.report_bank)),
        device,
    )
    try:
        model = load_model(args.model_dir, device)
    except FileNotFoundError as exc:
        log.error("cannot load the model of %s: %s", args.model_dir, exc)
        return 2
    if hasattr(model, "eval"):
        model.eval()
    reader = open_image_reader(args.images_index) if args.out_queries else None
    with torch.no_grad():
        emb = embed_all(model, inputs, reader, device, batch_size=args.batch_size, dtype=args.dtype)
    attrs = {"model_dir": str(args.model_dir), "experiment": Path(args.model_dir).name, "dtype": args.dtype}
    if args.out_queries:
        write_queries(args.out_queries, inputs, emb, {**attrs, "query_split": args.query_split})
    if args.out_bank:
        write_bank(
            args.out_bank, inputs, emb, {**attrs, "bank_splits": args.bank_splits, "dedupe": not args.no_dedupe}
        )
    log.info("wrote %s", " and ".join(p for p in (args.out_queries, args.out_bank) if p))
    return 0
