"""The IU X-ray collection (Open-i, Indiana University) as its users download it (`format: openi`).

Two layouts, found under the dataset root:

- the original distribution: `ecgen-radiology/<n>.xml` (from `NLMCXR_reports.tgz`) and the PNGs
  `NLMCXR_png/CXR<uid>_IM-<a>-<b>.png` (from `NLMCXR_png.tgz`; PNGs directly under the root are
  found too). A report's `<parentImage id="...">` elements name its images;
- the R2Gen layout: `annotation.json` and `images/CXR<uid>_IM-<a>/{0,1}.png` (the root may also be
  the folder holding `iu_xray/`). The annotation gives each study's images, its split
  (train / val / test -> train / validate / test) and its report (the findings). When the original
  XML of a study is there too (`ecgen-radiology/<uid>.xml` under the root), its sections are used.

A study is one report; `study_id` is its uid (the number in `CXR<uid>`). IU has no patient
identifiers, so each study is its own patient (`subject_id` = `study_id`): a split by study is then
a split by patient as far as anyone can tell. Without `annotation.json` the split is the index's
hash split of the study id (`txtrayalign.datasets.indexed.hash_split`, ~80/10/10, the same on every machine).

Views (`Frontal` / `Lateral`) come from `indiana_projections.csv` (Kaggle's copy; columns `uid`,
`filename`, `projection`, file names like `1_IM-0001-4001.dcm.png`) in the root when present. The
image ids themselves do not say the view (the `-1001` / `-2001` suffix is an image number, not a
projection), so without that table the view is "" (unknown), as for MIMIC without metadata.

Report text: the XML's labelled sections are written, in the MIMIC header form the sections stage
reads ("COMPARISON: …", "INDICATION: …", "FINDINGS: …", "IMPRESSION: …", one per paragraph).

Problem rows (`kind`): `bad_xml` (not XML, or no `CXR<uid>` id), `no_findings_or_impression` (the
study is left out), `duplicate_study` (a uid given twice; the first file kept), `missing_file` (an
image a report names, absent on disk), `no_report` (an image file no report names),
`study_without_images`, `conflicting_view` (the projections table gives one image two views).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pandas as pd

from txtrayalign.datasets.indexed import Indexed, hash_split, problem
from txtrayalign.errors import InputError
from txtrayalign.utils import progress

log = logging.getLogger(__name__)

REPORTS_DIR = "ecgen-radiology"
IMAGES_DIR = "NLMCXR_png"
ANNOTATION = "annotation.json"
PROJECTIONS = "indiana_projections.csv"
SECTION_ORDER = ("comparison", "indication", "findings", "impression")
_R2GEN_SPLITS = {"train": "train", "val": "validate", "validate": "validate", "test": "test"}
_UID = re.compile(r"^CXR(\d+)(?:_|$)")


def report_text(sections: dict[str, str]) -> str:
    """A report's sections in the MIMIC header form the sections stage parses."""
    parts = [f"{name.upper()}: {sections[name]}" for name in SECTION_ORDER if sections.get(name)]
    return "\n\n".join(parts) + "\n"


def uid_of(image_id: str) -> int | None:
    """The study uid in an IU image or study id (`CXR3_IM-1384-1001` -> 3)."""
    m = _UID.match(image_id)
    return int(m.group(1)) if m else None


def find_layout(root: Path) -> tuple[str, Path]:
    """(`r2gen`, folder of annotation.json) or (`original`, root); an error naming what is missing."""
    for base in (root, root / "iu_xray"):
        if (base / ANNOTATION).is_file():
            return "r2gen", base
    if (root / REPORTS_DIR).is_dir():
        return "original", root
    raise InputError(
        f"{root}: not an IU X-ray (Open-i) root (format: openi): expected {REPORTS_DIR}/ with the XML "
        f"reports (and {IMAGES_DIR}/ with the PNGs), or the R2Gen layout's {ANNOTATION} and images/"
    )


def read_projections(root: Path, problems: list[dict]) -> dict[str, str]:
    """image id -> `Frontal` / `Lateral` from indiana_projections.csv; {} when the table is absent."""
    path = root / PROJECTIONS
    if not path.is_file():
        log.info("no %s in %s: views are unknown (\"\"); the image ids do not say the view", PROJECTIONS, root)
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("filename", "projection") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    ids = "CXR" + table["filename"].str.strip().str.replace(r"(\.dcm)?\.png$", "", regex=True)
    views: dict[str, str] = {}
    for image_id, view in zip(ids, table["projection"].str.strip(), strict=True):
        if image_id in views and views[image_id] != view:
            problems.append(problem("conflicting_view", str(path), uid_of(image_id), uid_of(image_id), image_id,
                                    f"{PROJECTIONS} gives both {views[image_id]!r} and {view!r}; view left unknown"))
            views[image_id] = ""
        elif image_id not in views:
            views[image_id] = view
    return views


def _scan_pngs(folder: Path, root: Path, recursive: bool) -> dict[str, str]:
    """image id (file stem, or `<folder>_<stem>` in R2Gen) -> path relative to root, of every .png."""
    found: dict[str, str] = {}
    if not folder.is_dir():
        return found
    stack = [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as it:
            for entry in it:
                if entry.is_dir() and recursive:
                    stack.append(Path(entry.path))
                elif entry.name.lower().endswith(".png"):
                    found[os.path.relpath(entry.path, root)] = entry.name
    return found


def _read_xml_reports(root: Path, problems: list[dict]) -> dict[int, object]:
    """uid -> OpenIReport of every readable XML under root/ecgen-radiology (bad ones are problems)."""
    from txtrayalign.openi import OpenIError, read_openi_report

    folder = root / REPORTS_DIR
    if not folder.is_dir():
        return {}
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".xml"),
                   key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name))
    reports: dict[int, object] = {}
    for path in progress(files, desc="read XML", unit="report"):
        rel = os.path.relpath(path, root)
        try:
            report = read_openi_report(path)
        except (OpenIError, UnicodeError, OSError) as exc:
            problems.append(problem("bad_xml", rel, None, None, "", str(exc)))
            continue
        if report.uid in reports:
            problems.append(problem("duplicate_study", rel, report.uid, report.uid, "",
                                    f"uid {report.uid} already read from {reports[report.uid].path}; first kept"))
            continue
        reports[report.uid] = report
    log.info("read %d XML reports from %s", len(reports), folder)
    return reports


def _has_text(sections: dict[str, str]) -> bool:
    return bool(sections.get("findings") or sections.get("impression"))


def build(root: Path) -> Indexed:
    """Index an Open-i root (either layout): images, studies, problems and the report texts."""
    layout, base = find_layout(root)
    log.info("IU X-ray (Open-i) root %s: %s layout", root, layout)
    problems: list[dict] = []
    views = read_projections(root, problems)
    xml_reports = _read_xml_reports(root, problems)
    if layout == "original":
        return _build_original(root, xml_reports, views, problems)
    return _build_r2gen(root, base, xml_reports, views, problems)


def _build_original(root: Path, reports: dict, views: dict[str, str], problems: list[dict]) -> Indexed:
    folder = root / IMAGES_DIR if (root / IMAGES_DIR).is_dir() else root
    by_id = {Path(name).stem: rel for rel, name in _scan_pngs(folder, root, recursive=False).items()}
    log.info("%d PNG files in %s", len(by_id), folder)
    image_rows, study_rows, texts = [], [], {}
    named: set[str] = set()
    for uid, report in reports.items():
        rel_xml = os.path.relpath(report.path, root)
        named.update(report.images)
        if not _has_text(report.sections):
            problems.append(problem("no_findings_or_impression", rel_xml, uid, uid, "",
                                    "the report has neither FINDINGS nor IMPRESSION text; study left out"))
            continue
        split = hash_split(uid)
        present = 0
        for image_id in report.images:
            rel = by_id.get(image_id)
            if rel is None:
                problems.append(problem("missing_file", f"{os.path.relpath(folder, root)}/{image_id}.png", uid, uid,
                                        image_id, f"named by {rel_xml} but absent on disk"))
                continue
            image_rows.append((image_id, uid, uid, rel, views.get(image_id, ""), split))
            present += 1
        if not present:
            problems.append(problem("study_without_images", rel_xml, uid, uid, "",
                                    "no image of this report is on disk" if report.images
                                    else "the report names no image"))
        study_rows.append((uid, uid, split, ""))
        texts[uid] = report_text(report.sections)
    for image_id in sorted(set(by_id) - named):
        uid = uid_of(image_id)
        why = "no XML report names this image" if uid not in reports else f"report {uid} does not name it"
        problems.append(problem("no_report", by_id[image_id], uid, uid, image_id, why))
    return Indexed.from_rows(image_rows, study_rows, problems, texts)


def _read_annotation(path: Path) -> list[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON annotation file ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(f"{path}: expected {{\"train\"|\"val\"|\"test\": [entries]}}")
    unknown = sorted(set(data) - set(_R2GEN_SPLITS))
    if unknown:
        raise InputError(f"{path}: unknown split key(s) {unknown}; expected train, val, test")
    return [(key, entry) for key, entries in data.items() for entry in entries]


def _build_r2gen(root: Path, base: Path, xml_reports: dict, views: dict[str, str], problems: list[dict]) -> Indexed:
    annotation = base / ANNOTATION
    rel_annotation = os.path.relpath(annotation, root)
    images_dir = base / "images"
    on_disk = _scan_pngs(images_dir, root, recursive=True)
    log.info("%d PNG files under %s", len(on_disk), images_dir)
    image_rows, study_rows, texts = [], [], {}
    listed: set[str] = set()
    seen: dict[int, str] = {}
    for key, entry in progress(_read_annotation(annotation), desc="annotation", unit="study"):
        study = str(entry.get("id", ""))
        uid = uid_of(study)
        if uid is None:
            problems.append(problem("bad_entry", rel_annotation, None, None, study,
                                    f"entry id {study!r} is not CXR<uid>_IM-…"))
            continue
        if uid in seen:
            problems.append(problem("duplicate_study", rel_annotation, uid, uid, study,
                                    f"uid {uid} already given by entry {seen[uid]!r}; first kept"))
            continue
        seen[uid] = study
        split = _R2GEN_SPLITS.get(str(entry.get("split", key)), None)
        if split is None:
            problems.append(problem("bad_entry", rel_annotation, uid, uid, study,
                                    f"split {entry.get('split')!r} is not train, val or test; study left out"))
            continue
        xml = xml_reports.get(uid)
        sections = dict(xml.sections) if xml is not None else {"findings": " ".join(str(entry.get("report", "")).split())}
        if not _has_text(sections):
            problems.append(problem("no_findings_or_impression", rel_annotation, uid, uid, study,
                                    "the study has no report text; study left out"))
            continue
        present = 0
        for image in entry.get("image_path", []):
            rel = os.path.relpath(images_dir / str(image), root)
            listed.add(rel)
            dicom_id = f"{study}_{Path(str(image)).stem}"
            if rel not in on_disk:
                problems.append(problem("missing_file", rel, uid, uid, dicom_id,
                                        f"listed in {rel_annotation} but absent on disk"))
                continue
            image_rows.append((dicom_id, uid, uid, rel, views.get(dicom_id, ""), split))
            present += 1
        if not present:
            problems.append(problem("study_without_images", rel_annotation, uid, uid, study,
                                    "no image of this study is on disk"))
        study_rows.append((uid, uid, split, ""))
        texts[uid] = report_text(sections)
    for rel in sorted(set(on_disk) - listed):
        folder = Path(rel).parent.name
        uid = uid_of(folder)
        problems.append(problem("no_report", rel, uid, uid, f"{folder}_{Path(rel).stem}",
                                f"on disk but not listed in {rel_annotation}"))
    return Indexed.from_rows(image_rows, study_rows, problems, texts)
