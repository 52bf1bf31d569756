"""The `index` stage: list a MIMIC-CXR / MIMIC-CXR-JPG root's images and studies.

Sources, in order of preference (see `constants.TABLE_COLUMNS`):

- images: `cxr-record-list.csv.gz` (its paths end in `.dcm`; for a JPG root the extension is
  mapped), else `mimic-cxr-2.0.0-metadata.csv.gz`, else `mimic-cxr-2.0.0-split.csv.gz` (paths built
  as `files/pXX/p<subject>/s<study>/<dicom_id>.<ext>`), else a scan of the `files/` tree;
- view: `ViewPosition` of the metadata table ("" when absent or unknown);
- split: the split table; images it does not list take the split of their patient's other images,
  else the hash split below (and a `no_split` problem row);
- studies: `cxr-study-list.csv.gz`, else the studies of the images plus the `s<study>.txt`
  reports found beside the study folders.

Each table may also be stored uncompressed (the same name without `.gz`). A table that exists
but lacks a column, or has non-integer ids, is an error naming the file and the column.

Hash split (no split table): patients are assigned by the first 8 bytes of
SHA-256(str(subject_id)) as an integer modulo 1000: < 800 train, < 900 validate, else test, i.e.
about 80/10/10 by patient, the same on every machine and run.

problems.parquet rows (`kind`): `missing_file` (in a table, absent on disk), `not_in_table` (on
disk, absent from the image table), `missing_report` (a study's report absent), `no_split` (an
image the split table does not list), `unrecognised_path` (a file whose path does not carry
p<subject>/s<study> folders), `study_without_images` (a report or study-list entry without images).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from pathlib import Path

import pandas as pd

from txtrayalign import constants
from txtrayalign.utils import progress, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "jpg", "dcm", "png")
_EXTENSIONS: dict[str, tuple[str, ...]] = {"jpg": (".jpg", ".jpeg"), "dcm": (".dcm",), "png": (".png",)}
IMAGE_COLUMNS = ["dicom_id", "subject_id", "study_id", "path", "view", "split", "group", "format"]
STUDY_COLUMNS = ["subject_id", "study_id", "report_path", "split", "group"]
PROBLEM_COLUMNS = ["kind", "path", "subject_id", "study_id", "dicom_id", "message"]
_SUBJECT_DIR = re.compile(r"^p(\d+)$")
_STUDY_DIR = re.compile(r"^s(\d+)$")


class TableError(ValueError):
    """A dataset table that is present but unusable (missing column, unreadable, bad ids)."""


# ------------------------------------------------------------------------------------------ scanning


def scan_files(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """All image-like files and `.txt` reports under `root/files`, as paths relative to `root`.

    Walks with `os.scandir` (one `stat`-free pass over directory entries; fast on 377k files).
    """
    root = Path(root)
    images: list[str] = []
    reports: list[str] = []
    image_suffixes = {s for exts in _EXTENSIONS.values() for s in exts}
    stack = ["files"]
    top = root / "files"
    if not top.is_dir():
        return images, reports
    while stack:
        rel_dir = stack.pop()
        with os.scandir(root / rel_dir) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}"
                if entry.is_dir(follow_symlinks=True):
                    stack.append(rel)
                    continue
                suffix = os.path.splitext(entry.name)[1].lower()
                if suffix in image_suffixes:
                    images.append(rel)
                elif suffix == ".txt":
                    reports.append(rel)
    images.sort()
    reports.sort()
    return images, reports


def detect_format(image_paths: list[str]) -> str:
    """`jpg` if any .jpg files exist, else `dcm` if any .dcm, else `png` if any .png, else `jpg`."""
    suffixes = {os.path.splitext(p)[1].lower() for p in image_paths}
    for fmt in ("jpg", "dcm", "png"):
        if suffixes & set(_EXTENSIONS[fmt]):
            return fmt
    return "jpg"


def ids_from_path(rel_path: str) -> tuple[int, int, str] | None:
    """(subject_id, study_id, dicom_id) from `files/pXX/p<subject>/s<study>/<dicom_id>.<ext>`."""
    parts = rel_path.split("/")
    if len(parts) < 3:
        return None
    subject = _SUBJECT_DIR.match(parts[-3])
    study = _STUDY_DIR.match(parts[-2])
    if not subject or not study:
        return None
    return int(subject.group(1)), int(study.group(1)), os.path.splitext(parts[-1])[0]


def hash_split(subject_id: int) -> str:
    """The deterministic ~80/10/10 patient split used when no split table exists."""
    bucket = int.from_bytes(hashlib.sha256(str(int(subject_id)).encode()).digest()[:8], "big") % 1000
    return "train" if bucket < 800 else ("validate" if bucket < 900 else "test")


def image_path(subject_id: int, study_id: int, dicom_id: str, ext: str) -> str:
    """The MIMIC path of an image, relative to the root."""
    return f"files/{constants.group_of(subject_id)}/p{subject_id}/s{study_id}/{dicom_id}{ext}"


def report_path(subject_id: int, study_id: int) -> str:
    """The MIMIC path of a study's report (beside its folder), relative to the root."""
    return f"files/{constants.group_of(subject_id)}/p{subject_id}/s{study_id}.txt"


# ------------------------------------------------------------------------------------------- tables


def find_table(root: Path, name: str) -> Path | None:
    """The table `name` in `root` (gzip, or the same name without .gz), or None."""
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_table(root: Path, name: str, usecols: list[str] | None = None) -> pd.DataFrame | None:
    """Read a MIMIC table, checking its columns; None when the table is absent."""
    path = find_table(root, name)
    if path is None:
        return None
    expected = constants.TABLE_COLUMNS[name]
    try:
        header = pd.read_csv(path, nrows=0)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
        raise TableError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in expected if c not in header.columns]
    if missing:
        raise TableError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected columns {expected}, found {list(header.columns)}"
        )
    cols = usecols or expected
    try:
        df = pd.read_csv(path, usecols=cols, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise TableError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc
    for col in ("subject_id", "study_id"):
        if col in df.columns:
            values = pd.to_numeric(df[col].str.strip(), errors="coerce")
            bad = values.isna() | (values != values.round())
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise TableError(
                    f"{path}: column {col!r} must hold integer ids; row {row + 2} has {df[col].iloc[row]!r}"
                )
            df[col] = values.astype("int64")
    if "dicom_id" in df.columns:
        df["dicom_id"] = df["dicom_id"].str.strip()
        if (df["dicom_id"] == "").any():
            row = int((df["dicom_id"] == "").to_numpy().nonzero()[0][0])
            raise TableError(f"{path}: column 'dicom_id' is empty in row {row + 2}")
    log.info("read %s: %d rows", path, len(df))
    return df


# -------------------------------------------------------------------------------------------- index


def _problem(kind: str, path: str, subject_id, study_id, dicom_id: str, message: str) -> dict:
    return {
        "kind": kind,
        "path": path,
        "subject_id": subject_id,
        "study_id": study_id,
        "dicom_id": dicom_id,
        "message": message,
    }


def _images_from_tables(root: Path, fmt: str, ext: str) -> tuple[pd.DataFrame | None, str]:
    record = read_table(root, constants.RECORD_LIST)
    if record is not None:
        df = record[["dicom_id", "subject_id", "study_id", "path"]].copy()
        df["path"] = df["path"].str.strip().str.replace(r"\.[A-Za-z0-9]+$", ext, regex=True)
        return df, constants.RECORD_LIST
    for name in (constants.METADATA, constants.SPLIT_TABLE):
        table = read_table(root, name, usecols=["dicom_id", "subject_id", "study_id"])
        if table is not None:
            df = table.drop_duplicates("dicom_id").copy()
            df["path"] = [
                image_path(s, t, d, ext)
                for s, t, d in zip(df.subject_id, df.study_id, df.dicom_id, strict=True)
            ]
            return df, name
    return None, ""


def build_index(
    root: str | os.PathLike, fmt: str = "auto"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index a dataset root: (images, studies, problems) DataFrames with the design's columns.

    Raises `TableError` for a table that exists but is unusable, `FileNotFoundError` for a root
    that does not exist, `ValueError` for an unknown format.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    disk_images, disk_reports = scan_files(root)
    log.info("scanned %s/files: %d image files, %d reports", root, len(disk_images), len(disk_reports))
    if fmt == "auto":
        fmt = detect_format(disk_images)
        log.info("format: %s", fmt)
    exts = _EXTENSIONS[fmt]
    disk_images = [p for p in disk_images if os.path.splitext(p)[1].lower() in exts]
    problems: list[dict] = []

    images, source = _images_from_tables(root, fmt, exts[0])
    if images is None:
        log.info("no image table in %s: using the %d %s files found on disk", root, len(disk_images), fmt)
        rows = []
        for rel in progress(disk_images, desc="index files", unit="file"):
            ids = ids_from_path(rel)
            if ids is None:
                problems.append(
                    _problem(
                        "unrecognised_path",
                        rel,
                        None,
                        None,
                        "",
                        "path does not follow files/pXX/p<subject>/s<study>/<file>",
                    )
                )
                continue
            rows.append((ids[2], ids[0], ids[1], rel))
        images = pd.DataFrame(rows, columns=["dicom_id", "subject_id", "study_id", "path"])
        images = images.astype({"subject_id": "int64", "study_id": "int64"})
    else:
        on_disk = set(disk_images)
        in_table = set(images["path"])
        present = images["path"].isin(on_disk).to_numpy()
        for row in images.loc[~present].itertuples(index=False):
            problems.append(
                _problem(
                    "missing_file",
                    row.path,
                    row.subject_id,
                    row.study_id,
                    row.dicom_id,
                    f"listed in {source} but absent on disk",
                )
            )
        for rel in sorted(on_disk - in_table):
            ids = ids_from_path(rel) or (None, None, os.path.splitext(os.path.basename(rel))[0])
            problems.append(
                _problem("not_in_table", rel, ids[0], ids[1], ids[2], f"on disk but not listed in {source}")
            )
        images = images.loc[present].reset_index(drop=True)

    dup = images["dicom_id"].duplicated(keep="first")
    for row in images.loc[dup].itertuples(index=False):
        problems.append(
            _problem(
                "duplicate_dicom_id",
                row.path,
                row.subject_id,
                row.study_id,
                row.dicom_id,
                "dicom_id listed more than once; first kept",
            )
        )
    images = images.loc[~dup].reset_index(drop=True)

    metadata = read_table(root, constants.METADATA, usecols=["dicom_id", "ViewPosition"])
    view = (
        dict(zip(metadata.dicom_id, metadata.ViewPosition.str.strip(), strict=True))
        if metadata is not None
        else {}
    )
    images["view"] = [view.get(d, "") for d in images["dicom_id"]]

    images["split"] = _assign_splits(root, images, problems)
    images["group"] = images["subject_id"].map(constants.group_of)
    images["format"] = images["path"].map(
        lambda p: os.path.splitext(p)[1].lower().lstrip(".").replace("jpeg", "jpg")
    )
    images = images[IMAGE_COLUMNS].sort_values(["subject_id", "study_id", "dicom_id"]).reset_index(drop=True)

    studies = _build_studies(root, images, disk_reports, problems)
    problems_df = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    problems_df = problems_df.astype({"subject_id": "Int64", "study_id": "Int64"})
    for col in ("kind", "path", "dicom_id", "message"):
        problems_df[col] = problems_df[col].fillna("").astype(str)
    return images, studies, problems_df


def _assign_splits(root: Path, images: pd.DataFrame, problems: list[dict]) -> pd.Series:
    table = read_table(root, constants.SPLIT_TABLE, usecols=["dicom_id", "subject_id", "split"])
    if table is None:
        log.info("no split table: hash split by patient (~80/10/10)")
        return images["subject_id"].map(hash_split)
    bad = ~table["split"].isin(constants.SPLITS)
    if bad.any():
        raise TableError(
            f"{find_table(root, constants.SPLIT_TABLE)}: column 'split' has {table['split'][bad].iloc[0]!r}; "
            f"expected one of {list(constants.SPLITS)}"
        )
    split = images["dicom_id"].map(dict(zip(table.dicom_id, table.split, strict=True)))
    missing = split.isna()
    if missing.any():
        by_subject = table.drop_duplicates("subject_id").set_index("subject_id")["split"]
        fill = images.loc[missing, "subject_id"].map(by_subject)
        fill = fill.fillna(images.loc[missing, "subject_id"].map(hash_split))
        split.loc[missing] = fill
        for idx, row in images.loc[missing].iterrows():
            problems.append(
                _problem(
                    "no_split",
                    row.path,
                    row.subject_id,
                    row.study_id,
                    row.dicom_id,
                    f"not in the split table; assigned {split[idx]!r}",
                )
            )
    return split.astype(str)


def _build_studies(
    root: Path, images: pd.DataFrame, disk_reports: list[str], problems: list[dict]
) -> pd.DataFrame:
    study_list = read_table(root, constants.STUDY_LIST)
    split_of_study = images.drop_duplicates("study_id").set_index("study_id")["split"]
    split_of_subject = images.drop_duplicates("subject_id").set_index("subject_id")["split"]
    if study_list is not None:
        studies = study_list[["subject_id", "study_id"]].copy()
        paths = study_list["path"].str.strip()
        studies["report_path"] = paths.where(paths.str.endswith(".txt"), paths + ".txt")
    else:
        pairs = set(zip(images.subject_id, images.study_id, strict=True))
        for rel in disk_reports:
            parts = rel.split("/")
            subject = _SUBJECT_DIR.match(parts[-2]) if len(parts) >= 2 else None
            study = _STUDY_DIR.match(os.path.splitext(parts[-1])[0])
            if subject and study:
                pairs.add((int(subject.group(1)), int(study.group(1))))
        studies = pd.DataFrame(sorted(pairs), columns=["subject_id", "study_id"]).astype("int64")
        studies["report_path"] = [
            report_path(s, t) for s, t in zip(studies.subject_id, studies.study_id, strict=True)
        ]
    studies = studies.drop_duplicates("study_id").reset_index(drop=True)

    by_study, by_subject = split_of_study.to_dict(), split_of_subject.to_dict()
    studies["split"] = [
        by_study.get(t) or by_subject.get(s) or hash_split(s)
        for s, t in zip(studies.subject_id, studies.study_id, strict=True)
    ]
    studies["group"] = studies["subject_id"].map(constants.group_of)

    reports = set(disk_reports)
    with_images = set(images["study_id"])
    for row in studies.itertuples(index=False):
        if row.report_path not in reports:
            problems.append(
                _problem(
                    "missing_report",
                    row.report_path,
                    row.subject_id,
                    row.study_id,
                    "",
                    "the study's report file is absent",
                )
            )
        if row.study_id not in with_images:
            problems.append(
                _problem(
                    "study_without_images",
                    row.report_path,
                    row.subject_id,
                    row.study_id,
                    "",
                    "no image of this study is indexed",
                )
            )
    studies = studies[STUDY_COLUMNS].sort_values(["subject_id", "study_id"]).reset_index(drop=True)
    return studies.astype({"subject_id": "int64", "study_id": "int64"})


# ---------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", required=True, help="dataset root holding files/ and (optionally) the MIMIC tables"
    )
    parser.add_argument(
        "--out-dir", required=True, help="folder for images.parquet, studies.parquet and problems.parquet"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="image format to index: auto picks jpg when any .jpg exists, else dcm (default auto)",
    )
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    try:
        images, studies, problems = build_index(args.root, args.format)
    except (TableError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    missing = int((problems["kind"] == "missing_file").sum())
    if images.empty and missing:
        log.error(
            "none of the %d images the tables list exists under %s as %s files: wrong --root or --format?",
            missing,
            args.root,
            args.format,
        )
        return 2
    out = Path(args.out_dir)
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
    if images.empty:
        log.warning("no images indexed under %s", args.root)
    return 0
