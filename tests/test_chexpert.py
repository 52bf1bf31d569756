"""The CheXpert-compatible labeller: sample reproduction, negation/uncertainty scope, CLIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from txtrayalign.chexpert import Labeller, explain, label_reports, label_texts
from txtrayalign.chexpert.aggregate import combine
from txtrayalign.chexpert.mention import phrase_to_regex
from txtrayalign.cli import main
from txtrayalign.constants import OBSERVATIONS

NAN = float("nan")


def labels(text: str) -> dict[str, float]:
    """The mentioned observations of one text: name -> 1 / 0 / -1."""
    row = label_texts([text])[0]
    return {name: float(v) for name, v in zip(OBSERVATIONS, row, strict=True) if not math.isnan(v)}


# --------------------------------------------------------------------------- the CheXpert sample
def test_cli_reproduces_chexpert_sample_byte_for_byte(shared_testdata, tmp_path):
    reports = shared_testdata / "reports" / "chexpert_sample_reports.csv"
    expected = (shared_testdata / "reports" / "chexpert_labeled_reports.csv").read_bytes()
    out = tmp_path / "labeled.csv"
    assert main(["chexpert", "--reports_path", str(reports), "--output_path", str(out)]) == 0
    assert out.read_bytes() == expected


def test_cli_format_quotes_multiline_and_commas(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('No effusion\n"Small effusion, left.\n\nNo pneumothorax."\n"Possible ""pneumonia""."\n')
    out = tmp_path / "out.csv"
    assert main(["chexpert", "--reports_path", str(src), "--output_path", str(out), "--verbose"]) == 0
    lines = out.read_text().split("\n")
    assert lines[0] == "Reports," + ",".join(OBSERVATIONS)
    assert lines[1] == "No effusion,1.0" + "," * 10 + "0.0,,,"
    assert lines[2] == '"Small effusion, left.'
    assert lines[4] == 'No pneumothorax.",,,,,,,,,,0.0,1.0,,,'
    assert lines[5] == '"Possible ""pneumonia"".",,,,,,,,-1.0,,,,,,'
    table = pd.read_csv(out)
    assert list(table.columns) == ["Reports", *OBSERVATIONS] and len(table) == 3


# --------------------------------------------------------------------------- the 14 observations
CASES = [
    # negation and uncertainty of single mentions
    ("No pneumothorax.", {"No Finding": 1, "Pneumothorax": 0}),
    ("Pneumothorax has resolved.", {"No Finding": 1, "Pneumothorax": 0}),
    ("Pneumothorax is no longer seen.", {"No Finding": 1, "Pneumothorax": 0}),
    ("Small right apical pneumothorax.", {"Pneumothorax": 1}),
    ("Questionable tiny left apical pneumothorax.", {"Pneumothorax": -1}),
    ("Cannot exclude pneumonia.", {"Pneumonia": -1}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
    ("Right lower lobe opacity concerning for pneumonia.", {"Lung Opacity": 1, "Pneumonia": -1}),
    ("No evidence of pneumonia.", {"No Finding": 1, "Pneumonia": 0}),
    ("Right lower lobe pneumonia.", {"Pneumonia": 1}),
    ("Edema has improved, no pleural effusion.", {"Edema": 1, "Pleural Effusion": 0}),
    ("Pleural effusions have resolved. Stable mild cardiomegaly.", {"Pleural Effusion": 0, "Cardiomegaly": 1}),
    ("Possible small left effusion.", {"Pleural Effusion": -1}),
    ("Effusion is unlikely.", {"Pleural Effusion": -1}),
    ("Small bilateral pleural effusions.", {"Pleural Effusion": 1}),
    ("Blunting of the left costophrenic angle.", {"Pleural Effusion": -1}),
    ("No new consolidation but persistent atelectasis.", {"Consolidation": -1, "Atelectasis": 1}),
    ("No consolidation but persistent atelectasis.", {"Consolidation": 0, "Atelectasis": 1}),
    ("Likely bibasilar atelectasis.", {"Atelectasis": -1}),
    ("Atelectasis versus pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
    ("Heart size is normal.", {"No Finding": 1, "Cardiomegaly": 0}),
    ("The heart is not enlarged.", {"No Finding": 1, "Cardiomegaly": 0}),
    ("Heart size and pulmonary vascularity within normal limits.", {"No Finding": 1, "Cardiomegaly": 0}),
    ("Moderate cardiomegaly.", {"Cardiomegaly": 1}),
    ("Heart size is mildly enlarged but stable.", {"Cardiomegaly": 1}),
    ("Heart size is borderline.", {"Cardiomegaly": -1}),
    ("The cardiomediastinal silhouette is within normal limits.", {"No Finding": 1, "Enlarged Cardiomediastinum": 0}),
    ("The cardiomediastinal silhouette is stable.", {"Enlarged Cardiomediastinum": -1}),
    # de-identification hid the verb of a statement of change (an IU template): uncertain, as "stable"
    ("The heart and lungs have XXXX XXXX in the interval.", {"Cardiomegaly": -1}),
    ("Cardiac and mediastinal XXXX appear normal.", {"No Finding": 1, "Enlarged Cardiomediastinum": 0}),
    ("The mediastinum is widened.", {"Enlarged Cardiomediastinum": 1}),
    ("There is a 1.2 cm nodule in the right upper lobe.", {"Lung Lesion": 1}),
    ("No suspicious pulmonary nodules.", {"No Finding": 1, "Lung Lesion": 0}),
    ("Patchy opacity at the left base.", {"Lung Opacity": 1}),
    ("The lungs are clear without evidence of focal airspace disease.", {"No Finding": 1, "Lung Opacity": 0}),
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("Mild vascular congestion without frank edema.", {"Edema": -1}),
    ("Congestive heart failure.", {"Edema": 1, "Cardiomegaly": -1}),
    ("Right lower lobe consolidation.", {"Consolidation": 1}),
    ("No acute cardiopulmonary process.", {"No Finding": 1}),
    ("Negative acute cardiopulmonary abnormality.", {"No Finding": 1}),  # a bare "negative" negates
    ("Pleural scarring.", {"Pleural Other": 1}),
    ("Left apical pleural thickening.", {"Pleural Other": 1}),
    ("No pleural thickening.", {"No Finding": 1, "Pleural Other": 0}),
    ("Possible pleural plaques.", {"Pleural Other": -1}),
    ("Healed left rib fracture.", {"Fracture": 1}),
    ("No displaced rib fractures.", {"No Finding": 1, "Fracture": 0}),
    ("NG tube in the stomach.", {"No Finding": 1, "Support Devices": 1}),
    ("ET tube terminates 3 cm above the carina.", {"No Finding": 1, "Support Devices": 1}),
    ("The endotracheal tube has been removed.", {"No Finding": 1, "Support Devices": 0}),
    ("Right IJ central venous catheter terminates in the SVC.", {"No Finding": 1, "Support Devices": 1}),
    # lists and scope
    ("No pneumothorax or effusion.", {"No Finding": 1, "Pneumothorax": 0, "Pleural Effusion": 0}),
    ("No focal consolidation, pleural effusion, or pneumothorax.",
     {"No Finding": 1, "Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0}),
    ("Cardiomegaly without overt edema.", {"Cardiomegaly": 1, "Edema": 0}),
    ("No pneumothorax and mild cardiomegaly.", {"Pneumothorax": 0, "Cardiomegaly": 1}),
    ("There is no longer a pneumothorax.", {"No Finding": 1, "Pneumothorax": 0}),
    ("Normal and stable cardiomediastinal silhouette.", {"No Finding": 1, "Enlarged Cardiomediastinum": 0}),
    ("The heart size is normal and there is mild pulmonary edema.", {"Cardiomegaly": 0, "Edema": 1}),
    ("No effusion, however there is a small pneumothorax.", {"Pleural Effusion": 0, "Pneumothorax": 1}),
    ("No pneumothorax, small left pleural effusion.", {"Pneumothorax": 0, "Pleural Effusion": 1}),
    ("No focal consolidation, large effusion or pneumothorax.",
     {"No Finding": 1, "Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0}),
    ("Pleural effusions are small, if any.", {"Pleural Effusion": -1}),
    ("Left lower lobe opacity, which may reflect atelectasis, though infection cannot be excluded.",
     {"Lung Opacity": 1, "Atelectasis": -1, "Pneumonia": -1}),
    ("Right lower lobe opacity without effusion is concerning for pneumonia.",
     {"Lung Opacity": 1, "Pleural Effusion": 0, "Pneumonia": -1}),
    ("There is no change in the moderate left pleural effusion.", {"Pleural Effusion": 1}),
    # "suggest" is no uncertainty trigger (CheXpert took it out of its patterns); "may" still is
    ("Increased interstitial markings suggestive of mild pulmonary edema.", {"Lung Opacity": 1, "Edema": 1}),
    ("These findings may suggest pneumonia.", {"Pneumonia": -1}),
    # "probable" hedges, "probably" does not (CheXpert's lemma list); nor does the noun "obscuration"
    ("Probable small left pleural effusion.", {"Pleural Effusion": -1}),
    ("Opacity which probably represents left lower lobe consolidation.", {"Lung Opacity": 1, "Consolidation": 1}),
    ("Obscuration of the left hemidiaphragm by a left lower lobe opacity.", {"Lung Opacity": 1}),
    ("Left lower lobe opacity may represent atelectasis or pneumonia.",
     {"Lung Opacity": 1, "Atelectasis": -1, "Pneumonia": -1}),
    # anatomy as a landmark is not a mention
    ("Opacity projecting over the heart is unchanged.", {"Lung Opacity": 1}),
    # unmentions: words that look like a mention but are something else
    ("Kerley B lines are noted.", {"Edema": 1}),
    ("Degenerative changes with end plate sclerosis.", {}),
    ("Small pericardial effusion.", {}),
    ("Calcified granuloma in the left upper lobe.", {}),
    ("Skin fold projects over the right lung; the pleural line is not displaced.", {"No Finding": 1}),
    ("Hydropneumothorax on the right.", {"Pneumothorax": 1, "Pleural Effusion": 1}),
    ("Nodular opacity in the right upper lobe.", {"Lung Lesion": 1}),  # a lesion, not an opacity
    # other findings make No Finding blank
    ("Emphysema.", {}),
    ("Small left chest wall hematoma.", {}),
    ("No hematoma.", {"No Finding": 1}),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0][:40] for c in CASES])
def test_sentence_labels(text, expected):
    assert labels(text) == {k: float(v) for k, v in expected.items()}


def test_every_observation_is_covered_positive_and_negative():
    seen = {name: set() for name in OBSERVATIONS}
    for _, expected in CASES:
        for name, value in expected.items():
            seen[name].add(value)
    for name in OBSERVATIONS:
        if name != "No Finding":
            assert {1, 0} <= seen[name] or {1, -1} <= seen[name], name


def test_empty_texts_are_blank_and_api_shapes():
    out = label_reports(["", "   ", "No pneumothorax.", None])  # type: ignore[list-item]
    assert out.shape == (4, 14) and out.dtype == np.float64
    assert np.isnan(out[0]).all() and np.isnan(out[1]).all() and np.isnan(out[3]).all()
    assert out[2, OBSERVATIONS.index("Pneumothorax")] == 0.0
    assert label_texts([]).shape == (0, 14)


def test_chexpert_combination_of_mentions():
    assert combine([1.0]) == 1.0
    assert combine([0.0, 1.0]) == 1.0
    assert combine([-1.0, 1.0]) == 1.0
    assert combine([0.0, -1.0]) == -1.0
    # CheXpert's code checks "negative and uncertain" first and gives -1 here; a positive mention wins
    # instead (both dev-set references agree; see the header of phrases/observations.yaml).
    assert combine([0.0, -1.0, 1.0]) == 1.0
    assert labels("Patchy opacity at the left base. No focal airspace disease. Possible scarring.") == {
        "Lung Opacity": 1.0}
    assert labels("Small left effusion. No right effusion.") == {"Pleural Effusion": 1.0}
    assert labels("Possible left effusion. No right effusion.") == {"Pleural Effusion": -1.0}


def test_explain_names_phrase_and_trigger():
    rows = explain("No pneumothorax. Possible small left effusion.")
    by_obs = {e.observation: e for e in rows}
    assert by_obs["Pneumothorax"].decision == 0.0 and by_obs["Pneumothorax"].trigger == "no"
    assert by_obs["Pleural Effusion"].decision == -1.0 and by_obs["Pleural Effusion"].rule == "uncertainty"
    assert by_obs["Pleural Effusion"].phrase == "effusion"


def test_phrase_syntax():
    import re

    assert re.fullmatch(phrase_to_regex("air~space disease"), "air-space disease")
    assert re.fullmatch(phrase_to_regex("air~space disease"), "airspace disease")
    assert re.fullmatch(phrase_to_regex("atelecta*"), "atelectatic")
    assert re.fullmatch(phrase_to_regex("(pleural|loculated) (effusion|fluid)*"), "pleural effusions")
    assert not re.fullmatch(phrase_to_regex("tubes?"), "tubular")


def test_labeller_caches_sentences_and_dedupes():
    lab = Labeller()
    out = lab.label_texts(["No effusion. No pneumothorax.", "No effusion. No pneumothorax.", "No effusion."])
    assert (out[0] == out[1])[~np.isnan(out[0])].all()
    assert len(lab._cache) == 2


# --------------------------------------------------------------------------- the label stage
def _stage_inputs(tmp_path):
    sections = pd.DataFrame({
        "subject_id": [10000001, 10000002, 10000003, 10000004],
        "study_id": [50000001, 50000002, 50000003, 50000004],
        "split": ["train", "train", "test", "validate"],
        "label_text": ["Small left effusion.", "", "Caf\ufffd opacity.", "No pneumothorax."],
    })
    sentences = pd.DataFrame({
        "sentence_id": [500000010000, 500000030000, 500000040000, 500000040001],
        "study_id": [50000001, 50000003, 50000004, 50000004],
        "sentence": ["Small left effusion.", "Caf\ufffd opacity.", "No pneumothorax.", "Small left effusion."],
    })
    sections.to_parquet(tmp_path / "sections.parquet")
    sentences.to_parquet(tmp_path / "sentences.parquet")
    return sections, sentences


def _run_label(tmp_path, *extra):
    out = tmp_path / "labels"
    argv = ["label", "--sections", str(tmp_path / "sections.parquet"), "--sentences",
            str(tmp_path / "sentences.parquet"), "--out-reports", str(out / "reports.parquet"),
            "--out-sentences", str(out / "sentences.parquet"), "--log", str(tmp_path / "label.log"), *extra]
    assert main(argv) == 0
    return pd.read_parquet(out / "reports.parquet"), pd.read_parquet(out / "sentences.parquet")


def test_label_stage(tmp_path):
    _stage_inputs(tmp_path)
    reports, sentences = _run_label(tmp_path)
    assert list(reports.columns) == ["subject_id", "study_id", *OBSERVATIONS]
    assert list(sentences.columns) == ["sentence_id", "study_id", *OBSERVATIONS]
    effusion = OBSERVATIONS.index("Pleural Effusion")
    assert reports.iloc[0, 2 + effusion] == 1.0
    assert reports.iloc[1, 2:].isna().all()  # empty report: no labels
    assert reports.iloc[2]["Lung Opacity"] == 1.0  # text decoded with replacement still labels
    assert reports.iloc[3]["Pneumothorax"] == 0.0 and reports.iloc[3]["No Finding"] == 1.0
    assert sentences["sentence_id"].tolist() == [500000010000, 500000030000, 500000040000, 500000040001]
    assert sentences.iloc[3]["Pleural Effusion"] == 1.0 and sentences.iloc[0]["Pleural Effusion"] == 1.0


def test_label_stage_with_official_table(tmp_path):
    _stage_inputs(tmp_path)
    from txtrayalign.constants import MIMIC_LABEL_COLUMNS

    official = pd.DataFrame({"subject_id": [10000001, 10000002], "study_id": [50000001, 50000002]})
    for name in MIMIC_LABEL_COLUMNS:
        official[name] = NAN
    official["Atelectasis"] = [1.0, -1.0]
    official["No Finding"] = [NAN, NAN]
    official.to_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    reports, _ = _run_label(tmp_path, "--official", str(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz"))
    assert list(reports.columns) == ["subject_id", "study_id", *OBSERVATIONS]
    assert reports["Atelectasis"].tolist()[:2] == [1.0, -1.0]
    assert math.isnan(reports.loc[0, "Pleural Effusion"])  # official label kept, not ours
    assert reports.loc[3, "Pneumothorax"] == 0.0  # not in the official table: labelled here
    assert "not in" in (tmp_path / "label.log").read_text()


def test_label_unique_workers_match_single_process(monkeypatch):
    from txtrayalign.chexpert import batch, label_unique

    texts = [f"Small left effusion number {i}. No pneumothorax." for i in range(30)] + ["", "Cardiomegaly."]
    monkeypatch.setattr(batch, "CHUNK", 8)
    one = label_unique(texts, workers=1)
    two = label_unique(texts, workers=2)
    assert np.array_equal(one, two, equal_nan=True)
    assert one.shape == (32, 14) and np.isnan(one[30]).all()
    assert one[0, OBSERVATIONS.index("Pleural Effusion")] == 1.0
    assert one[0, OBSERVATIONS.index("Pneumothorax")] == 0.0
    assert label_unique([]).shape == (0, 14)


def test_label_unique_uses_the_given_labeller():
    from txtrayalign.chexpert import Labeller, label_unique
    from txtrayalign.chexpert.mention import MentionFinder, load_config

    config = load_config("observations.yaml")
    lists = {name: dict(v) for name, v in config["observations"].items()}
    lists["Fracture"] = {**lists["Fracture"], "mention": [*lists["Fracture"]["mention"], "zebra"]}
    custom = Labeller(finder=MentionFinder({**config, "observations": lists}))
    texts = ["A zebra is seen.", "A zebra is seen.", "No zebra."]
    fracture = OBSERVATIONS.index("Fracture")
    assert np.isnan(label_unique(texts)[:, fracture]).all()
    assert label_unique(texts, labeller=custom)[:, fracture].tolist() == [1.0, 1.0, 0.0]


def test_label_stage_reports_missing_columns(tmp_path, capsys):
    pd.DataFrame({"study_id": [1]}).to_parquet(tmp_path / "sections.parquet")
    pd.DataFrame({"sentence_id": [1], "study_id": [1], "sentence": ["x"]}).to_parquet(tmp_path / "sentences.parquet")
    out = tmp_path / "labels"
    argv = ["label", "--sections", str(tmp_path / "sections.parquet"), "--sentences",
            str(tmp_path / "sentences.parquet"), "--out-reports", str(out / "reports.parquet"),
            "--out-sentences", str(out / "sentences.parquet")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sections.parquet: not a sections table, missing column(s) ['subject_id'" in err[0]
    assert not out.exists()  # nothing written
