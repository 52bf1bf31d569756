"""Rerun semantics a user can trust, proven on the real workflow with a tiny demo configuration.

One full run builds everything once; each test then asks Snakemake (dry run) what a change would
rerun and compares with what must rerun, no more and no less.
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from workflow_helpers import ROOT, planned_jobs, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("rerun")
    cfg = tiny_config(experiments=2)
    path = write_config(cfg, work)
    res = snakemake(work, "--cores", "2", "evaluate", config=path)
    assert res.returncode == 0, res.stderr[-5000:]
    assert (work / "results/tiny/eval/summary.md").is_file()
    return work, cfg


def _dry_run(work, cfg, env=None) -> Counter:
    path = write_config(cfg, work)
    res = snakemake(work, "-n", "--cores", "2", "evaluate", config=path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return planned_jobs(res)


def _copy(cfg):
    import copy

    return copy.deepcopy(cfg)


def test_nothing_changed_nothing_runs(built):
    work, cfg = built
    assert _dry_run(work, cfg) == Counter()


def test_evaluation_setting_reruns_only_evaluation(built):
    work, cfg = built
    changed = _copy(cfg)
    changed["defaults"]["evaluation"]["bootstrap"] = 60
    assert _dry_run(work, changed) == Counter(evaluate_experiment=2, summarize=1, evaluate=1)
    changed["defaults"]["evaluation"]["k"] = [1, 2, 3]
    assert _dry_run(work, changed) == Counter(evaluate_experiment=2, summarize=1, evaluate=1)


def test_one_experiments_learning_rate_reruns_only_that_experiment(built):
    work, cfg = built
    changed = _copy(cfg)
    lr = cfg["defaults"]["train"]["lr_image"]
    changed["experiments"]["exp1"] = {"train": {"lr_image": lr * 1.5}}
    path = write_config(changed, work)
    res = snakemake(work, "-n", "--cores", "2", "evaluate", config=path)
    jobs = planned_jobs(res)
    assert jobs == Counter(train=1, embed=1, evaluate_experiment=1, summarize=1, evaluate=1)
    assert "models/exp1/best.pt" in res.stdout and "models/exp0/best.pt" not in res.stdout


def test_image_size_reruns_images_and_everything_downstream(built):
    work, cfg = built
    changed = _copy(cfg)
    changed["images"]["size"] = 40
    assert _dry_run(work, changed) == Counter(
        images=10, merge_images=1, train=2, embed=2, evaluate_experiment=2, summarize=1, evaluate=1
    )


def test_labeller_code_change_reruns_labelling_and_what_depends_on_it(built, tmp_path):
    """Snakemake imports the package beside the Snakefile: a copy of the checkout stands for an edit."""
    work, cfg = built
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for part in ("Snakefile", "workflow", "txtrayalign", "profiles", "envs", "config"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, checkout / part)
    snakefile = checkout / "Snakefile"
    env = {"PYTHONPATH": str(checkout)}
    path = write_config(cfg, work)

    def dry_run():
        res = snakemake(work, "-n", "--cores", "2", "evaluate", config=path, env=env, snakefile=snakefile)
        assert res.returncode == 0, res.stderr[-3000:]
        return planned_jobs(res)

    assert dry_run() == Counter(), "a copy of the same code must change nothing"
    phrases = checkout / "txtrayalign" / "chexpert" / "phrases" / "observations.yaml"
    phrases.write_text(phrases.read_text() + "\n# a new comment\n")
    assert dry_run() == Counter(label=1, evaluate_experiment=2, summarize=1, evaluate=1)
