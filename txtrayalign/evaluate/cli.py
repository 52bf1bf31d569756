"""The `evaluate` and `summarize` subcommands (`embed`: `txtrayalign.evaluate.embed_cli`, apart, so that
the embed stage's code fingerprint leaves out the labeller that evaluation imports)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from txtrayalign.errors import InputError
from txtrayalign.utils import setup_logging

from . import EvaluationInputError

log = logging.getLogger(__name__)


def _ks(values: list[int]) -> list[int]:
    bad = [k for k in values if k < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"k must be positive, got {bad}")
    return sorted(set(values))


# --- evaluate ----------------------------------------------------------------------------------


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queries", required=True, help="embeddings/<exp>/queries.h5")
    parser.add_argument("--bank", required=True, help="embeddings/<exp>/bank.h5")
    parser.add_argument("--report-labels", required=True, help="labels/reports.parquet (study labels)")
    parser.add_argument(
        "--sentence-labels", required=True, help="labels/sentences.parquet (bank sentence labels)"
    )
    parser.add_argument(
        "--sentences", required=True, help="text/sentences.parquet (texts for predictions and gallery)"
    )
    parser.add_argument(
        "--sections",
        default=None,
        help="text/sections.parquet: each query study's report (train_text), the reference of BLEU "
        "(without it BLEU is not computed)",
    )
    parser.add_argument(
        "--bank-sections", default=None,
        help="text/sections.parquet of the bank's dataset, when it is not the queries' (cross-dataset "
        "evaluation.bank: source): the report bank's texts",
    )
    parser.add_argument(
        "--bank-report-labels", default=None,
        help="labels/reports.parquet of the bank's dataset (as --bank-sections): the report bank's labels",
    )
    parser.add_argument(
        "--query-labels",
        choices=["report", "sentence_max"],
        default="report",
        help="query study labels: report = --report-labels (CheXpert rule on the whole report); "
        "sentence_max = per-observation maximum of the study's sentence labels (the original research "
        "code's aggregation)",
    )
    parser.add_argument(
        "--images-index", default=None, help="images/<size>/index.parquet (gallery thumbnails)"
    )
    parser.add_argument(
        "--k", type=int, nargs="+", default=[1, 2, 5, 10], help="cut-offs (default: 1 2 5 10)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling, random baseline and bootstrap")
    parser.add_argument(
        "--sample", type=int, default=None, help="evaluate N queries drawn at random (seeded)"
    )
    parser.add_argument(
        "--gallery", type=int, default=12, help="queries shown in gallery.html (0: a page without queries)"
    )
    parser.add_argument(
        "--report-labeller",
        choices=["chexpert", "sentence-labels"],
        default="chexpert",
        help="label the concatenated retrieved sentences with the CheXpert labeller, or combine the "
        "sentences' own labels (fast approximation)",
    )
    parser.add_argument(
        "--summary-k", type=int, default=None,
        help="the k of the text metrics and the labeller-sensitivity table (default: 2 when evaluated, "
        "else the smallest k)",
    )
    wider = parser.add_argument_group("wider evaluation (issue 15)")
    wider.add_argument("--no-zeroshot", action="store_true", help="skip zero-shot AUROC")
    wider.add_argument("--zeroshot-uncertain", choices=["exclude", "positive", "negative"], default="exclude",
                       help="zero-shot targets: uncertain (-1) labels left out or counted as one class [exclude]")
    wider.add_argument("--zeroshot-blank", choices=["negative", "exclude"], default="negative",
                       help="zero-shot targets: unmentioned observations negative or left out [negative]")
    wider.add_argument("--report-k", type=int, nargs="*", default=[1],
                       help="report-level retrieval cut-offs (none given: skipped) [1]")
    wider.add_argument("--reference-section", default="impression",
                       help="section of --sections the text metrics compare against; 'none': no text metrics "
                       "[impression]")
    wider.add_argument("--bertscore-model", default=None, help="local folder of a BERTScore model (else absent)")
    wider.add_argument("--no-sensitivity", action="store_true", help="skip the labeller-sensitivity table")
    wider.add_argument("--report-labels-name", choices=["chexpert", "chexbert", "official"], default="chexpert",
                       help="what --report-labels holds: our labeller's, CheXbert's or the dataset's labels "
                       "[chexpert]")
    wider.add_argument("--sentence-labels-name", choices=["chexpert", "chexbert"], default="chexpert",
                       help="the labeller of --sentence-labels [chexpert]")
    wider.add_argument("--official-labels", default=None,
                       help="the dataset's own study labels (parquet or its CSV): the official truth rows")
    wider.add_argument("--chexbert-checkpoint", default=None,
                       help="chexbert.pth: CheXbert rows of the sensitivity table (default $CHEXBERT_CHECKPOINT; "
                       "none: rows marked absent)")
    wider.add_argument("--chexbert-tokenizer", default=None, help="local bert-base-uncased tokenizer folder")
    wider.add_argument("--chexbert-batch-size", type=int, default=32, help="CheXbert reports per pass [32]")
    wider.add_argument("--chexbert-device", default=None, help="CheXbert device [cuda when available]")
    parser.add_argument(
        "--out-dir", required=True, help="eval/<exp>: metrics.json, predictions.parquet, plots, gallery"
    )
    parser.add_argument("--experiment", default=None, help="experiment name (default: the name of --out-dir)")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def _labeller(choice: str):
    if choice == "sentence-labels":
        return None
    from .evaluation import default_labeller

    try:
        return default_labeller()
    except (ImportError, EvaluationInputError) as exc:
        log.warning("CheXpert labeller unavailable (%s): combining sentence labels instead", exc)
        return None


def _chexbert(args: argparse.Namespace):
    """A CheXbert labeller of texts, or the reason there is none (no checkpoint configured)."""
    import os

    from txtrayalign.chexbert import CHECKPOINT_ENV

    checkpoint = args.chexbert_checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not checkpoint:
        return f"no CheXbert checkpoint (labels.chexbert.checkpoint, --chexbert-checkpoint or ${CHECKPOINT_ENV})"
    from txtrayalign.chexbert import CheXbertLabeller

    labeller = CheXbertLabeller.load(checkpoint, tokenizer=args.chexbert_tokenizer, device=args.chexbert_device,
                                     batch_size=args.chexbert_batch_size)
    return labeller.label_texts


def run_evaluate(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    import pandas as pd

    from . import gallery, plots
    from .embed import open_image_reader
    from .evaluation import evaluate, load_inputs, predictions_table, write_outputs

    try:
        ks = _ks(args.k)
        inputs = load_inputs(
            args.queries,
            args.bank,
            args.report_labels,
            args.sentence_labels,
            args.sentences,
            max_k=max(ks),
            sample=args.sample,
            seed=args.seed,
            experiment=args.experiment or Path(args.out_dir).name,
            query_labels=args.query_labels,
            sections_path=args.sections,
            reference_section=None if args.reference_section.lower() in ("", "none") else args.reference_section,
            official_labels_path=args.official_labels,
            report_labels_name=args.report_labels_name,
            sentence_labels_name=args.sentence_labels_name,
            bank_sections_path=args.bank_sections,
            bank_report_labels_path=args.bank_report_labels,
        )
        report_k = _ks(args.report_k) if args.report_k else []
        result = evaluate(
            inputs,
            ks,
            n_boot=args.bootstrap,
            seed=args.seed,
            labeller=_labeller(args.report_labeller),
            summary_k=args.summary_k,
            zeroshot=None if args.no_zeroshot else {"uncertain": args.zeroshot_uncertain, "blank": args.zeroshot_blank},
            report_ks=report_k,
            text_similarity=args.reference_section.lower() not in ("", "none"),
            bertscore_model=args.bertscore_model,
            sensitivity=not args.no_sensitivity,
            chexbert=None if args.no_sensitivity else _chexbert(args),
        )
    except (EvaluationInputError, InputError, argparse.ArgumentTypeError) as exc:
        log.error("%s", exc)
        return 2
    result.metrics["sample"] = args.sample
    written = write_outputs(result, args.out_dir)
    figures = plots.write_all(result.metrics, args.out_dir)
    log.info("wrote %s, %s and %d figures", written["metrics"], written["predictions"], len(figures))
    # Always written (a page without queries for --gallery 0), so the file a workflow expects exists.
    sentences = pd.read_parquet(args.sentences)
    reader = open_image_reader(args.images_index) if args.images_index and args.gallery > 0 else None
    labels = dict(zip(inputs.dicom_id, inputs.query_labels, strict=True))
    page = gallery.write_gallery(
        args.out_dir,
        predictions_table(result),
        labels,
        gallery.report_texts(sentences.loc[sentences["study_id"].isin(set(inputs.study_id))]),
        image_reader=reader,
        n=max(args.gallery, 0),
        seed=args.seed,
        title=result.metrics["experiment"],
    )
    log.info("wrote %s (%d queries shown)", page, max(args.gallery, 0))
    return 0


# --- summarize ---------------------------------------------------------------------------------


def configure_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics", nargs="+", required=True, help="eval/<exp>/metrics.json of each experiment"
    )
    parser.add_argument(
        "--k", type=int, default=2, help="the cut-off shown (default: 2, as in the earlier work)"
    )
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
