"""Bring your own data: a table of real radiographs (PNG and DICOM) with plain notes, and a config of
only `dataset` and `experiments` (config/examples/byo-table.yaml, the README's example), run by
`snakemake evaluate` to the summary. Also: plain notes under `text.train_section: impression` stop
the sections stage in one line, and training without pairs names the input that is empty."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.workflow_helpers import ROOT, snakemake, write_config

EXAMPLE = ROOT / "config" / "examples" / "byo-table.yaml"
MAKE_TABLE = ROOT / "config" / "examples" / "make_byo_table.py"
COPIES = 4  # rows per real image: 2 train, 1 validate, 1 test


def test_the_readme_shows_the_example_config_and_it_holds_only_dataset_and_experiments():
    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(example) == {"dataset", "experiments"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Any table of image–report pairs**"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert yaml.safe_load(block) == example


@pytest.fixture(scope="module")
def byo_run(shared_testdata, tmp_path_factory):
    """The example table built from the shared files, run to the summary with the example config, its
    experiment made tiny (1 epoch, batches of 8, 50 bootstrap draws): still only dataset and experiments."""
    work = tmp_path_factory.mktemp("byo")
    made = subprocess.run([sys.executable, str(MAKE_TABLE), "--testdata", str(shared_testdata), "--out",
                           str(work / "results" / "byo-table" / "data"), "--copies", str(COPIES)],
                          capture_output=True, text=True, cwd=work)
    assert made.returncode == 0, made.stderr
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["experiments"]["scratch"] = {"train": {"epochs": 1, "batch_size": 8}, "evaluation": {"bootstrap": 50}}
    result = snakemake(work, "--cores", "2", "evaluate", config=write_config(cfg, work))
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return work, cfg, result


@pytest.mark.workflow
@pytest.mark.slow
def test_a_table_of_real_images_with_plain_notes_runs_to_the_summary(byo_run):
    work, _, result = byo_run
    out = work / "results" / "byo-table"
    pairs = pd.read_csv(out / "data" / "pairs.csv")
    images = pd.read_parquet(out / "index" / "images.parquet")
    assert len(images) == len(pairs) == 7 * COPIES and pd.read_parquet(out / "index" / "problems.parquet").empty
    assert set(images.format) == {"png", "dcm"}
    assert pd.read_parquet(out / "images" / "256" / "skipped.parquet").empty  # every real file decoded
    assert len(pd.read_parquet(out / "images" / "256" / "index.parquet")) == len(pairs)
    # plain notes: the whole note is the training text (the table's default, auto), no study without one
    sections = pd.read_parquet(out / "text" / "sections.parquet")
    assert pd.read_parquet(out / "text" / "problems.parquet").empty
    note_of_image = dict(zip(pairs.image_id, pairs.report_text, strict=True))
    notes = dict(zip(images.study_id, images.dicom_id.map(note_of_image), strict=True))
    assert dict(zip(sections.study_id, sections.train_text, strict=True)) == notes
    assert "--train-section auto" in result.stdout + result.stderr
    summary = pd.read_csv(out / "eval" / "summary.csv")
    model = summary[(summary.experiment == "scratch") & (summary.method == "model")]
    assert len(model) == 1 and set(summary.method) >= {"model", "random"}


@pytest.mark.workflow
@pytest.mark.slow
def test_plain_notes_under_impression_stop_the_sections_stage_in_one_line(byo_run):
    work, cfg, _ = byo_run
    n = 7 * COPIES
    result = snakemake(work, "--cores", "1", "results/byo-table/text/sections.parquet", "--config",
                       "text={train_section: impression}", config=write_config(cfg, work))
    assert result.returncode != 0
    line = (f"txtrayalign sections: error: text.train_section = impression (--train-section) leaves {n} of {n} "
            f"studies (100.0%, e.g. ")
    errors = [x for x in (result.stdout + result.stderr).splitlines() if "txtrayalign sections: error:" in x]
    assert errors and all(x.startswith(line) for x in errors), errors
    assert errors[0].endswith(f"(no impression section), more than text.max_empty_share = 0.05; text.train_section: "
                              f"auto gives {n} of {n} studies a training text")
    assert "Traceback" not in result.stdout + result.stderr


def test_training_without_pairs_names_the_empty_input(tmp_path):
    """Every study's training text empty: the error names the sections file, not "the split file"."""
    from txtrayalign.errors import InputError
    from txtrayalign.train.data import load_pairs
    from txtrayalign.train.toydata import write_toy_dataset

    toy = write_toy_dataset(tmp_path / "toy", studies=12, image_size=32, seed=1)
    sections = tmp_path / "sections.parquet"
    pd.DataFrame({"subject_id": [1], "study_id": [1], "split": ["train"], "train_text": [""]}).to_parquet(sections)
    with pytest.raises(InputError, match=rf"no training pairs: none of the \d+ training images' studies has a text in "
                                         rf"{re.escape(str(sections))}"):
        load_pairs(toy["split"], toy["images_index"], None, sections, "section")
    split = pd.read_parquet(toy["split"])
    split[split.split != "train"].to_parquet(tmp_path / "no_train.parquet")
    with pytest.raises(InputError, match=r"no training pairs: .*no_train.parquet has no image in the train split"):
        load_pairs(tmp_path / "no_train.parquet", toy["images_index"], toy["sentences"], None, "sentences")
