"""`txtrayalign sections`: report sections and sentences for every study of studies.parquet."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from txtrayalign.errors import InputError
from txtrayalign.text.build import build_tables, check_train_text, load_studies
from txtrayalign.text.sections import TRAIN_SECTIONS
from txtrayalign.utils import setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True, help="studies.parquet from the index stage "
                        "(subject_id, study_id, report_path relative to --root, split, group)")
    parser.add_argument("--root", required=True, help="dataset root that report_path is relative to")
    parser.add_argument("--train-section", default="impression", choices=TRAIN_SECTIONS,
                        help="which text of a report is its training text: impression, findings, both "
                             "(findings then impression, joined), auto (impression, else findings, else the "
                             "last paragraph, else the whole unsectioned text) or report (the whole text, "
                             "header labels removed) [impression]")
    parser.add_argument("--max-empty-share", type=float, default=0.05,
                        help="fail when more than this share of the studies has no training text (each is a "
                             "no_train_text row of the problems table) [0.05]")
    parser.add_argument("--out-sections", required=True, help="output sections.parquet")
    parser.add_argument("--out-sentences", required=True, help="output sentences.parquet (sentences of the "
                        "training text)")
    parser.add_argument("--out-problems", required=True, help="output problems.parquet: reports missing, "
                        "empty, not decodable (UTF-8, or UTF-16/UTF-8 with a byte-order mark) or holding "
                        "NUL bytes; these are not used")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    root = Path(args.root)
    if not root.is_dir():
        raise InputError(f"--root {root}: not a folder")
    studies = load_studies(args.studies)
    if not 0 <= args.max_empty_share <= 1:
        raise InputError(f"--max-empty-share {args.max_empty_share}: must be between 0 and 1")
    sections, sentences, problems = build_tables(studies, root, args.train_section)
    check_train_text(sections, problems, args.train_section, args.max_empty_share)
    write_parquet_atomic(sections, args.out_sections)
    write_parquet_atomic(sentences, args.out_sentences)
    write_parquet_atomic(problems, args.out_problems)
    counts = problems["kind"].value_counts().to_dict() if len(problems) else {}
    log.info("%d reports -> %d sentences (%s); problems: %s", len(sections), len(sentences),
             args.train_section, counts or "none")
    return 0
