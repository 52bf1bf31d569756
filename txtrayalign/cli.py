"""The `txtrayalign` command line: one subcommand per pipeline stage.

Each subcommand lives in its stage's module, which exposes a `configure(parser)` function and a
`run(args) -> int` function (named below). Modules are imported only when their subcommand runs,
so `txtrayalign --help` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from txtrayalign.errors import InputError

# Bad input, reported as `txtrayalign <cmd>: error: <message>` with exit status 2 (no traceback,
# unless --debug). Anything else is a bug and keeps its traceback. An OSError is the machine or the
# files (missing, unreadable, a truncated HDF5 file, a full disk, a model not downloaded), never a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, OSError, UnicodeError)

# name -> (module, configure function, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "check-config": (
        "txtrayalign.check_config", "configure", "run",
        "check settings files (YAML syntax, keys, values) as the workflow does, without Snakemake",
    ),
    "synth": (
        "txtrayalign.synth.cli", "configure", "run",
        "write the built-in synthetic dataset in the exact MIMIC-CXR(-JPG) layout",
    ),
    "index": (
        "txtrayalign.index", "configure", "run",
        "index a MIMIC-CXR(-JPG) root, an IU X-ray (Open-i) root or a table of pairs into images.parquet,"
        " studies.parquet, problems.parquet",
    ),
    "demographics": (
        "txtrayalign.demographics", "configure", "run",
        "one row per study: sex, age at the study, race, insurance (MIMIC-IV hosp/ or a table's columns)",
    ),
    "images": (
        "txtrayalign.images.cli", "configure_shard", "run_shard",
        "decode and resize one shard of images (DICOM, JPG, PNG) into an HDF5 file",
    ),
    "merge-images": (
        "txtrayalign.images.cli", "configure_merge", "run_merge",
        "merge image shards into one index (dicom_id -> shard, row) and one skipped table",
    ),
    "show-image": (
        "txtrayalign.images.cli", "configure_show", "run_show",
        "decode and preprocess one file exactly as the pipeline does and save it as PNG",
    ),
    "sections": (
        "txtrayalign.text.cli", "configure", "run",
        "extract report sections and sentences into sections.parquet and sentences.parquet",
    ),
    "label": (
        "txtrayalign.chexpert.cli", "configure_label", "run_label",
        "label reports and sentences with the 14 CheXpert observations (parquet)",
    ),
    "chexpert": (
        "txtrayalign.chexpert.cli", "configure_chexpert", "run_chexpert",
        "drop-in CheXpert labeller: --reports_path IN.csv --output_path OUT.csv",
    ),
    "chexbert": (
        "txtrayalign.chexbert.cli", "configure", "run",
        "label reports with CheXbert (chexbert.pth): --reports_path IN.csv --output_path OUT.csv",
    ),
    "labels-compare": (
        "txtrayalign.chexpert.cli", "configure_compare", "run_compare",
        "compare two labellings (CheXpert-format CSVs, or a gold table with --map) per observation",
    ),
    "split": (
        "txtrayalign.splits", "configure", "run",
        "draw a patient-level training subset (splits/<subset>.parquet)",
    ),
    "train": (
        "txtrayalign.train.cli", "configure", "run",
        "train image and text encoders contrastively (CLIP-style) for one experiment",
    ),
    "embed": (
        "txtrayalign.evaluate.embed_cli", "configure", "run",
        "embed the query images and the sentence bank with a trained model (HDF5)",
    ),
    "evaluate": (
        "txtrayalign.evaluate.cli", "configure_evaluate", "run_evaluate",
        "retrieve report sentences for query images and compute metrics with baselines",
    ),
    "summarize": (
        "txtrayalign.evaluate.cli", "configure_summary", "run_summary",
        "gather every experiment's metrics into summary.csv and summary.md",
    ),
    "sweep-select": (
        "txtrayalign.evaluate.sweep_cli", "configure_select", "run_select",
        "choose a sweep's setting by its mean validation metric over seeds (selection.json)",
    ),
    "sweep-report": (
        "txtrayalign.evaluate.sweep_cli", "configure_report", "run_report",
        "a sweep's summary: validation for every setting, test for the chosen one, seed spread, sensitivity",
    ),
}


def _load(name: str):
    module_name, configure_name, run_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, configure_name), getattr(module, run_name)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="txtrayalign",
        description="Align chest X-ray images with report text: the stages of the pipeline.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback for bad input too (placed before COMMAND)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            configure, _ = _load(name)
            configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    _, run = _load(args.command)
    try:
        return int(run(args) or 0)
    except Exception as exc:
        if args.debug or not (isinstance(exc, USER_ERRORS) or out_of_space(exc)):
            raise
        print(f"txtrayalign {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 2


# A full disk (or quota) is the machine's state, not a bug: one line, whichever library hit it.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_OS_PROBLEM = {FileNotFoundError: errno.ENOENT, IsADirectoryError: errno.EISDIR, PermissionError: errno.EACCES}


def error_message(exc: BaseException) -> str:
    """One line for a user error: the message, with the file name an OSError carries."""
    if out_of_space(exc):
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        return (f"no space left on device{where}: free some space, or set `results:` to a disk with room, and "
                "run the same command again (files are written whole or not at all)")
    if isinstance(exc, OSError):
        if exc.strerror:
            where = f"{exc.filename}: " if exc.filename is not None else ""
            return f"{where}{exc.strerror}"
        # Raised with only a path or a message (pandas: FileNotFoundError('x.parquet')).
        problem = next((os.strerror(code) for kind, code in _OS_PROBLEM.items() if isinstance(exc, kind)), "")
        text = " ".join(str(exc).split())
        return f"{text}: {problem}" if problem and problem.lower() not in text.lower() else text or problem
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot decode as {exc.encoding} ({exc.reason} at byte {exc.start})"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
