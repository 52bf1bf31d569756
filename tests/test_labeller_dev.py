"""Real-text quality of the labeller on the IU X-ray development set (../shared), and `labels-compare`.

Floors sit just under what the labeller reaches today (see BENCHMARKS.md), so a change that degrades
real-text labelling of any observation fails here. Quality only: nothing is timed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from txtrayalign.chexpert import compare, label_unique
from txtrayalign.chexpert.files import read_reports_csv
from txtrayalign.cli import main
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.openi import read_openi_report

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "reports" / "iu_dev"

# Human gold (NegBio, report = findings + impression), positive = 1: F1 per observation.
GOLD_F1_FLOOR = {
    "Atelectasis": 0.775, "Cardiomegaly": 0.935, "Pleural Effusion": 0.895, "Pneumonia": 0.85,
    "Pneumothorax": 0.815, "Consolidation": 0.915, "Edema": 0.835, "Lung Lesion": 0.74, "No Finding": 0.92,
}
GOLD_MICRO_FLOOR, GOLD_MACRO8_FLOOR = 0.89, 0.847
# CheXbert (findings only), 1 / 0 / -1 / blank: share of agreeing cells per observation.
CHEXBERT_AGREEMENT_FLOOR = {
    "No Finding": 0.937, "Enlarged Cardiomediastinum": 0.941, "Cardiomegaly": 0.905, "Lung Lesion": 0.986,
    "Lung Opacity": 0.899, "Edema": 0.984, "Consolidation": 0.967, "Pneumonia": 0.992, "Atelectasis": 0.993,
    "Pneumothorax": 0.995, "Pleural Effusion": 0.994, "Pleural Other": 0.992, "Fracture": 0.954,
    "Support Devices": 0.971,
}
CHEXBERT_CELLS_FLOOR, CHEXBERT_MACRO_F1_FLOOR = 0.966, 0.838


def _need_dev() -> None:
    if not (DEV / "xml").is_dir() or not (DEV / "negbio_gold.csv").is_file():
        pytest.skip(f"{DEV} is absent (the IU development set lives in ../shared)")


@lru_cache(maxsize=2)
def _labelled(reference: str, parts: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(our labels, reference table) of the dev reports, texts built as ../shared/tools/iu_dev_score.py does."""
    table = pd.read_csv(DEV / reference).sort_values("uid").reset_index(drop=True)
    texts = []
    for uid in table["uid"]:
        sections = read_openi_report(DEV / "xml" / f"{uid}.xml").sections
        texts.append(" ".join(sections[p] for p in parts if p in sections))
    return pd.DataFrame(label_unique(texts), columns=OBSERVATIONS), table


def test_dev_set_against_the_human_gold():
    _need_dev()
    ours, gold = _labelled("negbio_gold.csv", ("findings", "impression"))
    observations = list(compare.NEGBIO_MAPPING)
    a = compare.codes(ours, None, "ours", observations)
    b = compare.codes(gold, compare.NEGBIO_MAPPING, "gold", observations)
    per, summary = compare.compare(a.where(a == "1", "0"), b.where(b == "1", "0"))  # gold is binary
    f1 = dict(zip(per["observation"], per["f1"], strict=True))
    low = {o: round(f1[o], 3) for o, floor in GOLD_F1_FLOOR.items() if f1[o] < floor}
    assert not low, f"F1 against the human gold fell below the floor: {low}"
    assert summary["micro_f1"] >= GOLD_MICRO_FLOOR
    assert np.mean([f1[o] for o in observations if o != "No Finding"]) >= GOLD_MACRO8_FLOOR


def test_dev_set_against_chexbert():
    _need_dev()
    ours, cb = _labelled("chexbert_findings.csv", ("findings",))
    per, summary = compare.compare(compare.codes(ours, None, "ours", OBSERVATIONS),
                                   compare.codes(cb, None, "chexbert", OBSERVATIONS))
    agreement = dict(zip(per["observation"], per["agreement"], strict=True))
    low = {o: round(agreement[o], 3) for o, floor in CHEXBERT_AGREEMENT_FLOOR.items() if agreement[o] < floor}
    assert not low, f"agreement with CheXbert fell below the floor: {low}"
    assert summary["cell_agreement"] >= CHEXBERT_CELLS_FLOOR
    assert summary["macro_f1"] >= CHEXBERT_MACRO_F1_FLOOR


# --------------------------------------------------------------------------- error classes (issue 11)
@pytest.mark.parametrize("text, expected", [
    ("There is no focal opacity to suggest pneumonia.", {"Lung Opacity": 0.0, "Pneumonia": 0.0}),
    ("No focal consolidation, suspicious opacity, pneumothorax or definite effusion.",
     {"Consolidation": 0.0, "Lung Opacity": 0.0, "Pneumothorax": 0.0, "Pleural Effusion": 0.0}),
    ("No pleural line to suggest pneumothorax.", {"Pneumothorax": 0.0}),
    ("There is no pleural line to suggest pneumothorax or costophrenic blunting to suggest large pleural "
     "effusion.", {"Pneumothorax": 0.0, "Pleural Effusion": 0.0}),
    ("The heart size and upper mediastinum have a normal appearance.",
     {"Cardiomegaly": 0.0, "Enlarged Cardiomediastinum": 0.0}),
    ("Heart size and pulmonary vascularity appear within normal limits.", {"Cardiomegaly": 0.0}),
    ("Heart size is mildly enlarged, pulmonary vascularity within normal limits.", {"Cardiomegaly": 1.0}),
    ("The cardiac and mediastinal contours are within normal limits.",
     {"Cardiomegaly": 0.0, "Enlarged Cardiomediastinum": 0.0}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": 1.0}),
    ("Borderline heart size.", {"Cardiomegaly": -1.0}),
    ("The mediastinum is stable.", {"Enlarged Cardiomediastinum": -1.0}),
    # Hedged alternatives stay uncertain, but an opacity that every alternative implies is certain.
    ("Minimal opacity, atelectasis or scarring.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
    ("Stable left basilar atelectasis versus scarring.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
    ("Small effusion or atelectasis.", {"Pleural Effusion": -1.0, "Atelectasis": -1.0}),
    ("Probable pneumonia.", {"Pneumonia": -1.0}),
    ("Residuals of prior granulomatous infection.", {}),
    ("An age-indeterminate fracture of a lower thoracic vertebra.", {"Fracture": 1.0}),
    ("No displaced rib fractures.", {"Fracture": 0.0}),
    # A negated infiltrate says nothing of Lung Opacity; a present one is an opacity.
    ("The lungs are clear without focal infiltrate.", {}),
    ("Patchy right basilar infiltrate.", {"Lung Opacity": 1.0}),
    # "No acute bony abnormality" denies a fracture; "bony abnormality" present says nothing of one.
    ("No acute bony abnormality.", {"Fracture": 0.0}),
    ("Degenerative bony abnormality of the spine.", {}),
    ("Heart size upper normal.", {"Cardiomegaly": 0.0}),
    ("Normal size and configuration of the cardiac silhouette.", {"Cardiomegaly": 0.0}),
    # A nodular opacity is a lesion; a bare density is no Lung Opacity (but still a finding).
    ("Nodular opacity in the right upper lobe.", {"Lung Lesion": 1.0}),
    ("Rounded density in the left base.", {}),
    ("Increased density at the left base.", {"Lung Opacity": 1.0}),
    # A vascular stent is an implant (not a normal study), not a support device; an airway stent is one.
    ("Coronary artery stents.", {}),
    ("Tracheal stent in place.", {"Support Devices": 1.0}),
    # Something located in the mediastinum is a mediastinal abnormality; over the heart only a landmark.
    ("There are surgical clips in the left mediastinum.", {"Enlarged Cardiomediastinum": 1.0}),
    ("No adenopathy in the anterior mediastinum.", {"Enlarged Cardiomediastinum": 0.0}),
    ("Postsurgical changes of the mediastinum.", {"Enlarged Cardiomediastinum": 1.0}),
    ("Density projecting over the heart.", {}),
    # A comma before an age word starts a new finding: the negation before it stops there.
    ("Densities not seen on the previous exam, healed right 10th rib fracture noted.", {"Fracture": 1.0}),
])
def test_real_report_error_classes(text, expected):
    row = label_unique([text])[0]
    got = {o: float(v) for o, v in zip(OBSERVATIONS, row, strict=True) if not np.isnan(v) and o != "No Finding"}
    assert got == expected


def test_low_volumes_and_surgery_are_not_no_finding():
    rows = label_unique(["Low lung volumes. The lungs are clear.", "Sternotomy wires. The lungs are clear.",
                         "The lungs are clear.", "Coronary stents. The lungs are clear.",
                         "A rounded density in the left base."])
    assert np.isnan(rows[0, 0]) and np.isnan(rows[1, 0]) and rows[2, 0] == 1.0
    assert np.isnan(rows[3, 0]) and np.isnan(rows[4, 0])


# --------------------------------------------------------------------------- labels-compare
def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_compare_counts_confusion_and_f1(tmp_path, capsys):
    nan = float("nan")
    a = _write(tmp_path / "a.csv", [
        {"Reports": "r1", "Edema": 1.0, "Fracture": 0.0}, {"Reports": "r2", "Edema": 1.0, "Fracture": nan},
        {"Reports": "r3", "Edema": -1.0, "Fracture": 1.0}, {"Reports": "r4", "Edema": nan, "Fracture": 1.0}])
    b = _write(tmp_path / "b.csv", [
        {"Edema": 1.0, "Fracture": 0.0}, {"Edema": 0.0, "Fracture": nan},
        {"Edema": 1.0, "Fracture": 1.0}, {"Edema": nan, "Fracture": 1.0}])
    out, dis = tmp_path / "per.csv", tmp_path / "dis.csv"
    assert main(["labels-compare", str(a), str(b), "--observations", "Edema,Fracture",
                 "--out", str(out), "--disagreements", str(dis)]) == 0
    per = pd.read_csv(out).set_index("observation")
    # Edema: A 1,1,-1,b against B 1,0,1,b -> tp 1, fp 1, fn 1; 2 of 4 agree.
    assert per.loc["Edema", "A=1,B=1"] == 1 and per.loc["Edema", "A=1,B=0"] == 1
    assert per.loc["Edema", "A=-1,B=1"] == 1 and per.loc["Edema", "A=blank,B=blank"] == 1
    assert per.loc["Edema", "agreement"] == 0.5
    assert per.loc["Edema", "precision"] == 0.5 and per.loc["Edema", "recall"] == 0.5
    assert per.loc["Fracture", "agreement"] == 1.0 and per.loc["Fracture", "f1"] == 1.0
    assert "cell agreement 0.750" in capsys.readouterr().out
    table = pd.read_csv(dis, keep_default_na=False)
    assert table["row"].tolist() == [2, 3] and table["Reports"].tolist() == ["r2", "r3"]
    assert table["Edema"].tolist() == ["1/0", "-1/1"] and table["Fracture"].tolist() == ["", ""]


def test_compare_with_a_mapped_gold_table(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", [{"Lung Lesion": 1.0, "Pleural Effusion": -1.0},
                                    {"Lung Lesion": float("nan"), "Pleural Effusion": 1.0}])
    b = _write(tmp_path / "gold.csv", [{"uid": 1, "Mass": 0, "Nodule": 1, "Effusion": 0},
                                       {"uid": 2, "Mass": 0, "Nodule": 0, "Effusion": 1}])
    assert main(["labels-compare", str(a), str(b), "--map", "Lung Lesion=Mass+Nodule",
                 "--map", "Pleural Effusion=Effusion", "--binary"]) == 0
    text = capsys.readouterr().out
    assert "cell agreement 1.000" in text and "macro 1.000" in text


def test_compare_bad_input_names_the_file(tmp_path, capsys):
    """Bad input to labels-compare ends in one line naming the file (exit 2), no traceback."""
    def error_of(*argv):
        assert main(["labels-compare", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("txtrayalign labels-compare: error: ")
        return err[0]

    a = _write(tmp_path / "a.csv", [{"Edema": 2.0}])
    b = _write(tmp_path / "b.csv", [{"Edema": 1.0}, {"Edema": 1.0}])
    assert re.search(r"a\.csv has 1 rows and .*b\.csv 2", error_of(str(a), str(b), "--observations", "Edema"))
    c = _write(tmp_path / "c.csv", [{"Edema": 1.0}])
    assert re.search(r"a\.csv: column 'Edema' row 1: '2\.0' is not 1, 0, -1 or blank",
                     error_of(str(a), str(c), "--observations", "Edema"))
    d = _write(tmp_path / "d.csv", [{"Pleural Effusion": 1.0}])
    assert re.search(r"c\.csv: no column 'Effusion' \(for Pleural Effusion\)",
                     error_of(str(d), str(c), "--map", "Pleural Effusion=Effusion"))


def test_compare_on_the_dev_set_matches_the_scoring_tool(tmp_path, capsys):
    """labels-compare against CheXbert reproduces the scorer's cell agreement on real labels."""
    _need_dev()
    ours, cb = _labelled("chexbert_findings.csv", ("findings",))
    ours.insert(0, "uid", cb["uid"])
    mine = tmp_path / "ours.csv"
    ours.to_csv(mine, index=False)
    assert main(["labels-compare", str(mine), str(DEV / "chexbert_findings.csv"), "--key", "uid"]) == 0
    text = capsys.readouterr().out
    a, b = ours[OBSERVATIONS].to_numpy(), cb[OBSERVATIONS].to_numpy()
    same = np.mean((a == b) | (np.isnan(a) & np.isnan(b)))
    assert f"cell agreement {same:.3f}" in text


# --------------------------------------------------------------------------- chexpert input errors
def test_chexpert_input_missing_or_folder_is_one_named_error(tmp_path, capsys):
    """The top-level CLI prints one line naming the file and exits 2; nothing is written."""
    def error_of(*argv):
        assert main(["chexpert", *argv, "--output_path", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("txtrayalign chexpert: error: ")
        return err[0]

    missing = error_of("--reports_path", str(tmp_path / "nope.csv"))
    assert re.search(r"--reports_path .*nope\.csv: no such file", missing)
    assert re.search(r"is a folder", error_of("--reports_path", str(tmp_path)))
    assert not (tmp_path / "o.csv").exists()


def test_chexpert_input_utf16_without_bom_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes('"No pneumothorax."\n'.encode("utf-16-le"))
    with pytest.raises(InputError, match=r"r\.csv: .*NUL"):
        read_reports_csv(path)


def test_chexpert_input_header_row_is_dropped(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('Reports\n"No pneumothorax."\n"Small effusion."\n', encoding="utf-8")
    assert read_reports_csv(path) == ["No pneumothorax.", "Small effusion."]
    path.write_text('"No pneumothorax."\n"Reports are pending."\n', encoding="utf-8")
    assert read_reports_csv(path) == ["No pneumothorax.", "Reports are pending."]


# --------------------------------------------------------------------------- hostile text (issue 12)
@pytest.mark.parametrize("unit, expected", [
    ("atelectasis/", {"Atelectasis": -1.0}),  # one endless "word": every mention an alternative
    ("no effusion, ", {"Pleural Effusion": 0.0}),
    ("heart and mediastinal contours ", {}),
    ("no opacity to suggest pneumonia to suggest ", {"Lung Opacity": 0.0, "Pneumonia": 0.0}),
    ("no" + "x" * 2000 + " effusion ", {"Pleural Effusion": 1.0}),
])
def test_pathological_sentences_are_labelled_in_linear_work(unit, expected):
    """200 KB in one sentence (no full stop): labelled correctly, and fast, since each mention costs a
    bounded amount of work (a quadratic labeller would take minutes here; nothing is timed)."""
    from txtrayalign.chexpert import Labeller

    text = (unit * (200_000 // len(unit) + 1))[:200_000]
    row = Labeller().label_sentences([text])
    got = {o: float(v) for o, v in zip(OBSERVATIONS, row, strict=True) if not np.isnan(v) and o != "No Finding"}
    assert got == expected
