"""The synthetic dataset in the IU X-ray (Open-i) original layout (`txtrayalign synth --layout openi`).

The same studies as the MIMIC layout for a seed (labels, views, report sections, rendered images:
every visible sign is the same), written as the collection is distributed:

- `ecgen-radiology/<uid>.xml` in the Open-i schema (`<uId id="CXR<uid>"/>`, the sections as
  `<AbstractText Label="COMPARISON|INDICATION|FINDINGS|IMPRESSION">`, MeSH terms, one
  `<parentImage id="CXR<uid>_IM-<a>-<b>">` per image), PHI masked as `XXXX`;
- `NLMCXR_png/CXR<uid>_IM-<a>-<b>.png` (8-bit grey PNG, `b` = 1001, 2001, … per image);
- `indiana_projections.csv` (`uid, filename, projection`: Frontal / Lateral, as Kaggle's copy);
- `labels.csv`: `uid` and the 14 observations the study was drawn with (the generator's truth;
  not part of the real collection).

uid is the study's position + 1. A report whose labels sit in MIMIC's "last paragraph" gets them as
FINDINGS (Open-i has no untitled paragraphs). `faults=True` adds one of each bad input the index
reports (`faults.csv`: kind, path, subject_id, study_id, dicom_id): `bad_xml`,
`no_findings_or_impression`, `missing_file`, `no_report`.
"""

from __future__ import annotations

import csv
import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.synth.faults import write_faults_csv
from txtrayalign.synth.plan import StudyPlan
from txtrayalign.synth.render import render, to_uint8
from txtrayalign.synth.study import image_seed, study_content
from txtrayalign.utils import atomic_path

REPORTS_DIR = "ecgen-radiology"
IMAGES_DIR = "NLMCXR_png"
PROJECTIONS = "indiana_projections.csv"
LABELS = "labels.csv"
PROJECTION = {"PA": "Frontal", "AP": "Frontal", "LATERAL": "Lateral", "LL": "Lateral"}
_LABELS_ORDER = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


def uid_of(plan: StudyPlan) -> int:
    return plan.index + 1


def image_ids(plan: StudyPlan, n: int) -> list[str]:
    """`CXR<uid>_IM-<a>-<b>`: a 4-digit series number drawn from the uid, b = 1001, 2001, …"""
    series = (uid_of(plan) * 7919) % 10000
    return [f"CXR{uid_of(plan)}_IM-{series:04d}-{k + 1}001" for k in range(n)]


def sections_of(record) -> dict[str, str]:
    """Open-i section label -> text of a synthetic report (MIMIC's `___` PHI becomes `XXXX`)."""
    s = {k: v.replace("___", "XXXX") for k, v in record.sections.items()}
    findings = s.get("findings") or s.get("last_paragraph", "")
    return {"COMPARISON": s.get("comparison", ""), "INDICATION": s.get("indication", ""),
            "FINDINGS": findings, "IMPRESSION": s.get("impression", "")}


def report_xml(uid: int, sections: dict[str, str], images: list[str], mesh: list[str]) -> bytes:
    """One report in the Open-i schema, as the collection's files are laid out."""
    root = ET.Element("eCitation")
    ET.SubElement(root, "meta", type="rr")
    ET.SubElement(root, "uId", id=f"CXR{uid}")
    ET.SubElement(root, "pmcId", id=str(uid))
    ET.SubElement(root, "docSource").text = "CXR"
    ET.SubElement(root, "IUXRId", id=str(uid))
    ET.SubElement(root, "licenseType").text = "synthetic (TxtRayAlign)"
    ET.SubElement(root, "title").text = "Indiana University Chest X-ray Collection (synthetic twin)"
    article = ET.SubElement(ET.SubElement(root, "MedlineCitation", Owner="TxtRayAlign"), "Article",
                            PubModel="Electronic")
    ET.SubElement(article, "ArticleTitle").text = "Synthetic Chest X-ray Collection"
    abstract = ET.SubElement(article, "Abstract")
    for label in _LABELS_ORDER:
        node = ET.SubElement(abstract, "AbstractText", Label=label)
        if sections.get(label):
            node.text = sections[label]
    mesh_node = ET.SubElement(root, "MeSH")
    for term in mesh:
        ET.SubElement(mesh_node, "major").text = term
    for k, image_id in enumerate(images):
        parent = ET.SubElement(root, "parentImage", id=image_id)
        ET.SubElement(parent, "figureId").text = f"F{k + 1}"
        ET.SubElement(parent, "caption").text = "Xray Chest PA and Lateral"
        panel = ET.SubElement(parent, "panel", type="single")
        ET.SubElement(panel, "url").text = f"/hadoop/storage/radiology/extract/{image_id}.jpg"
    ET.indent(root, space="   ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img), mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def make_openi_study(plan: StudyPlan, root: Path, seed: int, image_size: int) -> dict:
    """Write one study's XML and PNGs; return its rows (projections, labels)."""
    content = study_content(plan.index, seed)
    uid = uid_of(plan)
    ids = image_ids(plan, len(content.views))
    for k, (image_id, view) in enumerate(zip(ids, content.views, strict=True)):
        img = render(content.labels.findings, view, image_size, image_seed(seed, plan.index, k))
        (root / IMAGES_DIR / f"{image_id}.png").write_bytes(_png(img))
    mesh = ["normal"] if content.labels.no_finding else [
        o for o, f in content.labels.findings.items() if f.present and f.value == 1.0]
    (root / REPORTS_DIR / f"{uid}.xml").write_bytes(report_xml(uid, sections_of(content.report), ids, mesh))
    projections = [{"uid": uid, "filename": f"{i.removeprefix('CXR')}.dcm.png", "projection": PROJECTION[v]}
                   for i, v in zip(ids, content.views, strict=True)]
    return {"uid": uid, "images": ids, "projections": projections, "labels": {"uid": uid, **content.labels.row()}}


def make_openi_studies(plans: list[StudyPlan], root: str, seed: int, image_size: int) -> list[dict]:
    """A chunk of studies (one task of the process pool)."""
    return [make_openi_study(p, Path(root), seed, image_size) for p in plans]


def prepare(out: Path) -> None:
    """The two folders of the layout (the generator has removed any earlier dataset there)."""
    for name in (REPORTS_DIR, IMAGES_DIR):
        (out / name).mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def inject_openi_faults(out: Path, results: list[dict], rng: np.random.Generator) -> list[dict]:
    """One of each bad input the index reports, in distinct studies; the rows of faults.csv."""
    multi = [r for r in results if len(r["images"]) >= 2]
    if len(results) < 4 or not multi:
        return []
    missing = multi[int(rng.integers(len(multi)))]
    others = [r for r in results if r is not missing]
    picks = rng.choice(len(others), size=2, replace=False)
    bad_xml, no_text = others[int(picks[0])], others[int(picks[1])]
    (out / REPORTS_DIR / f"{bad_xml['uid']}.xml").write_bytes(b"FINDINGS: a plain-text report saved as .xml\n")
    xml = out / REPORTS_DIR / f"{no_text['uid']}.xml"
    tree = ET.parse(xml)
    for node in tree.getroot().iter("AbstractText"):
        if node.get("Label") in ("FINDINGS", "IMPRESSION"):
            node.text = None
    tree.write(xml, encoding="utf-8", xml_declaration=True)
    gone = missing["images"][-1]
    (out / IMAGES_DIR / f"{gone}.png").unlink()
    stray_uid = max(r["uid"] for r in results) + 1
    stray = f"CXR{stray_uid}_IM-0000-1001"
    shutil.copy(out / IMAGES_DIR / f"{missing['images'][0]}.png", out / IMAGES_DIR / f"{stray}.png")

    def row(kind, path, uid, dicom_id=""):
        return {"kind": kind, "path": path, "subject_id": uid, "study_id": uid, "dicom_id": dicom_id}

    return [row("bad_xml", f"{REPORTS_DIR}/{bad_xml['uid']}.xml", bad_xml["uid"]),
            row("no_findings_or_impression", f"{REPORTS_DIR}/{no_text['uid']}.xml", no_text["uid"]),
            row("missing_file", f"{IMAGES_DIR}/{gone}.png", missing["uid"], gone),
            row("no_report", f"{IMAGES_DIR}/{stray}.png", stray_uid, stray)]


def write_openi_tables(out: Path, results: list[dict], faults: list[dict]) -> None:
    """indiana_projections.csv, labels.csv and (with faults) faults.csv, each written atomically."""
    results = sorted(results, key=lambda r: r["uid"])
    _write_csv(out / PROJECTIONS, ["uid", "filename", "projection"], [p for r in results for p in r["projections"]])
    _write_csv(out / LABELS, ["uid", *OBSERVATIONS], [r["labels"] for r in results])
    if faults:
        write_faults_csv(out, faults)
