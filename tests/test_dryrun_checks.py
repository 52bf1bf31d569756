"""What the dry run decides without data, cheaply: `evaluation.k` against a sentence bank that is
already built, the dry run's imports (no torch), each stage's code fingerprint (embed leaves out the
labeller), and that a bank is embedded only where an evaluation reads it."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import txtrayalign.utils
from tests.workflow_helpers import ROOT, planned_jobs, snakemake, tiny_config, write_config
from txtrayalign.utils import PACKAGE_ROOT, code_fingerprints, module_closure

SENTENCES = "results/tiny/text/sentences.parquet"


def _rel(paths) -> set[str]:
    return {str(p.relative_to(txtrayalign.utils.PACKAGE_ROOT)) for p in paths}  # a test may point it at a copy


def stage_modules() -> dict:
    """The stage table of workflow/rules/common.smk (the modules behind each rule's `params.code`)."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    table = re.search(r"^STAGE_MODULES = (\{.*?^\})", text, re.S | re.M).group(1)
    return ast.literal_eval(table)


# --------------------------------------------------------------------------- k against the bank


@pytest.fixture(scope="module")
def built_text(tmp_path_factory):
    """A work folder whose tiny synthetic dataset is indexed and split into sentences (synth, index and
    sections only: a few seconds), with the sentence table's real row count."""
    work = tmp_path_factory.mktemp("kbank")
    cfg = tiny_config(studies=60)
    result = snakemake(work, "--cores", "2", SENTENCES, config=write_config(cfg, work))
    assert result.returncode == 0, result.stderr[-4000:]
    return work, cfg, len(pd.read_parquet(work / SENTENCES))


def _dry_run(work, cfg, *extra):
    result = snakemake(work, "-n", "--cores", "1", "evaluate", *extra, config=write_config(cfg, work))
    return result, result.stdout + result.stderr


@pytest.mark.workflow
def test_k_larger_than_a_built_sentence_bank_fails_the_dry_run_naming_the_key(built_text):
    work, cfg, n = built_text
    over = copy.deepcopy(cfg)
    over["experiments"]["exp0"] = {"evaluation": {"k": [1, 2, n + 1]}}
    result, out = _dry_run(work, over)
    assert result.returncode != 0
    assert (f"experiments.exp0.evaluation.k = [1, 2, {n + 1}]: k = {n + 1} is larger than the sentence bank of exp0 "
            f"on tiny: results/tiny/text/sentences.parquet holds {n} sentences") in out
    # set in the defaults: that key is named
    defaults = copy.deepcopy(cfg)
    defaults["defaults"]["evaluation"]["k"] = [1, 2, 10 * n]
    result, out = _dry_run(work, defaults)
    assert result.returncode != 0 and f"defaults.evaluation.k = [1, 2, {10 * n}]: k = {10 * n} is larger" in out


@pytest.mark.workflow
def test_k_within_the_bank_or_a_bank_to_be_rebuilt_passes_the_dry_run(built_text):
    work, cfg, n = built_text
    within = copy.deepcopy(cfg)
    within["experiments"]["exp0"] = {"evaluation": {"k": [1, 2, n]}}
    result, out = _dry_run(work, within)
    assert result.returncode == 0, out[-3000:]
    assert planned_jobs(result)["sections"] == 0  # the bank stays as built
    # the same too-large k with a setting that rebuilds the sentences: their new count is not known yet
    rebuilt = copy.deepcopy(cfg)
    rebuilt["experiments"]["exp0"] = {"evaluation": {"k": [1, 2, n + 1]}}
    rebuilt["text"]["train_section"] = "findings"
    result, out = _dry_run(work, rebuilt)
    assert result.returncode == 0, out[-3000:]
    assert planned_jobs(result)["sections"] == 1
    # a changed dataset setting upstream (the synthetic dataset's size) rebuilds them as well
    bigger = copy.deepcopy(rebuilt)
    bigger["text"]["train_section"] = cfg["text"]["train_section"]
    bigger["dataset"]["synthetic"]["studies"] = 80
    result, out = _dry_run(work, bigger)
    assert result.returncode == 0 and planned_jobs(result)["synth"] == 1, out[-3000:]
    # and so does a forced rerun of the sections
    result, out = _dry_run(work, rebuilt | {"text": cfg["text"]}, "--forcerun", "sections")
    assert result.returncode == 0 and planned_jobs(result)["sections"] == 1, out[-3000:]


@pytest.mark.workflow
def test_an_edited_sentence_table_or_record_makes_the_bank_unknown(built_text, tmp_path):
    """The record the sections job wrote is what makes the bank known; without it, no refusal."""
    work, cfg, n = built_text
    over = copy.deepcopy(cfg)
    over["experiments"]["exp0"] = {"evaluation": {"k": [1, 2, n + 1]}}
    record = work / "results" / "tiny" / "text" / "sentences.record.json"
    saved = record.read_bytes()
    try:
        record.write_text(saved.decode().replace('"studies": "60"', '"studies": "61"'))
        result, out = _dry_run(work, over)
        assert result.returncode == 0, out[-3000:]
    finally:
        record.write_bytes(saved)
    result, _ = _dry_run(work, over)
    assert result.returncode != 0


# --------------------------------------------------------------------------- the dry run's imports


@pytest.mark.workflow
def test_the_dry_run_imports_no_torch_transformers_open_clip_or_timm(tmp_path):
    heavy = {"torch", "torchvision", "transformers", "open_clip", "timm"}

    def imported(result) -> set[str]:
        log = result.stdout + result.stderr
        return {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)$", log, re.M)}

    cfg = tiny_config()
    result = snakemake(tmp_path, "-n", "--cores", "1", "evaluate", config=write_config(cfg, tmp_path),
                       env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and planned_jobs(result)["embed_bank"] == 1, result.stderr[-3000:]
    assert {"txtrayalign", "snakemake", "yaml"} <= imported(result)  # the log lists every module
    assert not imported(result) & heavy
    # the encoder check runs all the same, naming the key
    cfg["experiments"] = {"exp0": {}, "typo": {"image_encoder": {"name": "resnet19"}}}
    result = snakemake(tmp_path, "-n", "--cores", "1", "evaluate", config=write_config(cfg, tmp_path),
                       env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode != 0 and not imported(result) & heavy
    out = result.stdout + result.stderr
    assert "'resnet19' is not a known image encoder" in out and "[experiments.typo.image_encoder.name]" in out


def test_the_torch_free_registry_matches_the_encoders_it_names():
    from torchvision import models

    from txtrayalign.train import encoders, names

    assert sorted(encoders.IMAGE_ENCODERS) == names.list_image_encoders()
    assert names.IMAGENET_URLS == {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1.url,
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V2.url,
        "efficientnet_b0": models.EfficientNet_B0_Weights.IMAGENET1K_V1.url,
    }
    with pytest.raises(ValueError, match="IMAGE_ENCODER_NAMES"):
        encoders.register_image_encoder("resnet19")


def test_the_torch_hub_cache_path_is_torchs_own(monkeypatch, tmp_path):
    import torch.hub

    from txtrayalign.train.names import torch_hub_checkpoint

    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        for var in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
        assert torch_hub_checkpoint(url) == Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"


# --------------------------------------------------------------------------- code fingerprints


def test_embed_runs_no_labeller_and_its_fingerprint_leaves_it_out(tmp_path, monkeypatch):
    import shutil

    import txtrayalign.utils as utils
    from txtrayalign.cli import COMMANDS

    stages = stage_modules()
    assert stages["embed"] == COMMANDS["embed"][0] == "txtrayalign.evaluate.embed_cli"  # the module it runs
    embed, evaluate = (_rel(module_closure(*([m] if isinstance(m, str) else m))) for m in
                       (stages["embed"], stages["evaluate"]))
    assert not any(f.startswith(("chexpert/", "chexbert/")) for f in embed)
    assert {"evaluate/embed.py", "train/model.py", "images/shards.py", "utils.py"} <= embed
    assert {"chexpert/phrases/observations.yaml", "chexbert/model.py", "evaluate/evaluation.py"} <= evaluate
    # an edit of the labeller (a phrase file) changes evaluate's and label's fingerprints, not embed's
    copy_root = tmp_path / "txtrayalign"
    shutil.copytree(PACKAGE_ROOT, copy_root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(utils, "PACKAGE_ROOT", copy_root)
    before = code_fingerprints(stages)
    phrases = copy_root / "chexpert" / "phrases" / "observations.yaml"
    phrases.write_text(phrases.read_text() + "\n# edited\n")
    after = code_fingerprints(stages)
    assert {s for s in stages if before[s] != after[s]} == {"label", "evaluate"}
    (copy_root / "evaluate" / "embed.py").write_text((copy_root / "evaluate" / "embed.py").read_text() + "\n# x\n")
    assert code_fingerprints(stages)["embed"] != after["embed"]


def test_the_scan_cache_gives_the_same_fingerprints_and_follows_edits(tmp_path, monkeypatch):
    import shutil

    import txtrayalign.utils as utils

    stages = stage_modules()
    copy_root = tmp_path / "txtrayalign"
    shutil.copytree(PACKAGE_ROOT, copy_root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(utils, "PACKAGE_ROOT", copy_root)
    cache = tmp_path / "scans.json"
    cold = code_fingerprints(stages, cache=cache)
    assert cache.is_file()
    utils._SCANS.clear()  # a new process: everything from the cache file
    assert code_fingerprints(stages, cache=cache) == cold == code_fingerprints(stages)
    # a new import in the text stage's module pulls the labeller into its closure, cache or not
    cli = copy_root / "text" / "cli.py"
    assert "chexpert/__init__.py" not in _rel(module_closure("txtrayalign.text.cli"))
    cli.write_text(cli.read_text() + "\n\ndef _late():\n    from txtrayalign.chexpert import label_unique  # noqa\n")
    utils._SCANS.clear()
    warm = code_fingerprints(stages, cache=cache)
    assert warm["text"] != cold["text"] and warm["embed"] == cold["embed"]
    assert "chexpert/__init__.py" in _rel(module_closure("txtrayalign.text.cli"))


# --------------------------------------------------------------------------- the bank where it is used


@pytest.mark.workflow
def test_a_source_bank_evaluation_plans_no_bank_for_the_target(tmp_path):
    cfg = tiny_config(studies=60)
    cfg["datasets"] = {"iu": {"root": str(tmp_path / "iu-data"), "format": "openi"}}
    cfg["experiments"] = {"exp0": {"evaluate_on": ["tiny", "iu"], "evaluation": {"bank": "source"}}}
    result = snakemake(tmp_path, "-n", "--cores", "1", "evaluate", config=write_config(cfg, tmp_path))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert planned_jobs(result)["embed"] == 2 and planned_jobs(result)["embed_bank"] == 1
    assert "results/tiny/embeddings/exp0/bank.h5" in out and "results/iu/embeddings/exp0/queries.h5" in out
    assert "results/iu/embeddings/exp0/bank.h5" not in out
    cfg["experiments"]["exp0"]["evaluation"]["bank"] = "target"
    result = snakemake(tmp_path, "-n", "--cores", "1", "evaluate", config=write_config(cfg, tmp_path))
    assert planned_jobs(result)["embed_bank"] == 2 and "results/iu/embeddings/exp0/bank.h5" in result.stdout


def test_embed_halves_equal_the_whole(tmp_path, monkeypatch):
    """`--out-queries` alone and `--out-bank` alone write exactly what one call with both writes."""
    import txtrayalign.train
    from tests.test_evaluate_cli import FakeModel, build_fixture, embed_args
    from txtrayalign.cli import main

    paths = build_fixture(tmp_path)
    monkeypatch.setattr(txtrayalign.train, "load_model", lambda model_dir, device: FakeModel())
    both = embed_args(paths, tmp_path)
    assert main(both) == 0

    def without(args, option, *more):
        args = list(args)
        for name in (option, *more):
            i = args.index(name)
            del args[i:i + 2]
        return args

    halves = tmp_path / "halves"
    queries_only = without(both, "--out-bank", "--sentences")
    queries_only[queries_only.index("--out-queries") + 1] = str(halves / "queries.h5")
    bank_only = without(both, "--out-queries", "--images-index")
    bank_only[bank_only.index("--out-bank") + 1] = str(halves / "bank.h5")
    assert main(queries_only) == 0 and not (halves / "bank.h5").exists()
    assert main(bank_only) == 0
    for name in ("queries.h5", "bank.h5"):
        with h5py.File(tmp_path / "emb" / name) as whole, h5py.File(halves / name) as half:
            assert sorted(whole) == sorted(half) and dict(whole.attrs) == dict(half.attrs)
            for key in whole:
                np.testing.assert_array_equal(whole[key][()], half[key][()])
    with h5py.File(halves / "bank.h5") as f:
        assert f["embeddings"].shape[0] > 0 and "prompt_embeddings" in f and "report_embeddings" in f


def test_embed_says_what_each_output_needs(tmp_path, capsys):
    from tests.test_evaluate_cli import build_fixture, embed_args
    from txtrayalign.cli import main

    paths = build_fixture(tmp_path)
    args = embed_args(paths, tmp_path)
    i = args.index("--images-index")
    assert main(args[:i] + args[i + 2:]) == 2
    assert "--out-queries needs --images-index" in capsys.readouterr().err
    j = args.index("--out-queries")
    k = args.index("--out-bank")
    assert main(args[:j] + args[j + 2:k] + args[k + 2:]) == 2
    assert "nothing to write: give --out-queries, --out-bank or both" in capsys.readouterr().err
