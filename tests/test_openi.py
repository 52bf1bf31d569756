"""The Open-i (IU X-ray) report reader on the real report files of ../shared."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from txtrayalign.errors import InputError
from txtrayalign.openi import OpenIError, OpenIReport, read_openi_report

REPORTS = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "reports"
SAMPLES = REPORTS / "iu_xml"
DEV = REPORTS / "iu_dev" / "xml"


def _need(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.xml"))
    if not files:
        pytest.skip(f"{folder} is absent (real Open-i reports live in ../shared)")
    return files


def test_sample_report_fields():
    _need(SAMPLES)
    r = read_openi_report(SAMPLES / "1.xml")
    assert isinstance(r, OpenIReport)
    assert r.uid == 1 and r.path.endswith("1.xml")
    assert r.sections == {
        "comparison": "None.",
        "indication": "Positive TB test",
        "findings": "The cardiac silhouette and mediastinum size are within normal limits. There is no "
                    "pulmonary edema. There is no focal consolidation. There are no XXXX of a pleural "
                    "effusion. There is no evidence of pneumothorax.",
        "impression": "Normal chest x-XXXX.",
    }
    assert r.images == ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")
    assert r.mesh_major == ("normal",) and r.mesh_automatic == ()


def _independent(path: Path) -> tuple[int, dict[str, str], list[str], list[str], list[str]]:
    """The same fields read by a different route (regex over the raw text + a plain parse)."""
    raw = path.read_text(encoding="utf-8")
    uid = int(re.search(r'<uId id="CXR(\d+)"', raw).group(1))
    root = ET.fromstring(raw.encode())
    sections = {}
    for a in root.iter("AbstractText"):
        text = re.sub(r"\s+", " ", a.text or "").strip()
        if text:
            sections[a.get("Label").lower()] = text
    images = re.findall(r'<parentImage id="([^"]+)"', raw)
    major = [" ".join(html.unescape(m).split()) for m in re.findall(r"<major>([^<]*)</major>", raw)]
    automatic = [" ".join(html.unescape(m).split()) for m in re.findall(r"<automatic>([^<]*)</automatic>", raw)]
    return uid, sections, images, major, automatic


@pytest.mark.parametrize("folder", [SAMPLES, DEV], ids=["iu_xml", "iu_dev"])
def test_every_real_report_reads_as_an_independent_parse_does(folder):
    files = _need(folder)
    with_impression = 0
    for path in files:
        r = read_openi_report(path)
        uid, sections, images, major, automatic = _independent(path)
        assert r.uid == uid == int(path.stem)
        assert r.sections == sections, path
        assert set(r.sections) <= {"comparison", "indication", "findings", "impression"}
        assert list(r.images) == images and all(i.startswith(f"CXR{uid}_") for i in images)
        assert list(r.mesh_major) == [m for m in major if m]
        assert list(r.mesh_automatic) == [m for m in automatic if m]
        with_impression += "impression" in r.sections
    if folder == DEV:
        assert len(files) == 2069
        assert all("findings" in read_openi_report(p).sections for p in files[:200])
        assert with_impression == 2069 - 6  # six files have an empty <AbstractText Label="IMPRESSION"/>


def test_bad_xml_names_the_file(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text('<eCitation><uId id="CXR7"/><AbstractText Label="FINDINGS">no close')
    with pytest.raises(OpenIError, match=r"broken\.xml: not well-formed XML") as info:
        read_openi_report(bad)
    assert isinstance(info.value, InputError)


def test_missing_uid_and_bad_uid_name_the_file(tmp_path):
    none = tmp_path / "none.xml"
    none.write_text('<eCitation><AbstractText Label="FINDINGS">Clear.</AbstractText></eCitation>')
    with pytest.raises(OpenIError, match=r"none\.xml: no <uId"):
        read_openi_report(none)
    odd = tmp_path / "odd.xml"
    odd.write_text('<eCitation><uId id="PMC12"/></eCitation>')
    with pytest.raises(OpenIError, match=r"odd\.xml: study id 'PMC12'"):
        read_openi_report(odd)


def test_binary_file_is_a_named_error(tmp_path):
    junk = tmp_path / "junk.xml"
    junk.write_bytes(b"\xff\xfe\x00<\x00x\x00" + bytes(range(256)))
    with pytest.raises(OpenIError, match=r"junk\.xml"):
        read_openi_report(junk)


def test_missing_sections_are_absent_and_text_is_normalised(tmp_path):
    p = tmp_path / "5.xml"
    p.write_text('<eCitation><uId id="CXR5"/><Abstract>'
                 '<AbstractText Label="FINDINGS">  Heart\n   normal.\t Lungs clear. </AbstractText>'
                 '<AbstractText Label="IMPRESSION"/></Abstract>'
                 '<MeSH><major> normal </major></MeSH></eCitation>')
    r = read_openi_report(p)
    assert r.sections == {"findings": "Heart normal. Lungs clear."}
    assert r.images == () and r.mesh_major == ("normal",)
