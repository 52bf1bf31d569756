"""A minimal configuration runs: every key of config/config.yaml may be left out (its schema default
applies) or, where it has none, the dry run stops with one `config: ...` line naming it, never a
traceback. Also a YAML mistake names its file and line."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from tests.workflow_helpers import ROOT, snakemake, write_config
from txtrayalign import settings, sweeps

DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def key_paths(node, prefix=()) -> list[tuple[str, ...]]:
    """Every key of a nested mapping, as paths, parents before their children."""
    out = []
    for key, value in node.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += key_paths(value, (*prefix, key))
    return out


def without(cfg: dict, path: tuple[str, ...]) -> dict:
    cut = copy.deepcopy(cfg)
    parent = cut
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return cut


def load(cfg: dict) -> tuple[dict, dict]:
    """What workflow/rules/common.smk does with a configuration: the filled config and the experiments."""
    given = settings.without_empty_sections(cfg)
    settings.check_config(given)
    filled = settings.with_defaults(given)
    experiments = settings.resolve_experiments(filled)
    sweeps.plan_sweeps(filled)  # workflow/rules/sweep_plan.smk: at least one experiment or sweep
    return filled, experiments


def workflow_paths(filled: dict) -> set[tuple[str, ...]]:
    """The keys of the workflow's settings (the experiments' are resolved apart)."""
    return {p for p in key_paths(filled) if p[0] not in ("defaults", "experiments")}


FULL, FULL_EXPERIMENTS = load(DEMO)
# keys whose value the user gives: names of things, not settings with a default
NAMES = {("experiments", "demo-cnn-bert"), ("splits", "subsets", "full")}


@pytest.mark.parametrize("path", [p for p in key_paths(DEMO) if p not in NAMES], ids=".".join)
def test_each_key_may_be_left_out_or_is_named(path):
    """Without the key the settings load with every key the Snakefile reads still there (the schema's
    default), or they stop with one error naming exactly that key."""
    try:
        filled, experiments = load(without(DEMO, path))
    except settings.ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("config: ")
        key = ".".join(path)
        assert f"'{key}' is missing" in message or message.startswith(f"config: {key}: "), message
        return
    assert workflow_paths(filled) >= workflow_paths(FULL), workflow_paths(FULL) - workflow_paths(filled)
    # every experiment still has every key (schema defaults under the defaults)
    for name, exp in experiments.items():
        assert set(key_paths(exp)) == set(key_paths(FULL_EXPERIMENTS["demo-cnn-bert"])), name


def test_only_dataset_and_experiments_are_required():
    filled, experiments = load({"dataset": {"name": "mine", "root": "/data", "format": "table",
                                            "table": {"file": "pairs.csv"}}, "experiments": {"scratch": {}}})
    assert filled["images"]["size"] == 256 and filled["splits"]["subsets"] == {"full": 1.0}
    assert settings.train_section(filled["text"], filled["dataset"]) == "auto"
    assert settings.max_empty_share(filled["text"], filled["dataset"]) == 0.05
    assert experiments["scratch"]["subset"] == "full"
    with pytest.raises(settings.ConfigError, match=r"^config: 'dataset.root' is missing; it has no default"):
        load({"dataset": {"name": "mine"}, "experiments": {"scratch": {}}})


def test_defaults_by_format_and_a_subset_map_replaces_the_default_whole():
    mimic = {"format": "auto"}
    text = settings.with_defaults({"dataset": {"name": "d", "root": "r"}})["text"]
    assert settings.train_section(text, mimic) == "impression" and settings.max_empty_share(text, mimic) == 0.25
    assert settings.train_section(text, {"format": "openi"}) == "auto"
    assert settings.train_section({**text, "train_section": "report"}, {"format": "openi"}) == "report"
    assert settings.max_empty_share({**text, "train_section": "auto"}, mimic) == 0.05
    assert settings.max_empty_share({**text, "max_empty_share": 0.5}, mimic) == 0.5
    filled = settings.with_defaults({"splits": {"subsets": {"half": 0.5}}, "images": None})
    assert filled["splits"] == {"subsets": {"half": 0.5}, "seed": 0}
    with pytest.raises(settings.ConfigError, match=r"experiments.a.subset = 'full' is not one of splits.subsets \(half\)"):
        load({"dataset": {"name": "d", "root": "r"}, "splits": {"subsets": {"half": 0.5}}, "experiments": {"a": {}}})


def test_an_empty_section_means_its_defaults():
    """`images:` with every key commented out is YAML null: the section's defaults, not an error."""
    cfg = copy.deepcopy(DEMO)
    cfg["images"] = None
    filled, _ = load(cfg)
    assert filled["images"]["size"] == 256


@pytest.mark.parametrize("text, where", [
    ("dataset:\n  name: x\n root: data\n", "line 3, column 2"),
    ("dataset: {name: x\nexperiments: {a: {}}\n", "line 2, column 12"),
    ("dataset:\n\tname: x\n", "line 2, column 1"),
])
def test_a_yaml_mistake_names_the_file_and_line(tmp_path, where, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(settings.ConfigError) as caught:
        settings.load_config_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML: {where}: ") and "\n" not in message


# --------------------------------------------------------------------------- the real dry run


def _config_lines(result) -> list[str]:
    err = result.stdout + result.stderr
    assert "Traceback" not in err and 'File "' not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("config:")]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder for the dry runs: the stages' code fingerprints are scanned once and kept there."""
    return tmp_path_factory.mktemp("minimal")


@pytest.mark.workflow
@pytest.mark.parametrize("section", list(DEMO), ids=str)
def test_the_dry_run_without_a_section(work, section):
    """snakemake -n with one top-level section of config/config.yaml deleted: it plans the run, or says
    in one line which section must be given."""
    result = snakemake(work, "-n", "--cores", "1", "evaluate", config=write_config(without(DEMO, (section,)), work))
    lines = _config_lines(result)
    if section == "dataset":
        assert result.returncode != 0 and lines == ["config: 'dataset' is missing; it has no default and must be given"]
    elif section == "experiments":  # nor a sweep
        assert result.returncode != 0 and lines == ["config: experiments: give at least one experiment (or a sweep "
                                                    "under sweeps)"]
    else:
        assert result.returncode == 0 and not lines, result.stderr[-3000:]
        assert "This was a dry-run" in result.stdout


@pytest.mark.workflow
def test_the_dry_run_names_a_yaml_mistake_in_the_workflow_config_file(tmp_path):
    """The Snakefile's own config/config.yaml with a YAML mistake: one line naming the file and line
    (a copy of the workflow, so that the real file stays whole). A `--config` value that is not YAML
    is one line too."""
    for name in ("Snakefile", "workflow", "config", "profiles"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    cfg = tmp_path / "config" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("\nresults: results", "\nresults: [results"))
    result = snakemake(tmp_path, "-n", snakefile=tmp_path / "Snakefile")
    lines = _config_lines(result)
    assert result.returncode != 0 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("config: config/config.yaml: not valid YAML: line ")
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    result = snakemake(tmp_path, "-n", "--config", "dataset={root: [data", snakefile=tmp_path / "Snakefile")
    lines = _config_lines(result)
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("config: --config dataset={root: [data: not valid YAML")


def test_check_config_reads_files_in_order_and_names_a_yaml_mistake(tmp_path, capsys):
    """`txtrayalign check-config`: what Snakemake says only as "not valid JSON or YAML" for a
    --configfile, with the file, line and column; valid files (later ones update earlier ones) pass."""
    from txtrayalign.cli import main

    (tmp_path / "a.yaml").write_text("dataset: {name: mine, root: /data, format: table, table: {file: p.csv}}\n")
    (tmp_path / "b.yaml").write_text("experiments:\n  scratch: {}\n")
    assert main(["check-config", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 0
    assert capsys.readouterr().out.strip().endswith("valid; experiments: scratch")
    (tmp_path / "bad.yaml").write_text("experiments:\n  scratch: {}\n train: 1\n")
    assert main(["check-config", str(tmp_path / "a.yaml"), str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"txtrayalign check-config: error: {tmp_path / 'bad.yaml'}: not valid "
                                               "YAML: line 3, column 2: ")
    (tmp_path / "typo.yaml").write_text("images: {sise: 128}\n")
    assert main(["check-config", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), str(tmp_path / "typo.yaml")]) == 2
    assert "unknown key 'images.sise'" in capsys.readouterr().err
