"""The synthetic dataset generator: layout, tables, reports, labels, images, DICOM, faults."""

from __future__ import annotations

import csv
import gzip
import importlib
import math
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from txtrayalign import constants as C
from txtrayalign.synth import generate
from txtrayalign.synth.dicom import CR_STORAGE, DX_STORAGE, decode
from txtrayalign.synth.faults import read_faults_csv
from txtrayalign.synth.labels import PREVALENCE, Finding, draw_labels
from txtrayalign.synth.phrases import KEYWORDS, NEGATION_CUES, UNCERTAINTY_CUES
from txtrayalign.synth.plan import plan_dataset
from txtrayalign.synth.render import render
from txtrayalign.synth.reports import HEADER, WIDTH, observations_stated
from txtrayalign.synth.study import study_content

# The conftest fixture: generate(out, studies=60, seed=7, fmt="both", image_size=128, faults=True).
N, SEED, SIZE = 60, 7, 128


def read_table(root: Path, name: str) -> list[dict]:
    with gzip.open(root / name, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def header(root: Path, name: str) -> list[str]:
    with gzip.open(root / name, "rt", newline="") as fh:
        return next(csv.reader(fh))


@pytest.fixture(scope="module")
def faults(synth_root) -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for row in read_faults_csv(synth_root):
        by_kind.setdefault(row["kind"], []).append(row)
    return by_kind


@pytest.fixture(scope="module")
def broken_paths(synth_root) -> set[str]:
    return {row["path"] for row in read_faults_csv(synth_root)}


def test_tables_have_exact_headers(synth_root):
    for name in (C.RECORD_LIST, C.STUDY_LIST, C.METADATA, C.SPLIT_TABLE, C.CHEXPERT_TABLE):
        assert header(synth_root, name) == C.TABLE_COLUMNS[name], name


def test_identifiers_and_layout(synth_root, broken_paths):
    records = read_table(synth_root, C.RECORD_LIST)
    studies = read_table(synth_root, C.STUDY_LIST)
    assert len(studies) == N
    assert len({r["study_id"] for r in records}) == N
    for r in records:
        assert re.fullmatch(C.SUBJECT_ID_PATTERN, r["subject_id"])
        assert re.fullmatch(C.STUDY_ID_PATTERN, r["study_id"])
        assert re.fullmatch(C.DICOM_ID_PATTERN, r["dicom_id"])
        group = C.group_of(r["subject_id"])
        assert group in C.GROUPS
        assert r["path"] == f"files/{group}/p{r['subject_id']}/s{r['study_id']}/{r['dicom_id']}.dcm"
        assert (synth_root / r["path"]).is_file()
        assert (synth_root / r["path"]).with_suffix(".jpg").is_file()  # --format both writes both
    for s in studies:
        assert s["path"] == f"files/{C.group_of(s['subject_id'])}/p{s['subject_id']}/s{s['study_id']}.txt"
        assert (synth_root / s["path"]).is_file() or s["path"] in broken_paths
    per_study = {}
    for r in records:
        per_study.setdefault(r["study_id"], []).append(r)
    assert all(1 <= len(v) <= 3 for v in per_study.values())
    per_patient = {}
    for s in studies:
        per_patient.setdefault(s["subject_id"], set()).add(s["study_id"])
    assert all(1 <= len(v) <= 5 for v in per_patient.values())
    assert len({C.group_of(s) for s in per_patient}) >= 5  # spread over p10..p19
    assert not list(synth_root.rglob(".*.tmp"))


def test_metadata_values(synth_root):
    meta = read_table(synth_root, C.METADATA)
    views = {m["ViewPosition"] for m in meta}
    assert {"PA", "AP", "LATERAL"} <= views
    for m in meta:
        assert re.fullmatch(r"2[1-2]\d{6}", m["StudyDate"])
        assert int(m["Rows"]) == int(m["Columns"]) == SIZE
        t = float(m["StudyTime"])
        assert 0 <= t < 240000 and not m["StudyTime"].startswith("0")
        hh, mm = int(t // 10000), int(t // 100) % 100
        assert hh < 24 and mm < 60
    assert any(float(m["StudyTime"]) < 100000 for m in meta) or len(meta) < 20


def test_splits_are_by_patient(synth_root):
    rows = read_table(synth_root, C.SPLIT_TABLE)
    by_patient: dict[str, set[str]] = {}
    for r in rows:
        by_patient.setdefault(r["subject_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_patient.values())
    counts = {s: sum(1 for v in by_patient.values() if s in v) for s in C.SPLITS}
    assert counts["validate"] >= 3 and counts["test"] >= 3
    assert counts["train"] > counts["validate"] + counts["test"]


def test_report_format_is_mimic(synth_root, broken_paths):
    example = (Path(__file__).resolve().parents[2] / "shared/testdata/reports/mimic_example_report.txt")
    if example.is_file():
        assert example.read_text().splitlines()[0] == HEADER
    n = 0
    for s in read_table(synth_root, C.STUDY_LIST):
        if s["path"] in broken_paths:
            continue
        text = (synth_root / s["path"]).read_text(encoding="utf-8")
        lines = text.split("\n")
        assert lines[0] == " " * 33 + "FINAL REPORT"
        assert text.endswith("\n") and lines[-1] == ""
        for line in lines[1:-1]:
            assert line.startswith(" "), repr(line)
            assert len(line) <= WIDTH, repr(line)
            assert line.strip() or line == " "
        assert "\n  \n" not in text and "\n\n" not in text
        n += 1
    assert n >= N - 6


def _label_section(text: str) -> tuple[str, str]:
    """Impression, else findings, else the last paragraph (as the official labels were computed)."""
    body = text.split("\n")[1:]
    if any(set(line.strip()) == {"_"} for line in body):
        body = body[[i for i, line in enumerate(body) if set(line.strip()) == {"_"}][-1] + 1:]
    joined = "\n".join(line[1:] for line in body)
    for name in ("IMPRESSION:", "FINDINGS:"):
        if name in joined:
            part = joined.split(name, 1)[1]
            part = re.split(r"\n[A-Z ]+:", part)[0]
            return name[:-1].lower(), " ".join(part.split())
    paragraphs = [p for p in re.split(r"\n\s*\n", joined) if p.strip()]
    return "last_paragraph", " ".join(paragraphs[-1].split())


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=\.)\s+", text) if s.strip()]


def test_labels_agree_with_reports(synth_root, broken_paths):
    chexpert = {r["study_id"]: r for r in read_table(synth_root, C.CHEXPERT_TABLE)}
    sections = set()
    for plan in plan_dataset(N, SEED):
        row = chexpert[str(plan.study_id)]
        table = {o: (float(row[o]) if row[o] else math.nan) for o in C.OBSERVATIONS}
        content = study_content(plan.index, SEED)
        # The structured record of what was written says exactly what the table says.
        stated = observations_stated(content.report)
        assert {o: v for o, v in table.items() if not math.isnan(v)} == stated
        # CheXpert's consistency: No Finding only when nothing but support devices is positive/uncertain.
        others = [table[o] for o in C.OBSERVATIONS if o not in ("No Finding", "Support Devices")]
        assert (table["No Finding"] == 1.0) == (not any(v in (1.0, -1.0) for v in others))
        if plan.report_path in broken_paths:
            continue
        text = (synth_root / plan.report_path).read_text(encoding="utf-8")
        assert text == content.report.text
        section, label_text = _label_section(text)
        assert section == content.report.label_section
        sections.add(section)
        low = label_text.lower()
        # Keyword checks: mentioned iff valued, with the right polarity cue in its sentence.
        for obs, value in table.items():
            hits = [s.lower() for s in _sentences(label_text) if any(k in s.lower() for k in KEYWORDS[obs])]
            if math.isnan(value):
                assert not any(k in low for k in KEYWORDS[obs]), (obs, label_text)
                continue
            assert hits, (obs, value, label_text)
            for s in hits:
                negated = re.search(NEGATION_CUES, s) is not None
                uncertain = re.search(UNCERTAINTY_CUES, s) is not None
                if obs == "No Finding":
                    continue
                if value == 0.0:
                    assert negated and not uncertain, (obs, s)
                elif value == -1.0:
                    assert uncertain and not negated, (obs, s)
                else:
                    assert not negated and not uncertain, (obs, s)
    assert "impression" in sections


def test_label_prevalence_is_mimic_like():
    rows = [draw_labels(np.random.default_rng([3, i])).row() for i in range(3000)]
    for obs, share in PREVALENCE.items():
        present = np.mean([r[obs] in (1.0, -1.0) for r in rows])
        assert abs(present - share) < max(0.35 * share, 0.012), (obs, present, share)
    card = np.array([r["Cardiomegaly"] in (1.0, -1.0) for r in rows])
    edema = np.array([r["Edema"] in (1.0, -1.0) for r in rows])
    assert edema[card].mean() > 2 * edema[~card].mean()  # co-occurrence, not independence
    assert all(r["No Finding"] in (1.0,) or math.isnan(r["No Finding"]) for r in rows)


def test_deterministic_and_independent_of_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, studies=12, seed=3, fmt="both", image_size=64, faults=True)
    generate(b, studies=12, seed=3, fmt="both", image_size=64, faults=True)
    generate(c, studies=12, seed=3, fmt="both", image_size=64, faults=True, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) > 30
    for other in (b, c):
        assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
        for f in files:
            assert (a / f).read_bytes() == (other / f).read_bytes(), f
    d = tmp_path / "d"
    generate(d, studies=12, seed=4, fmt="jpg", image_size=64)
    assert (a / C.CHEXPERT_TABLE).read_bytes() != (d / C.CHEXPERT_TABLE).read_bytes()


def test_rerun_replaces_own_dataset_but_not_foreign_data(tmp_path):
    generate(tmp_path, studies=3, seed=1, image_size=32)
    old = {p.name for p in (tmp_path / "files").rglob("*.jpg")}
    generate(tmp_path, studies=4, seed=2, image_size=32)  # our own earlier dataset: replaced whole
    assert len(read_table(tmp_path, C.STUDY_LIST)) == 4
    assert not old & {p.name for p in (tmp_path / "files").rglob("*.jpg")}
    foreign = tmp_path / "real"
    (foreign / "files" / "p10").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(foreign, studies=3, seed=2, image_size=32)
    assert (foreign / "files" / "p10").is_dir()
    generate(foreign, studies=3, seed=2, image_size=32, overwrite=True)
    assert len(read_table(foreign, C.STUDY_LIST)) == 3
    tables_only = tmp_path / "tables-only"
    tables_only.mkdir()
    (tables_only / C.CHEXPERT_TABLE).write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match=C.CHEXPERT_TABLE):
        generate(tables_only, studies=3, seed=2, image_size=32)
    assert (tables_only / C.CHEXPERT_TABLE).read_bytes() == b"not ours"


def test_killed_run_leaves_no_tables(tmp_path, monkeypatch):
    gen = importlib.import_module("txtrayalign.synth.generate")

    def boom(chunk, opts):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "make_studies", boom)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, studies=5, seed=1, image_size=32)
    assert not list(tmp_path.glob("*.csv.gz"))


# ---- images: every present finding has its own visible sign --------------------------------------

def _box(img: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    h, w = img.shape
    return img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]


# observation -> (finding details, region where the sign lies as (x0, x1, y0, y1), sign of the change)
SIGNS: dict[str, tuple[dict, tuple[float, float, float, float], int]] = {
    "Cardiomegaly": ({"severity": "moderate"}, (0.25, 0.85, 0.45, 0.75), 1),
    "Enlarged Cardiomediastinum": ({"severity": "moderate"}, (0.35, 0.65, 0.12, 0.45), 1),
    "Pleural Effusion": ({"side": "right", "severity": "moderate"}, (0.05, 0.48, 0.45, 0.82), 1),
    "Pneumothorax": ({"side": "right", "severity": "moderate"}, (0.05, 0.48, 0.08, 0.55), -1),
    "Lung Lesion": ({"side": "right", "zone": "upper", "size_cm": 2.0, "severity": "nodule"},
                    (0.05, 0.48, 0.12, 0.45), 1),
    "Lung Opacity": ({"side": "right", "zone": "lower", "severity": "moderate"}, (0.05, 0.48, 0.35, 0.8), 1),
    "Pneumonia": ({"side": "left", "zone": "lower", "severity": "moderate"}, (0.52, 0.95, 0.35, 0.8), 1),
    "Consolidation": ({"side": "left", "zone": "lower"}, (0.52, 0.95, 0.35, 0.8), 1),
    "Edema": ({"side": "bilateral", "severity": "moderate"}, (0.15, 0.85, 0.25, 0.7), 1),
    "Atelectasis": ({"side": "left", "severity": "plate-like"}, (0.52, 0.95, 0.45, 0.8), 1),
    "Pleural Other": ({"side": "right", "zone": "apical"}, (0.03, 0.48, 0.05, 0.4), 1),
    "Fracture": ({"side": "right", "rib": 6, "zone": "lateral"}, (0.03, 0.48, 0.1, 0.8), 0),
    "Support Devices": ({"side": "right", "devices": ("endotracheal tube",)}, (0.4, 0.6, 0.0, 0.35), 1),
}


THIN_SIGNS = ("Lung Lesion", "Support Devices", "Atelectasis", "Pleural Other")


@pytest.mark.parametrize("obs", list(SIGNS))
def test_every_finding_has_a_visible_sign(obs):
    details, (x0, x1, y0, y1), direction = SIGNS[obs]
    effects = []
    for seed in ([11, 1, 0], [12, 5, 0], [13, 9, 1]):
        base = render({}, "PA", SIZE, seed)
        per_value = []
        for value in (1.0, -1.0):
            img = render({obs: Finding(obs, value, **details)}, "PA", SIZE, seed)
            diff = img - base
            inside = _box(diff, x0, x1, y0, y1)
            mask = np.ones_like(diff, bool)
            mask[int(y0 * SIZE):int(y1 * SIZE), int(x0 * SIZE):int(x1 * SIZE)] = False
            outside = np.abs(diff[mask]).mean()
            if direction == 0:  # a break in a rib: a local change of either sign
                effect = np.abs(inside).max()
            elif obs in THIN_SIGNS:  # small or thin: the strongest 2% of the region
                effect = np.sort((direction * inside).ravel())[-max(1, inside.size // 50):].mean()
            else:
                effect = direction * inside.mean()
            assert effect > 4 * outside + 1e-3, (obs, value, effect, outside)
            per_value.append(effect)
        assert per_value[0] > per_value[1] > 0, (obs, per_value)  # uncertain findings are fainter
        effects.append(per_value[0])
    assert min(effects) > 0.004, (obs, effects)


@pytest.mark.parametrize("obs", ["Cardiomegaly", "Pleural Effusion", "Lung Opacity", "Consolidation", "Lung Lesion",
                                 "Edema", "Atelectasis", "Support Devices"])
def test_lateral_views_show_the_main_findings(obs):
    details = SIGNS[obs][0]
    seed = [31, 2, 1]
    diff = render({obs: Finding(obs, 1.0, **details)}, "LATERAL", SIZE, seed) - render({}, "LATERAL", SIZE, seed)
    assert np.sort(diff.ravel())[-SIZE * SIZE // 100:].mean() > 0.05, obs


def test_negated_findings_are_not_drawn():
    seed = [21, 0, 0]
    base = render({}, "PA", SIZE, seed)
    negated = {o: Finding(o, 0.0, **d) for o, (d, _, _) in SIGNS.items()}
    assert np.array_equal(render(negated, "PA", SIZE, seed), base)


def test_views_differ_and_look_like_chest_films():
    seed = [5, 5, 0]
    pa, lat = render({}, "PA", SIZE, seed), render({}, "LATERAL", SIZE, seed)
    assert np.abs(pa - lat).mean() > 0.05
    lungs = _box(pa, 0.15, 0.35, 0.3, 0.5).mean()
    spine = _box(pa, 0.47, 0.53, 0.2, 0.5).mean()
    heart = _box(pa, 0.45, 0.6, 0.55, 0.65).mean()
    outside = _box(pa, 0.0, 0.04, 0.0, 0.1).mean()
    assert lungs < spine and lungs < heart and outside < lungs
    # exposure and position vary between studies
    other = render({}, "PA", SIZE, [6, 5, 0])
    assert np.abs(pa - other).mean() > 0.01


def test_images_decode_and_match_views(synth_root, broken_paths):
    meta = {m["dicom_id"]: m for m in read_table(synth_root, C.METADATA)}
    seen_photometric, seen_syntax, seen_class, seen_bits, windows = set(), set(), set(), set(), 0
    for r in read_table(synth_root, C.RECORD_LIST):
        dcm = synth_root / r["path"]
        jpg = dcm.with_suffix(".jpg")
        if r["path"] in broken_paths or str(jpg.relative_to(synth_root)) in broken_paths:
            continue
        ds = pydicom.dcmread(dcm)
        assert ds.PatientID == r["subject_id"] and ds.StudyID == r["study_id"]
        assert ds.ViewPosition == meta[r["dicom_id"]]["ViewPosition"]
        assert ds.StudyDate == meta[r["dicom_id"]]["StudyDate"]
        assert (ds.Rows, ds.Columns) == (SIZE, SIZE) and ds.BitsAllocated == 16
        assert 12 <= ds.BitsStored <= 16 and ds.HighBit == ds.BitsStored - 1
        assert ds.SOPClassUID in (CR_STORAGE, DX_STORAGE) and ds.Modality in ("CR", "DX")
        assert float(ds.RescaleSlope) > 0 and "RescaleIntercept" in ds
        seen_photometric.add(ds.PhotometricInterpretation)
        seen_syntax.add(ds.file_meta.TransferSyntaxUID)
        seen_class.add(ds.SOPClassUID)
        seen_bits.add(int(ds.BitsStored))
        windows += "WindowCenter" in ds
        assert int(ds.pixel_array.max()) < (1 << ds.BitsStored)
        from_dicom = decode(dcm)
        from_jpg = np.asarray(Image.open(jpg).convert("L"), dtype=np.float32) / 255
        assert np.abs(from_dicom - from_jpg).mean() < 0.02
    assert seen_photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert seen_syntax == {pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.RLELossless}
    assert len(seen_class) == 2 and len(seen_bits) >= 2 and windows > 0


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_faults_are_broken_as_listed(synth_root, faults):
    tables = {r["study_id"] for r in read_table(synth_root, C.STUDY_LIST)}
    records = {r["dicom_id"] for r in read_table(synth_root, C.RECORD_LIST)}
    assert set(faults) == {"truncated_jpg", "truncated_dicom", "zero_byte_image", "dicom_no_pixels",
                           "empty_report", "non_utf8_report", "missing_report"}
    for kind, rows in faults.items():
        assert len(rows) == 2, kind
        for row in rows:
            path = synth_root / row["path"]
            assert row["study_id"] in tables  # still listed like a real entry
            if row["dicom_id"]:
                assert row["dicom_id"] in records
            if kind == "truncated_jpg":
                with pytest.raises(OSError):
                    Image.open(path).load()
            elif kind == "truncated_dicom":
                with pytest.raises(Exception):  # noqa: B017 - pydicom raises various errors on truncation
                    _ = pydicom.dcmread(path).pixel_array
            elif kind in ("zero_byte_image", "empty_report"):
                assert path.stat().st_size == 0
            elif kind == "dicom_no_pixels":
                ds = pydicom.dcmread(path)
                assert "PixelData" not in ds and ds.Rows == SIZE
            elif kind == "non_utf8_report":
                data = path.read_bytes()
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
                assert data.decode("latin-1").startswith(" " * 33 + "FINAL REPORT")
            elif kind == "missing_report":
                assert not path.exists()
                assert list(path.with_suffix("").glob(f"{row['dicom_id']}.*"))


def test_cli_prints_rate(tmp_path, capsys):
    from txtrayalign.cli import main

    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), "--studies", "4", "--seed", "2", "--image-size", "48",
                 "--format", "dicom"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\d+(\.\d+)? studies/s", printed)
    assert all(r["path"].endswith(".dcm") for r in read_table(out, C.RECORD_LIST))
    assert not list(out.rglob("*.jpg"))
    (tmp_path / "real" / "files" / "p11").mkdir(parents=True)
    assert main(["synth", "--out", str(tmp_path / "real"), "--studies", "4", "--seed", "2"]) == 2  # not ours
    assert main(["synth", "--out", str(tmp_path / "x"), "--studies", "0", "--seed", "2"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--studies", "2", "--seed", "-1"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--studies", "2", "--seed", "1", "--workers", "0"]) == 2
    assert not (tmp_path / "x" / C.RECORD_LIST).exists()


def test_jpg_only_dataset_points_at_jpgs(tmp_path):
    summary = generate(tmp_path, studies=5, seed=9, image_size=40, faults=True)
    assert summary["studies"] == 5 and summary["studies_per_second"] > 0
    assert all(r["path"].endswith(".jpg") for r in read_table(tmp_path, C.RECORD_LIST))
    kinds = {r["kind"] for r in read_faults_csv(tmp_path)}
    assert not kinds & {"truncated_dicom", "dicom_no_pixels"}
    with open(tmp_path / "faults.csv", encoding="utf-8") as fh:
        assert fh.readline().strip() == "kind,path,subject_id,study_id,dicom_id"


def test_project_pipeline_reads_the_same_labels(synth_root, broken_paths):
    """The project's own section parser and CheXpert labeller recover the table from the reports."""
    sections = pytest.importorskip("txtrayalign.text.sections")
    chexpert = pytest.importorskip("txtrayalign.chexpert")
    table = {r["study_id"]: r for r in read_table(synth_root, C.CHEXPERT_TABLE)}
    studies = [s for s in read_table(synth_root, C.STUDY_LIST) if s["path"] not in broken_paths]
    texts = [sections.extract_sections((synth_root / s["path"]).read_text(encoding="utf-8")).label_text
             for s in studies]
    predicted = chexpert.label_reports(texts)
    disagree = []
    for s, row in zip(studies, predicted, strict=True):
        for j, obs in enumerate(C.OBSERVATIONS):
            want = float(table[s["study_id"]][obs]) if table[s["study_id"]][obs] else math.nan
            if not (want == row[j] or (math.isnan(want) and math.isnan(row[j]))):
                disagree.append((s["study_id"], obs, want, row[j]))
    assert len(disagree) <= 0.01 * len(studies) * len(C.OBSERVATIONS), disagree
