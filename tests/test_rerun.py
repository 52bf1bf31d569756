"""Rerun semantics a user can trust, proven on the real workflow with a tiny demo configuration.

One full run builds everything once per test process (the `base` fixture); it is never changed. The
tests come in groups, each working on its own faithful copy of it (outputs, `.snakemake/`
metadata and mtimes; a dry run on the copy plans nothing), so that pytest-xdist can run the groups
side by side. The dry-run tests ask Snakemake what a change would rerun. The scenario tests then make
each change for real, in order, on their group's copy, and check both which jobs ran and what they
produced: the model's weights differ after a change of the training data, embeddings and metrics
follow, and an evaluation-only change leaves best.pt untouched (same bytes, same mtime). Every
scenario ends with a dry run that plans nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from filelock import FileLock
from workflow_helpers import ROOT, planned_jobs, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

EXPS = ("exp0", "exp1")
DOWNSTREAM_OF_TRAIN = Counter(train=2, embed=2, embed_bank=2, embed_validation=2, evaluate_experiment=2, summarize=1,
                              evaluate=1)  # embed_validation: the subgroup thresholds


@dataclass
class Pipeline:
    """The work folder, the configuration it was last built with, and the checkout that built it."""

    work: Path
    cfg: dict
    snakefile: Path = ROOT / "Snakefile"
    env: dict = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.work / "results" / "tiny"

    def run(self, *args: str, cfg: dict | None = None):
        path = write_config(cfg if cfg is not None else self.cfg, self.work)
        return snakemake(self.work, *args, "--cores", "2", "evaluate", config=path, env=self.env or None,
                         snakefile=self.snakefile)

    def dry_run(self, cfg: dict | None = None) -> Counter:
        res = self.run("-n", cfg=cfg)
        assert res.returncode == 0, res.stderr[-3000:]
        return planned_jobs(res)

    def apply(self, cfg: dict) -> tuple[Counter, dict[str, str]]:
        """Run the workflow with `cfg` for real; returns the jobs that ran and each train log."""
        for log in (self.results / "logs" / "train").glob("*.log"):
            log.unlink()
        res = self.run(cfg=cfg)
        assert res.returncode == 0, res.stderr[-5000:]
        self.cfg = cfg
        assert self.dry_run() == Counter(), "after the run, nothing is left to do"
        logs = {p.stem: p.read_text() for p in (self.results / "logs" / "train").glob("*.log")}
        return planned_jobs(res), logs


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(p: Pipeline) -> dict:
    """What the pipeline produced: per experiment the model file, its weights, embeddings and metrics."""
    r, snap = p.results, {}
    for exp in EXPS:
        best = r / "models" / exp / "best.pt"
        with h5py.File(r / "embeddings" / exp / "queries.h5", "r") as f:
            queries = np.asarray(f["embeddings"][()])
        snap[exp] = {
            "best_bytes": _digest(best), "best_mtime": best.stat().st_mtime_ns,
            "weights": torch.load(best, map_location="cpu", weights_only=True)["model"],
            "queries": queries, "metrics": json.loads((r / "eval" / exp / "metrics.json").read_text()),
        }
    for name in ("labels/reports.parquet", "labels/sentences.parquet", "text/sections.parquet",
                 "splits/full.parquet", "index/images.parquet"):
        snap[name] = _digest(r / name)
    return snap


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_model_retrained(before: dict, after: dict, logs: dict, reason: str) -> None:
    for exp in EXPS:
        assert reason in logs[exp], logs[exp][-2000:]
        assert "starting over" in logs[exp] and "nothing to do" not in logs[exp]
        assert not same_weights(before[exp]["weights"], after[exp]["weights"]), f"{exp}: weights unchanged"
        assert not np.array_equal(before[exp]["queries"], after[exp]["queries"]), f"{exp}: embeddings unchanged"
        assert before[exp]["metrics"] != after[exp]["metrics"], f"{exp}: metrics unchanged"


def assert_model_untouched(before: dict, after: dict) -> None:
    for exp in EXPS:
        assert after[exp]["best_bytes"] == before[exp]["best_bytes"], exp
        assert after[exp]["best_mtime"] == before[exp]["best_mtime"], exp
        assert np.array_equal(before[exp]["queries"], after[exp]["queries"]), exp


def copy_of(base: Pipeline, work: Path) -> Pipeline:
    """A faithful copy of a finished run (file contents, mtimes, Snakemake's metadata) that plans nothing."""
    shutil.copytree(base.work, work, symlinks=True, copy_function=shutil.copy2)
    p = Pipeline(work, copy.deepcopy(base.cfg))
    assert p.dry_run() == Counter(), "a copy of a finished run has nothing left to do"
    return p


@pytest.fixture(scope="session")
def base(tmp_path_factory, worker_id) -> Pipeline:
    """The full run every group of tests starts from; tests work on copies (`copy_of`), never on it.

    Under pytest-xdist the workers share it: the first to get here builds it (on all cores) while the
    others wait for the lock, instead of each building its own beside the others."""
    p = Pipeline(Path(), tiny_config(experiments=2))
    if worker_id == "master":  # one process: its own temporary folder
        p.work = tmp_path_factory.mktemp("rerun-base")
        return build(p)
    shared = tmp_path_factory.getbasetemp().parent  # this session's folder, above each worker's own
    p.work, done = shared / "rerun-base", shared / "rerun-base.done"
    with FileLock(shared / "rerun-base.lock"):
        if not done.exists():
            if p.work.exists():
                pytest.fail(f"the base run in {p.work} failed in another worker (see its error)")
            p.work.mkdir()
            build(p)
            done.touch()
    return p


def build(p: Pipeline) -> Pipeline:
    res = p.run()
    assert res.returncode == 0, res.stderr[-5000:]
    assert (p.results / "eval" / "summary.md").is_file()
    return p


@pytest.fixture(scope="module")
def pipeline(base, tmp_path_factory) -> Pipeline:
    return copy_of(base, tmp_path_factory.mktemp("rerun") / "work")


def own_copy(name: str):
    """A group's `pipeline` fixture: its own copy of the base run, for the group's tests in order (a
    class is its own pytest-xdist work unit, so groups run side by side)."""

    @pytest.fixture(scope="class")
    @classmethod
    def pipeline(cls, base, tmp_path_factory) -> Pipeline:
        return copy_of(base, tmp_path_factory.mktemp(name) / "work")

    return pipeline


# ------------------------------------------------------------------ what a change would rerun (dry runs)


def test_nothing_changed_nothing_runs(pipeline):
    assert pipeline.dry_run() == Counter()


def test_one_experiments_learning_rate_reruns_only_that_experiment(pipeline):
    changed = copy.deepcopy(pipeline.cfg)
    lr = changed["defaults"]["train"]["lr_image"]
    changed["experiments"]["exp1"] = {"train": {"lr_image": lr * 1.5}}
    res = pipeline.run("-n", cfg=changed)
    assert planned_jobs(res) == Counter(train=1, embed=1, embed_bank=1, embed_validation=1, evaluate_experiment=1,
                                        summarize=1, evaluate=1)
    # the jobs' outputs (the evaluate target's input list names every file of the run)
    outputs = " ".join(line for line in res.stdout.splitlines() if line.strip().startswith("output:"))
    assert "models/exp1/best.pt" in outputs and "models/exp0/best.pt" not in outputs


def test_gpus_reach_the_train_command(pipeline):
    """`gpus` is an experiment key of the one schema: the train command gets it, torchrun launches it."""
    changed = copy.deepcopy(pipeline.cfg)
    changed["experiments"]["exp1"] = {"gpus": 2}
    res = pipeline.run("-n", "-p", cfg=changed)
    assert res.returncode == 0, res.stderr[-3000:]
    train_cmds = [line for line in res.stdout.splitlines() if " train --experiment-json" in line]
    assert len(train_cmds) == 1 and "torchrun --standalone --nproc_per_node 2" in train_cmds[0]
    assert '"gpus": 2' in train_cmds[0] and '"name": "exp1"' in train_cmds[0]


def test_every_table_the_stages_write_has_its_declared_columns(pipeline):
    """txtrayalign.tables is the contract: each parquet file of the run reads back as its kind."""
    from txtrayalign.tables import COLUMNS, read_table

    r = pipeline.results
    files = {"index_images": "index/images.parquet", "index_studies": "index/studies.parquet",
             "index_problems": "index/problems.parquet", "image_shard_index": "images/48/index.parquet",
             "image_skipped": "images/48/skipped.parquet", "sections": "text/sections.parquet",
             "sentences": "text/sentences.parquet", "text_problems": "text/problems.parquet",
             "report_labels": "labels/reports.parquet", "sentence_labels": "labels/sentences.parquet",
             "split": "splits/full.parquet", "predictions": "eval/exp0/predictions.parquet"}
    assert set(files) == set(COLUMNS)
    for kind, name in files.items():
        assert len(read_table(r / name, kind).columns) >= len(COLUMNS[kind]), kind


# ------------------------------------------------------------------ changes made for real, in this order


def test_evaluation_setting_reruns_only_evaluation_and_keeps_the_model(pipeline):
    before = snapshot(pipeline)
    changed = copy.deepcopy(pipeline.cfg)
    changed["defaults"]["evaluation"]["bootstrap"] = 60
    jobs, _ = pipeline.apply(changed)
    assert jobs == Counter(evaluate_experiment=2, summarize=1, evaluate=1)
    after = snapshot(pipeline)
    assert_model_untouched(before, after)
    for exp in EXPS:
        assert after[exp]["metrics"] != before[exp]["metrics"], "other bootstrap draws, other intervals"


def test_train_section_retrains_on_the_new_text(pipeline):
    """The issue's reproduction: text.train_section impression -> findings retrains (best.pt differs)."""
    before = snapshot(pipeline)
    changed = copy.deepcopy(pipeline.cfg)
    changed["text"]["train_section"] = "findings"
    # the tiny data has studies without a findings section: past the default share, `sections` would
    # stop (text.max_empty_share, tested in test_sections); here only the rerun is under test
    changed["text"]["max_empty_share"] = 1.0
    jobs, logs = pipeline.apply(changed)
    assert jobs == Counter(sections=1, label=1) + DOWNSTREAM_OF_TRAIN
    after = snapshot(pipeline)
    assert after["text/sections.parquet"] != before["text/sections.parquet"]
    assert_model_retrained(before, after, logs, "the inputs differ (sections)")
    for exp in EXPS:
        assert after[exp]["best_bytes"] != before[exp]["best_bytes"]


class TestImageChange:
    """Its own xdist work unit on its own copy: the longest scenario beside the text one, not after it."""

    pipeline = own_copy("rerun-images")

    def test_image_size_retrains_on_the_new_images(self, pipeline):
        before = snapshot(pipeline)
        changed = copy.deepcopy(pipeline.cfg)
        changed["images"]["size"] = 40
        jobs, logs = pipeline.apply(changed)
        assert jobs == Counter(images=10, merge_images=1) + DOWNSTREAM_OF_TRAIN
        assert_model_retrained(before, snapshot(pipeline), logs, "the inputs differ (images)")


class TestSplitAndCodeChanges:
    """The second group (its own xdist work unit): its own copy of the base run, changed in this order."""

    pipeline = own_copy("rerun-code")

    def test_subset_fraction_retrains_on_fewer_patients(self, pipeline):
        before = snapshot(pipeline)
        changed = copy.deepcopy(pipeline.cfg)
        changed["splits"]["subsets"]["full"] = 0.6
        jobs, logs = pipeline.apply(changed)
        assert jobs == Counter(split=1) + DOWNSTREAM_OF_TRAIN
        after = snapshot(pipeline)
        assert after["splits/full.parquet"] != before["splits/full.parquet"]
        assert_model_retrained(before, after, logs, "the inputs differ (split)")

    @pytest.fixture(scope="class")
    @classmethod
    def checkout(cls, pipeline, tmp_path_factory) -> Path:
        """A copy of the checkout that the next scenarios edit: Snakemake and the jobs import it."""
        root = tmp_path_factory.mktemp("checkout")
        for part in ("Snakefile", "workflow", "txtrayalign", "profiles", "envs", "config"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, root / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / part)
        pipeline.snakefile, pipeline.env = root / "Snakefile", {"PYTHONPATH": str(root)}
        assert pipeline.dry_run() == Counter(), "a copy of the same code must change nothing"
        return root

    def test_labeller_phrase_relabels_and_reevaluates_but_keeps_the_model(self, pipeline, checkout):
        before = snapshot(pipeline)
        phrases = checkout / "txtrayalign" / "chexpert" / "phrases" / "observations.yaml"
        text = phrases.read_text()
        assert "  Fracture:\n    mention:\n" in text
        # words of many impressions and findings become Fracture mentions: report and sentence labels change
        extra = "".join(f"      - {word}\n" for word in ("acute", "cardiopulmonary", "normal", "heart", "spine"))
        phrases.write_text(text.replace("  Fracture:\n    mention:\n", "  Fracture:\n    mention:\n" + extra))
        jobs, logs = pipeline.apply(pipeline.cfg)
        # embedding does not rerun (its command, evaluate/embed_cli.py, imports no labeller; the
        # embeddings stay as they were, checked below), and training does not run at all
        assert jobs == Counter(label=1, evaluate_experiment=2, summarize=1, evaluate=1)
        assert logs == {}
        after = snapshot(pipeline)
        assert after["labels/reports.parquet"] != before["labels/reports.parquet"]
        assert after["labels/sentences.parquet"] != before["labels/sentences.parquet"]
        assert_model_untouched(before, after)
        for exp in EXPS:
            assert after[exp]["metrics"] != before[exp]["metrics"], "new labels, new scores"

    def test_constants_change_reruns_its_importers_and_retrains_to_the_same_weights(self, pipeline, checkout):
        """constants.py is in the import closure of synth, index, split, label, train (through tables.py) and
        evaluate: they rerun, and so does everything after them. Training starts over because its code
        changed; the data comes out identical, so the retrained weights, embeddings and metrics are
        bit-identical (CPU training is deterministic)."""
        before = snapshot(pipeline)
        constants = checkout / "txtrayalign" / "constants.py"
        constants.write_text(constants.read_text() + "\n# an edit that changes nothing computed\n")
        jobs, logs = pipeline.apply(pipeline.cfg)
        assert jobs == Counter(synth=1, index_dataset=1, demographics=1, images=10, merge_images=1, sections=1, label=1,
                               split=1) + DOWNSTREAM_OF_TRAIN
        after = snapshot(pipeline)
        for name in ("text/sections.parquet", "splits/full.parquet", "labels/reports.parquet"):
            assert after[name] == before[name], name
        for exp in EXPS:
            assert "cannot be continued: the training code differs; starting over" in logs[exp], logs[exp][-2000:]
            assert same_weights(before[exp]["weights"], after[exp]["weights"]), exp
            assert np.array_equal(before[exp]["queries"], after[exp]["queries"]), exp
            assert after[exp]["metrics"] == before[exp]["metrics"], exp


class TestDeletedAndDamagedFiles:
    """Issue 27's first two cases on a third copy of the base run: a file deleted by hand or removed by
    Snakemake after a failed job is rebuilt by the same command (before: "Nothing to be done" under the
    existing summary), and a damaged one is named by the job that reads it, then healed."""

    pipeline = own_copy("rerun-damage")

    @pytest.mark.parametrize("name, planned", [
        ("eval/exp0/metrics.json", Counter(evaluate_experiment=1)),
        ("embeddings/exp0/queries.h5", Counter(embed=1, evaluate_experiment=1)),
        ("models/exp0/best.pt", Counter(train=1, embed=1, embed_bank=1, embed_validation=1, evaluate_experiment=1)),
        ("labels/reports.parquet", Counter(label=1, evaluate_experiment=2)),
        ("images/48/p13.h5", Counter(images=1, merge_images=1, train=2, embed=2, embed_bank=2, embed_validation=2,
                                     evaluate_experiment=2)),
    ])
    def test_a_deleted_file_is_planned_with_what_follows(self, pipeline, name, planned):
        path = pipeline.results / name
        aside = path.with_name(path.name + ".aside")
        path.rename(aside)
        try:
            assert pipeline.dry_run() == planned + Counter(summarize=1, evaluate=1)
        finally:
            aside.rename(path)
        assert pipeline.dry_run() == Counter()

    def test_the_readme_stage_targets_run_and_rebuild_what_they_cover(self, pipeline):
        """`snakemake index` (a README example) failed: "Target rules may not contain wildcards"."""
        config = pipeline.work / "config.yaml"
        for target in ("index", "images_all", "labels", "train_all"):
            res = snakemake(pipeline.work, "--cores", "2", "-n", target, config=config)
            assert res.returncode == 0 and planned_jobs(res) == Counter(), (target, res.stderr[-2000:])
        studies = pipeline.results / "index" / "studies.parquet"
        studies.rename(studies.with_name("aside"))
        try:
            res = snakemake(pipeline.work, "--cores", "2", "-n", "index", config=config)
            assert planned_jobs(res) == Counter(index_dataset=1, index=1), res.stdout[-2000:]
        finally:
            studies.with_name("aside").rename(studies)

    def test_damaged_labels_and_model_are_named_then_rebuilt_by_the_same_command(self, pipeline):
        r = pipeline.results
        before = snapshot(pipeline)
        for name in ("labels/reports.parquet", "models/exp1/best.pt"):
            data = (r / name).read_bytes()
            (r / name).write_bytes(data[: len(data) // 3])  # cut short in place (a full disk, a killed copy)
        failed = pipeline.run("--keep-going")  # every job that can fail does, each saying why
        text = failed.stdout + failed.stderr
        assert failed.returncode != 0
        assert "exp1/best.pt is not a readable checkpoint" in text and "delete it and rerun" in text
        assert "labels/reports.parquet" in text
        # Snakemake removed the failed jobs' outputs; the summary still exists, but is not taken as current
        assert not (r / "eval" / "exp0" / "metrics.json").exists() and (r / "eval" / "summary.md").exists()
        assert pipeline.dry_run()["evaluate_experiment"] == 2
        # the way out the messages give: delete the damaged files, run the same command
        (r / "labels" / "reports.parquet").unlink()
        (r / "models" / "exp1" / "best.pt").unlink()
        jobs, logs = pipeline.apply(pipeline.cfg)
        assert jobs == Counter(label=1, train=1, embed=1, embed_bank=1, embed_validation=1, evaluate_experiment=2,
                               summarize=1, evaluate=1)
        assert "restored from its copy .best.pt" in logs["exp1"] and "starting over" not in logs["exp1"]
        after = snapshot(pipeline)
        assert after["labels/reports.parquet"] == before["labels/reports.parquet"]
        for exp in EXPS:
            assert same_weights(before[exp]["weights"], after[exp]["weights"]), exp
            assert after[exp]["metrics"] == before[exp]["metrics"], exp

    def test_a_stale_lock_after_kill_9_is_named_with_its_way_out(self, pipeline):
        """kill -9 leaves Snakemake's lock: the next run says --unlock (as the README does); then it runs."""
        import os
        import signal
        import subprocess
        import sys
        import time

        locks = pipeline.work / ".snakemake" / "locks"
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(pipeline.snakefile), "--directory",
               str(pipeline.work), "--cores", "1", "--forcerun", "summarize", "evaluate", "--configfile",
               str(pipeline.work / "config.yaml")]
        proc = subprocess.Popen(cmd, cwd=pipeline.work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 300
        while not any(locks.glob("*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert any(locks.glob("*")), "the run was killed while it held its lock"
        locked = pipeline.run()
        assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
        assert "--unlock" in (ROOT / "README.md").read_text()
        assert pipeline.run("--unlock").returncode == 0
        res = pipeline.run()
        assert res.returncode == 0, res.stderr[-3000:]
        assert pipeline.dry_run() == Counter()
