"""The `index` stage: list a dataset root's images and studies.

Formats: `jpg` / `dcm` / `png` / `auto` read the MIMIC-CXR(-JPG) layout (below); `openi` reads the IU
X-ray collection (`txtrayalign.datasets.iu`); `table` reads any CSV / parquet of image-report pairs
(`txtrayalign.datasets.table`). Every format gives the same three tables (docs/design.md). Where the
report is not a text file of the dataset (Open-i XML, a text column), the index writes each study's
report as `<out-dir>/reports/<study_id>.txt` and `report_path` is that file's absolute path.

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
p<subject>/s<study> folders), `study_without_images` (a report or study-list entry without images),
`duplicate_dicom_id` (the image table lists an id twice with different paths; every row of it left
out), `conflicting_view` (the metadata gives one id two views; view left unknown), `conflicting_split`
(the split table gives one id two splits; the image left out). More than `MAX_CONFLICT_SHARE` of a
table's ids in conflict is an error naming the table.

Errors (`InputError`, one line naming the root or table): no usable image at all (`format: dcm` on a
JPG tree), too many conflicting ids, a patient in more than one split (names the patient).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from txtrayalign import constants
from txtrayalign.errors import InputError
from txtrayalign.splits import check_patient_splits
from txtrayalign.utils import atomic_path, progress, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "jpg", "dcm", "png", "openi", "table")
MIMIC_FORMATS: tuple[str, ...] = ("auto", "jpg", "dcm", "png")
LABELS_TABLE = "labels.csv.gz"  # format table: the table's own labels, MIMIC chexpert columns (label --official)
MAX_CONFLICT_SHARE = 0.01  # more conflicting ids than this share of a table (and more than 10): an error
_EXTENSIONS: dict[str, tuple[str, ...]] = {"jpg": (".jpg", ".jpeg"), "dcm": (".dcm",), "png": (".png",)}
IMAGE_COLUMNS = ["dicom_id", "subject_id", "study_id", "path", "view", "split", "group", "format"]
STUDY_COLUMNS = ["subject_id", "study_id", "report_path", "split", "group"]
PROBLEM_COLUMNS = ["kind", "path", "subject_id", "study_id", "dicom_id", "message"]
_SUBJECT_DIR = re.compile(r"^p(\d+)$")
_STUDY_DIR = re.compile(r"^s(\d+)$")


class TableError(InputError):
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


def problem(kind: str, path: str, subject_id, study_id, dicom_id: str, message: str) -> dict:
    """One row of problems.parquet."""
    return {
        "kind": kind,
        "path": path,
        "subject_id": subject_id,
        "study_id": study_id,
        "dicom_id": dicom_id,
        "message": message,
    }


def group_for(subject_id: int) -> str:
    """The shard group of a patient: MIMIC's p10 … p19 folder, else p1<last digit> (spread evenly)."""
    sid = int(subject_id)
    return constants.group_of(sid) if 10_000_000 <= sid < 20_000_000 else f"p1{sid % 10}"


@dataclass
class Indexed:
    """What a dataset layout gives the index before the shared checks (see `finish`).

    images: dicom_id, subject_id, study_id, path (relative to the root), view, split;
    studies: subject_id, study_id, split, report_path ("" where `texts` holds the report);
    problems: rows made by `problem`; texts: study_id -> report text the index writes;
    labels: the dataset's own labels in the MIMIC chexpert table's columns, or None.
    """

    images: pd.DataFrame
    studies: pd.DataFrame
    problems: list[dict] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    labels: pd.DataFrame | None = None

    @classmethod
    def from_rows(cls, image_rows: list[tuple], study_rows: list[tuple], problems: list[dict],
                  texts: dict[int, str]) -> Indexed:
        images = pd.DataFrame(image_rows, columns=["dicom_id", "subject_id", "study_id", "path", "view", "split"])
        studies = pd.DataFrame(study_rows, columns=["subject_id", "study_id", "split", "report_path"])
        return cls(images.astype({"subject_id": "int64", "study_id": "int64"}),
                   studies.astype({"subject_id": "int64", "study_id": "int64"}), problems, texts)


def conflicting_ids(table: pd.DataFrame, columns: list[str], source: str, kind: str,
                    problems: list[dict]) -> set[str]:
    """dicom_ids that `table` lists more than once with different `columns`; one problem row each.

    Repeats with the same values are harmless. More conflicts than `MAX_CONFLICT_SHARE` of the
    table's ids (and more than 10) are an error naming the table: the table is not what it claims.
    """
    repeated = table[table["dicom_id"].duplicated(keep=False)]
    if repeated.empty:
        return set()
    distinct = repeated.drop_duplicates(["dicom_id", *columns])
    counts = distinct["dicom_id"].value_counts()
    bad = set(counts.index[counts > 1])
    n_ids = table["dicom_id"].nunique()
    if len(bad) > max(10, MAX_CONFLICT_SHARE * n_ids):
        example = sorted(bad)[0]
        values = distinct.loc[distinct["dicom_id"] == example, columns].to_dict("records")
        raise TableError(f"{source}: {len(bad)} of {n_ids} dicom_ids are listed with conflicting "
                         f"{'/'.join(columns)} (e.g. {example}: {values}); more than {MAX_CONFLICT_SHARE:.0%}")
    for dicom_id, rows in distinct[distinct["dicom_id"].isin(bad)].groupby("dicom_id", sort=True):
        values = "; ".join(", ".join(f"{c}={v}" for c, v in r.items()) for r in rows[columns].to_dict("records"))
        first = rows.iloc[0]
        problems.append(problem(kind, str(first.get("path", source)), first.get("subject_id"),
                                first.get("study_id"), dicom_id, f"{source} lists it {len(rows)} ways ({values})"))
    return bad


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


def problems_frame(problems: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(problems, columns=PROBLEM_COLUMNS).astype({"subject_id": "Int64", "study_id": "Int64"})
    for col in ("kind", "path", "dicom_id", "message"):
        df[col] = df[col].fillna("").astype(str)
    return df


def _images_from_tables(root: Path, ext: str, problems: list[dict]) -> tuple[pd.DataFrame | None, str]:
    record = read_table(root, constants.RECORD_LIST)
    if record is not None:
        df = record[["dicom_id", "subject_id", "study_id", "path"]].copy()
        df["path"] = df["path"].str.strip().str.replace(r"\.[A-Za-z0-9]+$", ext, regex=True)
        return df, constants.RECORD_LIST
    for name in (constants.METADATA, constants.SPLIT_TABLE):
        table = read_table(root, name, usecols=["dicom_id", "subject_id", "study_id"])
        if table is not None:
            df = table.copy()
            df["path"] = [
                image_path(s, t, d, ext)
                for s, t, d in zip(df.subject_id, df.study_id, df.dicom_id, strict=True)
            ]
            return df, name
    return None, ""


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
        from txtrayalign.datasets import table as table_format

        return finish(table_format.build(root, **(table or {})), root, fmt, reports_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    if fmt == "openi":
        from txtrayalign.datasets import iu

        return finish(iu.build(root), root, fmt, reports_dir)
    return _build_mimic(root, fmt)


def _build_mimic(root: Path, fmt: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    disk_images, disk_reports = scan_files(root)
    log.info("scanned %s/files: %d image files, %d reports", root, len(disk_images), len(disk_reports))
    requested = fmt
    if fmt == "auto":
        fmt = detect_format(disk_images)
        log.info("format: %s", fmt)
    exts = _EXTENSIONS[fmt]
    other_formats = len(disk_images)
    disk_images = [p for p in disk_images if os.path.splitext(p)[1].lower() in exts]
    other_formats -= len(disk_images)
    problems: list[dict] = []

    images, source = _images_from_tables(root, exts[0], problems)
    if images is None:
        log.info("no image table in %s: using the %d %s files found on disk", root, len(disk_images), fmt)
        rows = []
        for rel in progress(disk_images, desc="index files", unit="file"):
            ids = ids_from_path(rel)
            if ids is None:
                problems.append(
                    problem(
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
        source = f"{root}/files"
    else:
        on_disk = set(disk_images)
        in_table = set(images["path"])
        present = images["path"].isin(on_disk).to_numpy()
        for row in images.loc[~present].drop_duplicates().itertuples(index=False):
            problems.append(
                problem(
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
                problem("not_in_table", rel, ids[0], ids[1], ids[2], f"on disk but not listed in {source}")
            )
        images = images.loc[present].reset_index(drop=True)

    bad = conflicting_ids(images, ["subject_id", "study_id", "path"], str(find_table(root, source) or source),
                          "duplicate_dicom_id", problems)
    images = images[~images["dicom_id"].isin(bad)].drop_duplicates("dicom_id").reset_index(drop=True)
    if images.empty:
        raise InputError(
            f"{root}: no usable image (format: {requested}"
            + (f", read as {fmt}" if requested != fmt else "")
            + f"): {len(problems)} listed or found file(s) unusable"
            + (f", {other_formats} image file(s) of another format on disk: wrong format?" if other_formats else "")
        )

    metadata = read_table(root, constants.METADATA, usecols=["dicom_id", "subject_id", "study_id", "ViewPosition"])
    view: dict[str, str] = {}
    if metadata is not None:
        metadata["ViewPosition"] = metadata["ViewPosition"].str.strip()
        bad = conflicting_ids(metadata, ["ViewPosition"], str(find_table(root, constants.METADATA)),
                              "conflicting_view", problems)
        view = dict(zip(metadata.dicom_id, metadata.ViewPosition, strict=True))
        view.update(dict.fromkeys(bad, ""))
    images["view"] = [view.get(d, "") for d in images["dicom_id"]]

    images["split"] = _assign_splits(root, images, problems)
    images = images[images["split"] != ""].reset_index(drop=True)
    split_source = find_table(root, constants.SPLIT_TABLE)
    check_patient_splits(images, str(split_source) if split_source else f"{root} (hash split)")
    images["group"] = images["subject_id"].map(constants.group_of)
    images["format"] = images["path"].map(
        lambda p: os.path.splitext(p)[1].lower().lstrip(".").replace("jpeg", "jpg")
    )
    images = images[IMAGE_COLUMNS].sort_values(["subject_id", "study_id", "dicom_id"]).reset_index(drop=True)

    studies = _build_studies(root, images, disk_reports, problems)
    return images, studies, problems_frame(problems)


def _assign_splits(root: Path, images: pd.DataFrame, problems: list[dict]) -> pd.Series:
    """Each image's split; "" for an image the split table gives two splits (a problem row)."""
    table = read_table(root, constants.SPLIT_TABLE, usecols=["dicom_id", "subject_id", "study_id", "split"])
    if table is None:
        log.info("no split table: hash split by patient (~80/10/10)")
        return images["subject_id"].map(hash_split)
    path = find_table(root, constants.SPLIT_TABLE)
    bad = ~table["split"].isin(constants.SPLITS)
    if bad.any():
        raise TableError(
            f"{path}: column 'split' has {table['split'][bad].iloc[0]!r}; expected one of {list(constants.SPLITS)}"
        )
    conflicting = conflicting_ids(table, ["split"], str(path), "conflicting_split", problems)
    table = table[~table["dicom_id"].isin(conflicting)]
    split = images["dicom_id"].map(dict(zip(table.dicom_id, table.split, strict=True)))
    split[images["dicom_id"].isin(conflicting)] = ""
    missing = split.isna()
    if missing.any():
        by_subject = table.drop_duplicates("subject_id").set_index("subject_id")["split"]
        fill = images.loc[missing, "subject_id"].map(by_subject)
        fill = fill.fillna(images.loc[missing, "subject_id"].map(hash_split))
        split.loc[missing] = fill
        for idx, row in images.loc[missing].iterrows():
            problems.append(
                problem(
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
                problem(
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
                problem(
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
