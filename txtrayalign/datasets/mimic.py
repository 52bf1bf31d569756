"""The MIMIC-CXR(-JPG) layout (`dataset.format`: jpg / dcm / png / auto), read by the `index` stage.

`build(root, fmt)` gives the index's (images, studies, problems) tables. Sources, in order of preference
(see `constants.TABLE_COLUMNS`):

- images: `cxr-record-list.csv.gz` (its paths end in `.dcm`; for a JPG root the extension is
  mapped), else `mimic-cxr-2.0.0-metadata.csv.gz`, else `mimic-cxr-2.0.0-split.csv.gz` (paths built
  as `files/pXX/p<subject>/s<study>/<dicom_id>.<ext>`), else a scan of the `files/` tree;
- view: `ViewPosition` of the metadata table ("" when absent or unknown);
- split: the split table; images it does not list take the split of their patient's other images,
  else the hash split (and a `no_split` problem row);
- studies: `cxr-study-list.csv.gz`, else the studies of the images plus the `s<study>.txt`
  reports found beside the study folders.

Each table may also be stored uncompressed (the same name without `.gz`). A table that exists
but lacks a column, or has non-integer ids, is an error naming the file and the column.

The hash split: `datasets.indexed.hash_split`. Problem rows and errors: `txtrayalign.index`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from txtrayalign import constants
from txtrayalign.datasets.indexed import (
    IMAGE_COLUMNS,
    STUDY_COLUMNS,
    TableError,
    conflicting_ids,
    hash_split,
    problem,
    problems_frame,
)
from txtrayalign.errors import InputError
from txtrayalign.splits import check_patient_splits
from txtrayalign.utils import progress

log = logging.getLogger(__name__)

_EXTENSIONS: dict[str, tuple[str, ...]] = {"jpg": (".jpg", ".jpeg"), "dcm": (".dcm",), "png": (".png",)}
_SUBJECT_DIR = re.compile(r"^p(\d+)$")
_STUDY_DIR = re.compile(r"^s(\d+)$")


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


def image_path(subject_id: int, study_id: int, dicom_id: str, ext: str) -> str:
    """The MIMIC path of an image, relative to the root."""
    return f"files/{constants.group_of(subject_id)}/p{subject_id}/s{study_id}/{dicom_id}{ext}"


def report_path(subject_id: int, study_id: int) -> str:
    """The MIMIC path of a study's report (beside its folder), relative to the root."""
    return f"files/{constants.group_of(subject_id)}/p{subject_id}/s{study_id}.txt"


def find_table(root: Path, name: str) -> Path | None:
    """The table `name` in `root` (gzip, or the same name without .gz), or None."""
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_mimic_table(root: Path, name: str, usecols: list[str] | None = None) -> pd.DataFrame | None:
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


def _images_from_tables(root: Path, ext: str, problems: list[dict]) -> tuple[pd.DataFrame | None, str]:
    record = read_mimic_table(root, constants.RECORD_LIST)
    if record is not None:
        df = record[["dicom_id", "subject_id", "study_id", "path"]].copy()
        df["path"] = df["path"].str.strip().str.replace(r"\.[A-Za-z0-9]+$", ext, regex=True)
        return df, constants.RECORD_LIST
    for name in (constants.METADATA, constants.SPLIT_TABLE):
        table = read_mimic_table(root, name, usecols=["dicom_id", "subject_id", "study_id"])
        if table is not None:
            df = table.copy()
            df["path"] = [
                image_path(s, t, d, ext)
                for s, t, d in zip(df.subject_id, df.study_id, df.dicom_id, strict=True)
            ]
            return df, name
    return None, ""


def build(root: Path, fmt: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
        images, source = _images_from_paths(disk_images, problems), f"{root}/files"
    else:
        images = _images_on_disk(images, disk_images, source, problems)

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

    images["view"] = _views(root, images["dicom_id"], problems)

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


def _images_from_paths(disk_images: list[str], problems: list[dict]) -> pd.DataFrame:
    """Images read from MIMIC's path layout alone (no image table); other paths are problem rows."""
    rows = []
    for rel in progress(disk_images, desc="index files", unit="file"):
        ids = ids_from_path(rel)
        if ids is None:
            problems.append(problem("unrecognised_path", rel, None, None, "",
                                    "path does not follow files/pXX/p<subject>/s<study>/<file>"))
            continue
        rows.append((ids[2], ids[0], ids[1], rel))
    images = pd.DataFrame(rows, columns=["dicom_id", "subject_id", "study_id", "path"])
    return images.astype({"subject_id": "int64", "study_id": "int64"})


def _images_on_disk(images: pd.DataFrame, disk_images: list[str], source: str, problems: list[dict]) -> pd.DataFrame:
    """The table's images whose file exists; listed-but-absent and present-but-unlisted files are problem rows."""
    on_disk = set(disk_images)
    present = images["path"].isin(on_disk).to_numpy()
    for row in images.loc[~present].drop_duplicates().itertuples(index=False):
        problems.append(problem("missing_file", row.path, row.subject_id, row.study_id, row.dicom_id,
                                f"listed in {source} but absent on disk"))
    for rel in sorted(on_disk - set(images["path"])):
        ids = ids_from_path(rel) or (None, None, os.path.splitext(os.path.basename(rel))[0])
        problems.append(problem("not_in_table", rel, ids[0], ids[1], ids[2], f"on disk but not listed in {source}"))
    return images.loc[present].reset_index(drop=True)


def _views(root: Path, dicom_id: pd.Series, problems: list[dict]) -> list[str]:
    """Each image's ViewPosition from the metadata table ("" where absent or conflicting: a problem row)."""
    metadata = read_mimic_table(root, constants.METADATA, usecols=["dicom_id", "subject_id", "study_id", "ViewPosition"])
    view: dict[str, str] = {}
    if metadata is not None:
        metadata["ViewPosition"] = metadata["ViewPosition"].str.strip()
        bad = conflicting_ids(metadata, ["ViewPosition"], str(find_table(root, constants.METADATA)),
                              "conflicting_view", problems)
        view = dict(zip(metadata.dicom_id, metadata.ViewPosition, strict=True))
        view.update(dict.fromkeys(bad, ""))
    return [view.get(d, "") for d in dicom_id]


def _assign_splits(root: Path, images: pd.DataFrame, problems: list[dict]) -> pd.Series:
    """Each image's split; "" for an image the split table gives two splits (a problem row)."""
    table = read_mimic_table(root, constants.SPLIT_TABLE, usecols=["dicom_id", "subject_id", "study_id", "split"])
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
    study_list = read_mimic_table(root, constants.STUDY_LIST)
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
