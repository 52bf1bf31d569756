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
    parser.add_argument("--validation-metrics", nargs="+", default=None,
                        help="each point's metrics.json on the validation queries (else scored here, below)")
    score = parser.add_argument_group("scoring the points here (instead of --validation-metrics)")
    score.add_argument("--validation-queries", nargs="+", default=None,
                       help="each point's embeddings/<exp>/queries.validate.h5, in the order of the sweep's points")
    score.add_argument("--banks", nargs="+", default=None, help="each point's embeddings/<exp>/bank.h5, same order")
    for name in ("report_labels", "sentence_labels", "sentences", "sections"):
        score.add_argument("--" + name.replace("_", "-"), default=None, help="as for `txtrayalign evaluate`")
    score.add_argument("--settings", default=None, help="the evaluation settings (JSON), as for `txtrayalign evaluate`")
    parser.add_argument("--out", required=True, help="selection.json")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run_select(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    from .sweep_summary import metrics_by_experiment, select_setting, write_selection

    try:
        sweep = json.loads(args.sweep_json)
        if args.validation_metrics:
            by_exp = metrics_by_experiment(args.validation_metrics)
        else:
            by_exp = _score_here(args, sweep["points"])
        selection = select_setting(sweep, by_exp)
    except (EvaluationInputError, json.JSONDecodeError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    write_selection(selection, args.out)
    best = next(s for s in selection["settings"] if s["setting"] == selection["chosen"])
    print(f"sweep {selection['sweep']}: chose {selection['chosen']} (validation {selection['metric']}@{selection['k']} "
          f"mean {best['mean']:.3f} over {best['n_seeds']} seed(s)); wrote {args.out}")
    return 0


def _score_here(args: argparse.Namespace, points: list[dict]) -> dict:
    from .cli import read_settings
    from .sweep_scoring import score_points

    missing = [o for o in ("validation_queries", "banks", "report_labels", "sentence_labels", "sentences")
               if not getattr(args, o)]
    if missing:
        raise EvaluationInputError("give --validation-metrics, or " + ", ".join("--" + m.replace("_", "-") for m in missing))
    shared = {name: getattr(args, name) for name in ("report_labels", "sentence_labels", "sentences", "sections")}
    return score_points(points, args.validation_queries, args.banks, shared, read_settings(args.settings))


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
