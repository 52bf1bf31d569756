"""The workflow itself: config validation, a dry run and the linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.workflow


def _snakemake(*args: str, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _dry_run(workdir: Path, *extra: str, configfile: Path = ROOT / "config/config.yaml"):
    return _snakemake("-n", "evaluate", "--cores", "1", "--directory", str(workdir),
                      "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(configfile), *extra)


def _config_with_experiments(tmp_path: Path, experiments: dict) -> Path:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["experiments"] = experiments
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_default_config_is_valid_against_the_packaged_schema():
    from txtrayalign import settings

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    settings.check_config(config)
    experiments = settings.resolve_experiments(settings.with_defaults(config))
    assert set(experiments) == set(config["experiments"])


def test_schema_defaults_are_the_demo_defaults():
    """One set of defaults: an experiment of config.yaml with no keys of its own is the schema's default
    experiment, and `txtrayalign train` resolves the same training settings from an empty JSON."""
    from txtrayalign import settings
    from txtrayalign.train.config import resolve

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    schema_default = settings.resolve_experiment({})
    assert settings.merge(schema_default, config["defaults"]) == schema_default
    assert resolve({}) == settings.training_settings(schema_default)
    assert schema_default["train"]["epochs"] == config["defaults"]["train"]["epochs"]


def test_dry_run_plans_every_stage(tmp_path):
    res = _dry_run(tmp_path)
    assert res.returncode == 0, res.stderr
    for rule in ("synth", "index_dataset", "images", "merge_images", "sections", "label", "split",
                 "train", "embed", "evaluate_experiment", "summarize"):
        assert f"rule {rule}:" in res.stdout + res.stderr, rule


def test_lint_is_clean():
    res = _snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations" in res.stdout + res.stderr


@pytest.mark.parametrize(
    "override, named",
    [
        ("images={'sise': 128}", "sise"),
        ("images={'size': 'big'}", "size"),
        ("labels={'source': 'magic'}", "source"),
    ],
)
def test_bad_config_key_is_a_clear_error_naming_the_key(tmp_path, override, named):
    res = _dry_run(tmp_path, "--config", override)
    assert res.returncode != 0
    assert named in res.stdout + res.stderr


@pytest.mark.parametrize(
    "experiment, named",
    [
        ({"train": {"epoch": 3}}, "unknown key 'experiments.typo.train.epoch'"),
        ({"train": {"learning_rate": 0.1}}, "unknown key 'experiments.typo.train.learning_rate'"),
        ({"train": {"epochs": "three"}}, "'experiments.typo.train.epochs' = 'three'"),
        ({"evaluation": {"k": [0]}}, "'experiments.typo.evaluation.k.0' = 0"),
    ],
)
def test_bad_experiment_key_is_named_with_its_full_path(tmp_path, experiment, named):
    path = _config_with_experiments(tmp_path, {"typo": experiment})
    res = _dry_run(tmp_path, configfile=path)
    assert res.returncode != 0
    assert named in res.stdout + res.stderr
    assert "is not valid under any of the given schemas" not in res.stdout + res.stderr


def test_subset_must_exist(tmp_path):
    path = _config_with_experiments(tmp_path, {"x": {"subset": "nope"}})
    res = _dry_run(tmp_path, configfile=path)
    assert res.returncode != 0
    assert "experiments.x.subset" in res.stdout + res.stderr
