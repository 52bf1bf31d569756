"""`txtrayalign chexbert`: label a CheXpert-labeller input CSV with CheXbert, same output format."""

from __future__ import annotations

import argparse
import logging

from txtrayalign.chexbert.model import CHECKPOINT_ENV, DEFAULT_BATCH_SIZE, TOKENIZER_ENV, CheXbertLabeller
from txtrayalign.chexpert.files import read_reports_csv, write_labeled_csv
from txtrayalign.utils import setup_logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports_path", "--reports-path", dest="reports_path", required=True,
                        help="headerless one-column CSV of reports (multi-line reports quoted)")
    parser.add_argument("--output_path", "--output-path", dest="output_path", default="labeled_reports.csv",
                        help="output CSV: Reports then the 14 observations (1.0 / 0.0 / -1.0 / blank) "
                             "[labeled_reports.csv]")
    parser.add_argument("--checkpoint", "--chexbert-checkpoint", dest="checkpoint", default=None,
                        help=f"chexbert.pth [${CHECKPOINT_ENV}]")
    parser.add_argument("--tokenizer", "--chexbert-tokenizer", dest="tokenizer", default=None,
                        help=f"local folder of the bert-base-uncased tokenizer [${TOKENIZER_ENV}, else the "
                             "local Hugging Face cache]")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"reports per forward pass [{DEFAULT_BATCH_SIZE}]")
    parser.add_argument("--device", default=None, help="cuda, cpu, cuda:1, ... [cuda when available]")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    setup_logging(None, verbose=args.verbose)
    reports = read_reports_csv(args.reports_path)
    labeller = CheXbertLabeller.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device,
                                     batch_size=args.batch_size)
    labels = labeller.label_texts(reports)
    write_labeled_csv(reports, labels, args.output_path)
    log.info("labelled %d reports with CheXbert -> %s", len(reports), args.output_path)
    return 0
