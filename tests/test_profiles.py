"""The Snakemake profiles of profiles/: valid options, the right layering, and their effect."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Settings that describe a machine. profiles/default is the workflow profile, which Snakemake applies
# to every run and lets win over --profile key by key: any of these there would silently replace a
# cluster profile's value (e.g. `resources: gpu=1` would allow one GPU job at a time on a cluster).
MACHINE_KEYS = {
    "cores",
    "jobs",
    "resources",
    "executor",
    "latency-wait",
    "default-resources",
    "set-resources",
    "local-cores",
    "keep-going",
    "max-jobs-per-timespan",
    "software-deployment-method",
    "set-threads",
}


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def test_the_profiles_exist() -> None:
    assert {"default", "workstation", "slurm"} <= {p.name for p in PROFILES.iterdir() if p.is_dir()}


@pytest.mark.parametrize("name", ["default", "workstation", "slurm"])
def test_every_profile_key_is_a_snakemake_option(name: str) -> None:
    from snakemake.cli import get_argument_parser

    options = {s for action in get_argument_parser()._actions for s in action.option_strings}
    unknown = [key for key in profile(name) if f"--{key}" not in options]
    assert not unknown, f"profiles/{name}: not Snakemake options: {unknown}"


def test_workflow_profile_holds_no_machine_settings() -> None:
    keys = set(profile("default"))
    assert keys, "profiles/default is empty"
    assert not keys & MACHINE_KEYS, f"profiles/default sets machine settings {sorted(keys & MACHINE_KEYS)}"
    assert profile("default")["rerun-incomplete"] is True


def test_slurm_profile_site_settings() -> None:
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(slurm["default-resources"])
    # left to the user: an account is checked against the accounting database when set
    assert "slurm_account" not in slurm["default-resources"]
    assert slurm["slurm-status-command"] in {"sacct", "squeue"}


GPU_RULES = textwrap.dedent(
    """
    rule all:
        input: "a.txt", "b.txt", "c.txt"

    rule gpu_job:
        output: "{name}.txt"
        wildcard_constraints: name="a|b"
        resources: gpu=1
        shell: "date +%s.%N > {output}; sleep 1.5; date +%s.%N >> {output}"

    rule cpu_job:
        output: "c.txt"
        shell: "date +%s.%N > {output}; sleep 1.5; date +%s.%N >> {output}"
    """
)


def interval(path: Path) -> tuple[float, float]:
    start, end = (float(x) for x in path.read_text().split())
    return start, end


@pytest.mark.workflow
def test_workstation_profile_runs_gpu_jobs_one_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(GPU_RULES)
    res = subprocess.run(
        [*SNAKEMAKE, "--profile", str(PROFILES / "workstation"), "--cores", "3", "all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (a0, a1), (b0, b1), (c0, c1) = (interval(tmp_path / f"{n}.txt") for n in "abc")
    assert a1 <= b0 or b1 <= a0, "the two gpu=1 jobs overlapped"
    assert any(c0 < end and start < c1 for start, end in ((a0, a1), (b0, b1))), "the CPU job ran alone"


@pytest.mark.workflow
def test_slurm_profile_is_accepted_by_snakemake(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(GPU_RULES)
    res = subprocess.run(
        [*SNAKEMAKE, "--profile", str(PROFILES / "slurm"), "--dry-run", "all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "gpu_job" in res.stdout + res.stderr
