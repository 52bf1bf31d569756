"""`txtrayalign sweep-select` (a sweep's choice on validation) and `txtrayalign sweep-report` (its
summary: validation for every setting, test for the chosen one, seed spread, sensitivity)."""

from __future__ import annotations

import argparse
import json
import logging

from txtrayalign.utils import setup_logging

from . import EvaluationInputError

log = logging.getLogger(__name__)


def configure_select(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep-json", required=True,
                        help='the sweep as JSON: {"name", "keys", "metric", "k", "points": [{"setting", "seed", "experiment", <key>: value}]}')
    parser.add_argument("--validation-metrics", nargs="+", required=True,
                        help="each point's metrics.json on the validation queries")
    parser.add_argument("--out", required=True, help="selection.json")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run_select(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    from .sweep_summary import select_setting, write_selection

    try:
        sweep = json.loads(args.sweep_json)
        selection = select_setting(sweep, args.validation_metrics)
    except (EvaluationInputError, json.JSONDecodeError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    write_selection(selection, args.out)
    best = next(s for s in selection["settings"] if s["setting"] == selection["chosen"])
    print(f"sweep {selection['sweep']}: chose {selection['chosen']} (validation {selection['metric']}@{selection['k']} "
          f"mean {best['mean']:.3f} over {best['n_seeds']} seed(s)); wrote {args.out}")
    return 0


def configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--selection", required=True, help="selection.json (sweep-select)")
    parser.add_argument("--test-metrics", nargs="+", required=True, help="the chosen setting's test metrics.json, every seed")
    parser.add_argument("--out-csv", required=True, help="summary.csv")
    parser.add_argument("--out-md", required=True, help="summary.md")
    parser.add_argument("--out-png", required=True, help="sensitivity.png")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run_report(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    from .summary import load_metrics
    from .sweep_summary import write_sweep_report

    try:
        selection = load_metrics(args.selection)
        write_sweep_report(selection, args.test_metrics, args.out_csv, args.out_md, args.out_png)
    except EvaluationInputError as exc:
        log.error("%s", exc)
        return 2
    print(f"sweep {selection['sweep']}: wrote {args.out_md}, {args.out_csv}, {args.out_png}")
    return 0
