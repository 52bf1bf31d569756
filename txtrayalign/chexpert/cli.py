"""Command line: `txtrayalign label` (pipeline stage), `txtrayalign chexpert` (drop-in labeller) and
`txtrayalign labels-compare` (two labellings of the same reports)."""

from __future__ import annotations

import argparse
import logging

from txtrayalign.chexpert import compare
from txtrayalign.chexpert.aggregate import explain
from txtrayalign.chexpert.batch import label_unique
from txtrayalign.chexpert.files import read_official, read_reports_csv, write_labeled_csv
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.tables import read_table
from txtrayalign.utils import atomic_path, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- txtrayalign label
def configure_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", required=True, help="sections.parquet of the sections stage "
                        "(subject_id, study_id, label_text)")
    parser.add_argument("--sentences", required=True, help="sentences.parquet of the sections stage "
                        "(sentence_id, study_id, sentence)")
    parser.add_argument("--out-reports", required=True, help="output labels/reports.parquet "
                        "(subject_id, study_id, 14 observations)")
    parser.add_argument("--out-sentences", required=True, help="output labels/sentences.parquet "
                        "(sentence_id, study_id, 14 observations)")
    parser.add_argument("--official", default=None, help="optional mimic-cxr-2.0.0-chexpert.csv.gz: take "
                        "report labels from it; studies missing there are labelled here (and logged)")
    parser.add_argument("--workers", type=int, default=1, help="labelling processes [1]")
    parser.add_argument("--labeller", choices=["chexpert", "chexbert"], default="chexpert",
                        help="chexpert: ours (CheXpert-compatible rules); chexbert: CheXbert, needs its "
                        "checkpoint (--chexbert-checkpoint or $CHEXBERT_CHECKPOINT) [chexpert]")
    parser.add_argument("--chexbert-checkpoint", default=None, help="chexbert.pth (with --labeller chexbert)")
    parser.add_argument("--chexbert-tokenizer", default=None, help="local bert-base-uncased tokenizer folder")
    parser.add_argument("--chexbert-batch-size", type=int, default=32, help="CheXbert texts per pass [32]")
    parser.add_argument("--chexbert-device", default=None, help="CheXbert device [cuda when available]")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def _text_labeller(args: argparse.Namespace):
    """texts, desc -> (N, 14) labels with the chosen labeller (each distinct text labelled once)."""
    if args.labeller == "chexbert":
        try:  # torch and transformers: envs/train.yaml has them, envs/text.yaml (our labeller) does not
            from txtrayalign.chexbert import CheXbertLabeller
        except ImportError as exc:
            raise InputError(f"--labeller chexbert needs torch and transformers ({exc})") from exc

        model = CheXbertLabeller.load(args.chexbert_checkpoint, tokenizer=args.chexbert_tokenizer,
                                      device=args.chexbert_device, batch_size=args.chexbert_batch_size)
        return lambda texts, desc: model.label_texts(texts)
    return lambda texts, desc: label_unique(texts, args.workers, desc=desc)


def run_label(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    label = _text_labeller(args)
    sections = read_table(args.sections, "sections", columns=["subject_id", "study_id", "label_text"])
    sentences = read_table(args.sentences, "sentences", columns=["sentence_id", "study_id", "sentence"])

    reports = sections[["subject_id", "study_id"]].reset_index(drop=True).copy()
    texts = sections["label_text"].fillna("").astype(str).tolist()
    if args.official:
        official = read_official(args.official)
        merged = reports.merge(official.drop(columns="subject_id"), on="study_id", how="left",
                               indicator=True)
        missing = (merged.pop("_merge") == "left_only").to_numpy()
        log.info("official labels for %d of %d studies (%s)", int((~missing).sum()), len(reports),
                 args.official)
        if missing.any():
            log.warning("%d studies are not in %s; labelling them here (first: %s)", int(missing.sum()),
                        args.official, reports.loc[missing, "study_id"].head(5).tolist())
            merged.loc[missing, OBSERVATIONS] = label(
                [t for t, m in zip(texts, missing, strict=True) if m], "label reports")
        reports = merged
    else:
        reports[OBSERVATIONS] = label(texts, "label reports")
    empty = sum(1 for t in texts if not t.strip())
    if empty:
        log.info("%d studies have no text to label (all labels blank)", empty)

    sentence_labels = sentences[["sentence_id", "study_id"]].reset_index(drop=True).copy()
    sentence_labels[OBSERVATIONS] = label(sentences["sentence"].fillna("").astype(str).tolist(),
                                          "label sentences")
    for table in (reports, sentence_labels):
        table[OBSERVATIONS] = table[OBSERVATIONS].astype("float64")
    write_parquet_atomic(reports, args.out_reports)
    write_parquet_atomic(sentence_labels, args.out_sentences)
    log.info("wrote %s (%d reports) and %s (%d sentences)", args.out_reports, len(reports),
             args.out_sentences, len(sentence_labels))
    return 0


# --------------------------------------------------------------------------- txtrayalign chexpert
def configure_chexpert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports_path", "--reports-path", dest="reports_path", required=True,
                        help="one-column CSV of reports (multi-line reports quoted), as the CheXpert "
                             "labeller reads: no header (a first row that is only 'Reports', 'Report', 'Text', "
                             "'Findings' or 'Impression' is taken as a header and dropped); UTF-8, or UTF-8 / "
                             "UTF-16 with a byte-order mark")
    parser.add_argument("--output_path", "--output-path", dest="output_path", default="labeled_reports.csv",
                        help="output CSV: Reports then the 14 observations (1.0 / 0.0 / -1.0 / blank) "
                             "[labeled_reports.csv]")
    parser.add_argument("--verbose", action="store_true", help="log every mention and its decision")
    parser.add_argument("--workers", type=int, default=1, help="labelling processes [1]")


def run_chexpert(args: argparse.Namespace) -> int:
    setup_logging(None, verbose=args.verbose)
    reports = read_reports_csv(args.reports_path)
    labels = label_unique(reports, args.workers, desc="label")
    if args.verbose:
        for i, report in enumerate(reports):
            for e in explain(report):
                log.debug("report %d: %r -> %s = %s (%s %r)", i, e.phrase, e.observation, e.decision,
                          e.rule, e.trigger)
    write_labeled_csv(reports, labels, args.output_path)
    log.info("labelled %d reports -> %s", len(reports), args.output_path)
    return 0


# --------------------------------------------------------------------------- txtrayalign labels-compare
def configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="labels to check: CheXpert-format CSV (e.g. the output of txtrayalign chexpert)")
    parser.add_argument("b", help="reference labels: CheXpert-format CSV, or another category set with --map")
    parser.add_argument("--map", action="append", default=None, metavar="OBS=COL[+COL]",
                        help="B's column(s) for a CheXpert observation (repeatable; several columns are "
                             "joined by their maximum), or 'negbio' for NegBio's ChestX-ray14 gold; with "
                             "--map only the mapped observations are compared")
    parser.add_argument("--key", default=None, help="match rows on this column of both tables "
                        "[rows in the same order]")
    parser.add_argument("--observations", default=None, help="comma-separated observations to compare "
                        "[all 14, or the mapped ones]")
    parser.add_argument("--binary", action="store_true", help="positive or not: every value but 1 counts as 0 "
                        "in both tables (for a binary gold table; implied by --map negbio)")
    parser.add_argument("--disagreements", default=None, help="write the reports whose labels differ "
                        "(row, key, Reports text, A/B codes per differing observation) to this CSV")
    parser.add_argument("--out", default=None, help="write the per-observation table (agreement, P/R/F1, "
                        "4x4 confusion counts) to this CSV")


def run_compare(args: argparse.Namespace) -> int:
    setup_logging(None)
    names = (str(args.a), str(args.b))
    a_raw, b_raw = compare.read_table(args.a), compare.read_table(args.b)
    a_raw, b_raw = compare.align(a_raw, b_raw, args.key, names)
    mapping = compare.parse_mapping(args.map) if args.map else None
    if args.observations:
        observations = [o.strip() for o in args.observations.split(",") if o.strip()]
        unknown = [o for o in observations if o not in OBSERVATIONS]
        if unknown:
            raise InputError(f"--observations: {unknown[0]!r} is not one of {OBSERVATIONS}")
    else:
        observations = [o for o in OBSERVATIONS if mapping is None or o in mapping]
    a = compare.codes(a_raw, None, names[0], observations)
    b = compare.codes(b_raw, mapping, names[1], observations)
    if args.binary or "negbio" in (args.map or []):
        a, b = a.where(a == "1", "0"), b.where(b == "1", "0")
    per, summary = compare.compare(a, b)
    print(compare.format_report(per, summary, names))
    if args.out:
        with atomic_path(args.out, suffix=".csv.tmp") as tmp:
            per.to_csv(tmp, index=False, float_format="%.4f")
    if args.disagreements:
        table = compare.disagreements(a, b, a_raw, b_raw, args.key)
        with atomic_path(args.disagreements, suffix=".csv.tmp") as tmp:
            table.to_csv(tmp, index=False)
        log.info("%d of %d reports differ -> %s", len(table), len(a), args.disagreements)
    return 0
