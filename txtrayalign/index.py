"""The `index` stage: list a dataset root's images and studies.

Formats: `jpg` / `dcm` / `png` / `auto` read the MIMIC-CXR(-JPG) layout (`txtrayalign.datasets.mimic`);
`openi` reads the IU X-ray collection (`txtrayalign.datasets.iu`); `table` reads any CSV / parquet of
image-report pairs (`txtrayalign.datasets.table`). Every format gives the same three tables
(docs/design.md), through the shared checks of `txtrayalign.datasets.indexed`. Where the report is not
a text file of the dataset (Open-i XML, a text column), the index writes each study's report as
`<out-dir>/reports/<study_id>.txt` and `report_path` is that file's absolute path.

problems.parquet rows (`kind`): `missing_file` (in a table, absent on disk), `not_in_table` (on
disk, absent from the image table), `missing_report` (a study's report absent), `no_split` (an
image the split table does not list), `unrecognised_path` (a file whose path does not carry
p<subject>/s<study> folders), `study_without_images` (a report or study-list entry without images),
`duplicate_dicom_id` (the image table lists an id twice with different paths; every row of it left
out), `conflicting_view` (the metadata gives one id two views; view left unknown), `conflicting_split`
(the split table gives one id two splits; the image left out). More than `datasets.indexed.MAX_CONFLICT_SHARE` of a
table's ids in conflict is an error naming the table.

Errors (`InputError`, one line naming the root or table): no usable image at all (`format: dcm` on a
JPG tree), too many conflicting ids, a patient in more than one split (names the patient).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from txtrayalign.datasets import iu, mimic
from txtrayalign.datasets import table as table_format
from txtrayalign.datasets.indexed import (
    IMAGE_COLUMNS,
    STUDY_COLUMNS,
    Indexed,
    conflicting_ids,
    group_for,
    problems_frame,
)
from txtrayalign.errors import InputError
from txtrayalign.splits import check_patient_splits
from txtrayalign.utils import atomic_path, progress, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "jpg", "dcm", "png", "openi", "table")
LABELS_TABLE = "labels.csv.gz"  # format table: the table's own labels, MIMIC chexpert columns (label --official)


def write_report_texts(texts: dict[int, str], reports_dir: Path) -> dict[int, str]:
    """Write each study's report as `<reports_dir>/<study_id>.txt`, all or nothing; study -> abs path.

    The texts go to a temporary sibling folder that replaces `reports_dir` once complete.
    """
    reports_dir = Path(reports_dir).resolve()
    reports_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{reports_dir.name}.", suffix=".tmp", dir=reports_dir.parent))
    try:
        for study_id, text in progress(texts.items(), desc="write reports", total=len(texts), unit="report"):
            (tmp / f"{int(study_id)}.txt").write_text(text, encoding="utf-8")
        old = reports_dir.with_name(f".{reports_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if reports_dir.exists():
            reports_dir.rename(old)
        tmp.rename(reports_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {int(s): str(reports_dir / f"{int(s)}.txt") for s in texts}


def finish(indexed: Indexed, root: Path, fmt: str, reports_dir: Path | None
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The checks every format shares, then the three tables of docs/design.md.

    Conflicting duplicate ids become problem rows and are left out; no usable image, or a patient
    in two splits, is an `InputError` naming the root. Report texts are written to `reports_dir`.
    """
    images, problems = indexed.images, indexed.problems
    bad = conflicting_ids(images, ["subject_id", "study_id", "path"], f"{root} (format: {fmt})",
                          "duplicate_dicom_id", problems)
    images = images[~images["dicom_id"].isin(bad)].drop_duplicates("dicom_id").reset_index(drop=True)
    if images.empty:
        raise InputError(f"{root}: no usable image (format: {fmt}); "
                         f"{len(problems)} problem(s), e.g. {problems[0]['message'] if problems else 'none'}")
    check_patient_splits(images, f"{root} (format: {fmt})")
    images["group"] = images["subject_id"].map(group_for)
    images["format"] = images["path"].map(lambda p: os.path.splitext(p)[1].lower().lstrip(".").replace("jpeg", "jpg"))
    images = images[IMAGE_COLUMNS].sort_values(["subject_id", "study_id", "dicom_id"]).reset_index(drop=True)

    studies = indexed.studies.drop_duplicates("study_id").copy()
    if indexed.texts:
        if reports_dir is None:
            raise ValueError(f"format {fmt}: the index writes the report texts and needs a reports folder")
        written = write_report_texts(indexed.texts, reports_dir)
        studies["report_path"] = [written.get(s, p) for s, p in zip(studies.study_id, studies.report_path,
                                                                      strict=True)]
    studies["group"] = studies["subject_id"].map(group_for)
    studies = studies[STUDY_COLUMNS].sort_values(["subject_id", "study_id"]).reset_index(drop=True)
    labels_path = Path(reports_dir).with_name(LABELS_TABLE) if reports_dir is not None else None
    if labels_path is not None and indexed.labels is None:
        labels_path.unlink(missing_ok=True)  # an earlier run's labels are not this table's
    elif labels_path is not None:
        path = labels_path
        with atomic_path(path, suffix=".csv.gz.tmp") as tmp:
            indexed.labels.to_csv(tmp, index=False, compression="gzip")
        log.info("wrote the dataset's own labels of %d studies to %s", len(indexed.labels), path)
    return images, studies, problems_frame(problems)


def build_index(
    root: str | os.PathLike, fmt: str = "auto", reports_dir: str | os.PathLike | None = None,
    table: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index a dataset root: (images, studies, problems) DataFrames with the design's columns.

    `reports_dir`: where the index writes report texts (formats openi and table with a text column).
    `table`: the options of `format: table` (`txtrayalign.datasets.table.build`).
    Raises `InputError` (`TableError`) for unusable input, naming the file; `FileNotFoundError` for a
    root that does not exist; `ValueError` for an unknown format.
    """
    root = Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "table":
        return finish(table_format.build(root, **(table or {})), root, fmt, reports_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    if fmt == "openi":
        return finish(iu.build(root), root, fmt, reports_dir)
    return mimic.build(root, fmt)


# ---------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", required=True,
        help="dataset root: MIMIC's (files/ and the tables), an IU X-ray root (ecgen-radiology/ + NLMCXR_png/, "
        "or annotation.json + images/), or the folder the table's relative paths start from",
    )
    parser.add_argument(
        "--out-dir", required=True,
        help="folder for images.parquet, studies.parquet, problems.parquet (and reports/, labels.csv.gz)",
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="jpg / dcm / png / auto (MIMIC layout; auto picks jpg when any .jpg exists, else dcm), openi "
        "(IU X-ray) or table (a CSV / parquet of pairs) (default auto)",
    )
    parser.add_argument("--table", default=None,
                        help="format table: the CSV or parquet file (relative to --root or absolute)")
    parser.add_argument("--column", action="append", default=[], metavar="ROLE=NAME",
                        help="format table: the column holding ROLE (image, image_id, report_text, report_path, "
                        "patient_id, study_id, view, split); repeatable; defaults are the role names")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def _table_options(args: argparse.Namespace) -> dict:
    columns = {}
    for item in args.column:
        role, sep, name = item.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise InputError(f"--column {item!r}: expected ROLE=NAME, e.g. image=filepath")
        columns[role.strip()] = name.strip()
    if args.format != "table":
        if args.table or columns:
            raise InputError(f"--table / --column are options of --format table, not {args.format}")
        return {}
    if not args.table:
        raise InputError("--format table needs --table FILE (the CSV or parquet of image-report pairs)")
    return {"path": args.table, "columns": columns}


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    out = Path(args.out_dir)
    try:
        options = _table_options(args)
        images, studies, problems = build_index(args.root, args.format, reports_dir=out / "reports",
                                                table=options)
    except (InputError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    write_parquet_atomic(images, out / "images.parquet")
    write_parquet_atomic(studies, out / "studies.parquet")
    write_parquet_atomic(problems, out / "problems.parquet")
    counts = problems["kind"].value_counts().to_dict() if len(problems) else {}
    log.info(
        "wrote %s: %d images, %d studies, %d problems %s",
        out,
        len(images),
        len(studies),
        len(problems),
        counts,
    )
    return 0
