"""Every path in every rule is quoted: the whole workflow runs with a work folder, a results folder and a
dataset root whose names hold spaces and non-ASCII letters (before: `synth` failed with
"unrecognized arguments", and `> {log}` wrote a stray file outside the workspace)."""

from __future__ import annotations

import pytest
from workflow_helpers import planned_jobs, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_the_workflow_runs_under_names_with_spaces_and_accents(tmp_path):
    work = tmp_path / "étude pilote ü"
    work.mkdir()
    cfg = tiny_config(experiments=1)
    cfg["results"] = str(work / "résultats d'essai")  # an apostrophe too: quoting, not just spaces
    cfg["dataset"]["root"] = "données brutes/cxr ñ"
    config = write_config(cfg, work)
    res = snakemake(work, "--cores", "2", "evaluate", config=config)
    errors = [line for line in (res.stdout + res.stderr).splitlines() if "rror" in line]
    assert res.returncode == 0, "\n".join(errors[-20:]) + (res.stdout + res.stderr)[-3000:]
    results = work / "résultats d'essai" / "tiny"
    assert (results / "eval" / "summary.md").is_file()
    assert (work / "données brutes" / "cxr ñ" / "cxr-record-list.csv.gz").is_file()
    for log in ("synth/synth.log", "index/index.log", "train/exp0.log", "evaluate/exp0.log"):
        assert (results / "logs" / log).stat().st_size > 0, log
    assert sorted(p.name for p in tmp_path.iterdir()) == [work.name], "nothing written beside the workspace"
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [".snakemake", "config.yaml", "données brutes", "résultats d'essai"])
    assert planned_jobs(snakemake(work, "--cores", "2", "-n", "evaluate", config=config)) == {}
