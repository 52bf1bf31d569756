"""Workflows run through `--profile profiles/slurm` on a real one-node SLURM cluster.

The cluster (tests/slurm_cluster.py) is started once for this module from Debian's slurm-wlm
and munge packages (`bash .ci/install-slurm.sh`); jobs are really submitted with sbatch and
scheduled by slurmctld. These tests run in CI (`CI=true`) or with TXTRAYALIGN_SLURM_TESTS=1, as
root, and skip elsewhere with the reason.

The profile is used as shipped except for what a one-node test cluster needs: fewer jobs,
a short first status check, and `squeue` instead of `sacct` for status (no accounting daemon).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_cluster import SlurmCluster, skip_reason

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

# What the test cluster changes from the shipped profile (see the module docstring).
TEST_CLUSTER_ARGS = [
    "--jobs",
    "12",  # slurmctld queues what the node's CPUs cannot run yet and starts it as soon as one is free
    # (without waiting for Snakemake's next status check)
    "--latency-wait",
    "5",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "20",  # a tiny job ends 10-20 s after submission here (Snakemake starts inside it, beside the other
    # xdist worker); a check that finds nothing finished waits 10 s longer for the next
    "--slurm-keep-successful-logs",
]
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@pytest.fixture(scope="module")
def cluster():
    """The one-node cluster, with four fake GPUs (dummy device files) and at least one CPU per GPU."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with SlurmCluster.started(gpus=4, cpus=4) as running:
        yield running


def run_snakemake(cluster: SlurmCluster, args: list[str], cwd: Path, timeout: float) -> str:
    """Run Snakemake against the cluster; return its log, or fail with it.

    Snakemake waits for running cluster jobs when it gets SIGTERM, so a hung run is killed
    hard (SIGKILL to its whole process group) and its jobs are cancelled through SLURM.
    """
    proc = subprocess.Popen(
        [*SNAKEMAKE, *args],
        cwd=cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the timeout, or the test run being interrupted
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        subprocess.run(["scancel", "--full", "--partition", "debug"], env=cluster.env, timeout=15)
        if isinstance(exc, subprocess.TimeoutExpired):
            pytest.fail(f"snakemake ran past {timeout:.0f}s and was killed\n{out[-6000:]}\n{cluster.logs()}")
        raise
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited with {proc.returncode}\n{out[-8000:]}\n{cluster.logs()}")
    return out


def submitted_jobs(log: str) -> dict[str, str]:
    """SLURM job id -> Snakemake job id, from Snakemake's 'has been submitted' lines."""
    return {slurm: snake for snake, slurm in SUBMITTED.findall(log)}


def scontrol_job(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    ).stdout
    return dict(word.split("=", 1) for word in out.split() if "=" in word)


TWO_RULES = textwrap.dedent(
    """
    rule all:
        input: "gpu.txt"

    rule cpu:
        output: "cpu.txt"
        threads: 1
        resources: mem_mb=100, runtime=2
        shell: "echo $SLURM_JOB_ID > {output}"

    rule gpu:
        input: "cpu.txt"
        output: "gpu.txt"
        threads: 1
        resources: mem_mb=100, runtime=2, gpu=1, gpu_model="testgpu", cpus_per_gpu=1
        shell: "echo $SLURM_JOB_ID > {output}; cat {input} >> {output}"
    """
)


def test_profile_submits_jobs_with_sbatch(cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TWO_RULES)
    log = run_snakemake(
        cluster, ["--profile", str(PROFILE), *TEST_CLUSTER_ARGS, "all"], tmp_path, timeout=180
    )

    gpu_job, cpu_job = (tmp_path / "gpu.txt").read_text().split()
    cpu_job_again = (tmp_path / "cpu.txt").read_text().strip()
    assert cpu_job == cpu_job_again
    # Each rule ran inside its own SLURM job, and those are the jobs Snakemake says it submitted.
    assert cpu_job.isdigit() and gpu_job.isdigit() and cpu_job != gpu_job
    assert set(submitted_jobs(log)) == {cpu_job, gpu_job}, log[-4000:]
    # The GPU rule's resources became a GPU request, the CPU rule's did not; the profile's
    # runtime and the rules' memory reached sbatch.
    gpu_info, cpu_info = scontrol_job(cluster, gpu_job), scontrol_job(cluster, cpu_job)
    assert "gpu:testgpu:1" in gpu_info.get("TresPerJob", ""), gpu_info
    assert "gpu:1" in gpu_info.get("CpusPerTres", ""), gpu_info
    assert "gpu" not in cpu_info.get("TresPerJob", "") + cpu_info.get("TRES", ""), cpu_info
    assert gpu_info["JobState"] == cpu_info["JobState"] == "COMPLETED"
    assert cpu_info["MinMemoryNode"] == "100M"
    assert cpu_info["TimeLimit"] == "00:02:00"
    # sbatch logs went where the profile says (kept here by --slurm-keep-successful-logs).
    logdir = yaml.safe_load((PROFILE / "config.yaml").read_text())["slurm-logdir"]
    assert sorted(p.name for p in (tmp_path / logdir).rglob("*.log")) == sorted(
        [f"{cpu_job}.log", f"{gpu_job}.log"]
    )

    # Exact rerun semantics: a second run with nothing changed submits nothing.
    again = run_snakemake(
        cluster, ["--profile", str(PROFILE), *TEST_CLUSTER_ARGS, "all"], tmp_path, timeout=60
    )
    assert submitted_jobs(again) == {}
    assert "Nothing to be done" in again


RULE_JOB = re.compile(r"^(local)?rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)$", re.M)


def missing_stage_modules() -> list[str]:
    """The modules behind the CLI's subcommands whose source does not exist yet (nothing imported)."""
    from txtrayalign.cli import COMMANDS

    missing = []
    for module, *_ in COMMANDS.values():
        rel = Path(*module.split("."))
        exists = (ROOT / rel.with_suffix(".py")).is_file() or (ROOT / rel / "__init__.py").is_file()
        if not exists and module not in missing:
            missing.append(module)
    return missing


MISSING = missing_stage_modules()


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"the workflow cannot run yet: missing {', '.join(MISSING)}")
def test_real_workflow_runs_through_the_slurm_profile(cluster: SlurmCluster, tmp_path: Path) -> None:
    from workflow_helpers import tiny_config, write_config

    cfg = tiny_config(experiments=1)
    config = write_config(cfg, tmp_path)
    log = run_snakemake(
        cluster,
        [
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config),
            "--profile",
            str(PROFILE),
            *TEST_CLUSTER_ARGS,
            "--max-threads",
            "1",  # the test node has 2 CPUs; rules ask for up to 8
            "evaluate",
        ],
        cwd=tmp_path,
        timeout=900,
    )

    # The workflow profile beside the Snakefile (rerun semantics) was applied on top of profiles/slurm.
    assert re.search(r"and workflow specific profile \S*profiles/default", log), log[:2000]
    summary = tmp_path / cfg["results"] / cfg["dataset"]["name"] / "eval" / "summary.csv"
    assert summary.is_file(), log[-4000:]
    assert set(pd.read_csv(summary)["experiment"]) - {"(baseline)"} == set(cfg["experiments"])

    # Every job went through sbatch, except the target rule `evaluate`, which has no command.
    jobs = RULE_JOB.findall(log)
    rule_of_job = {job: rule for _, rule, job in jobs}
    submitted = submitted_jobs(log)  # slurm id -> snakemake job id
    submitted_rules = sorted(rule_of_job[job] for job in submitted.values())
    assert submitted_rules == sorted(rule for local, rule, _ in jobs if not local), log[-4000:]
    assert [rule for local, rule, _ in jobs if local] == ["evaluate"]
    assert {"synth", "images", "train", "embed", "summarize"} <= set(submitted_rules)

    # The experiment's resources from the config reached sbatch for its training job.
    exp = tiny_config(experiments=1)["defaults"]
    (train_slurm_id,) = [slurm for slurm, job in submitted.items() if rule_of_job[job] == "train"]
    info = scontrol_job(cluster, train_slurm_id)
    assert info["JobState"] == "COMPLETED"
    assert info["MinMemoryNode"] == f"{exp['mem_mb']}M"
    hours, minutes = divmod(exp["runtime"], 60)
    assert info["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00"


FAKE_TORCHRUN = """#!{python}
# A stand-in for torchrun: records how it was called and which GPUs SLURM granted, then writes the
# outputs of the train rule so that Snakemake sees the job succeed.
import json, os, sys
from pathlib import Path

granted = {{name: os.environ.get(name) for name in (
    "CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_JOB_ID", "SLURM_STEP_ID",
    "SLURM_NTASKS")}}
with open({record!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": granted}}) + "\\n")
out = Path(sys.argv[sys.argv.index("--out-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
for name in ("best.pt", "history.csv", "curves.png"):
    (out / name).write_text("stub")
"""


def python_with_fake_torchrun(folder: Path, record: Path) -> Path:
    """A Python (a venv view of ours) whose bin/ holds a fake `torchrun`: the workflow puts the bin/ of
    the Python running Snakemake first on every job's PATH, so jobs find this torchrun, not torch's."""
    folder.mkdir()
    (folder / "bin").mkdir()
    (folder / "pyvenv.cfg").write_text(Path(sys.prefix, "pyvenv.cfg").read_text())
    (folder / "lib").symlink_to(Path(sys.prefix, "lib"), target_is_directory=True)
    python = folder / "bin" / "python"
    python.symlink_to(sys.executable)
    torchrun = folder / "bin" / "torchrun"
    torchrun.write_text(FAKE_TORCHRUN.format(python=python, record=str(record)))
    torchrun.chmod(0o755)
    return python


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"the workflow cannot run yet: missing {', '.join(MISSING)}")
def test_four_gpu_experiment_runs_torchrun_once_with_four_gpus(cluster: SlurmCluster, tmp_path: Path) -> None:
    """A `gpus: 4` experiment is one SLURM job granted 4 GPUs that starts torchrun once, 4 processes
    (plugin releases that add --ntasks-per-gpu ran the rule's command once per GPU)."""
    from workflow_helpers import tiny_config, write_config

    if not Path(sys.prefix, "pyvenv.cfg").is_file():
        pytest.skip("needs the tests to run in a virtual environment (the fake torchrun goes beside its python)")
    cfg = tiny_config(experiments=0, studies=40)
    cfg["experiments"] = {"four-gpus": {"gpus": 4, "cpus_per_gpu": 1, "mem_mb": 200, "runtime": 5}}
    config = write_config(cfg, tmp_path)
    model = Path(cfg["results"]) / cfg["dataset"]["name"] / "models" / "four-gpus" / "best.pt"
    common = ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(config)]
    # Preprocessing runs here, not on the cluster: only the training job goes through sbatch.
    local = subprocess.run([*SNAKEMAKE, *common, "--cores", "2", "--omit-from", "train", str(model)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stdout[-4000:] + local.stderr[-4000:]

    record = tmp_path / "torchrun-calls.jsonl"
    python = python_with_fake_torchrun(tmp_path / "venv", record)
    proc = subprocess.run(
        [str(python), "-m", "snakemake", *common, "--profile", str(PROFILE), *TEST_CLUSTER_ARGS, str(model)],
        cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{log[-8000:]}\n{cluster.logs()}"

    (slurm_id,) = submitted_jobs(log)  # one job: the training
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(calls) == 1, calls  # torchrun started once, not once per GPU
    argv, granted = calls[0]["argv"], calls[0]["env"]
    assert argv[argv.index("--nproc_per_node") + 1] == "4", argv
    assert argv[argv.index("-m") + 1 : argv.index("-m") + 3] == ["txtrayalign", "train"], argv
    assert granted["SLURM_JOB_ID"] == slurm_id
    assert granted["SLURM_GPUS_ON_NODE"] == "4", granted
    assert len(granted["CUDA_VISIBLE_DEVICES"].split(",")) == 4, granted
    # the GPUs of the job step the command runs in (the jobstep plugin's srun keeps the job's GPUs)
    assert sorted((granted["SLURM_STEP_GPUS"] or granted["SLURM_JOB_GPUS"]).split(",")) == ["0", "1", "2", "3"], granted
    info = scontrol_job(cluster, slurm_id)
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "1", info
    assert "gpu:4" in info.get("TresPerJob", ""), info
