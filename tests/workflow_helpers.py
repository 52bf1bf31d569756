"""Running the real workflow on a tiny configuration, for the workflow and rerun tests and bench/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(experiments: int = 1, studies: int = 80) -> dict:
    """The demo configuration shrunk so the whole pipeline runs in a minute or two on 2 cores."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["dataset"].update(name="tiny", root="data")
    cfg["dataset"]["synthetic"].update(studies=studies, image_size=64, format="jpg")
    cfg["images"]["size"] = 48
    cfg["defaults"]["train"].update(epochs=1, batch_size=16, image_size=32, checkpoint_every=1000)
    cfg["defaults"]["text_encoder"]["vocab_size"] = 500
    cfg["defaults"]["embed_dim"] = 32
    cfg["defaults"]["evaluation"].update(k=[1, 2], bootstrap=50, gallery=2, batch_size=64)
    cfg["defaults"]["evaluation"]["linear_probe"] = {"enabled": False}  # the demo's probe embeds the training images too
    cfg["experiments"] = {f"exp{i}": {} for i in range(experiments)}
    return cfg


def write_config(cfg: dict, folder: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    *args: str,
    config: Path | None = None,
    timeout: int = 1200,
    env: dict | None = None,
    snakefile: Path = ROOT / "Snakefile",
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
           "--directory", str(workdir), *args]
    if config is not None:
        cmd += ["--configfile", str(config)]
    full_env = {**os.environ, "TXTRAYALIGN_NO_PROGRESS": "1", **(env or {})}
    # run from the work folder: `python -m` puts the current folder first on sys.path
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=workdir)


def planned_jobs(result: subprocess.CompletedProcess) -> Counter:
    """Rule -> job count from a dry run's "Job stats" table (empty when nothing is to be done)."""
    text = result.stdout + result.stderr
    counts: Counter = Counter()
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    if not match:
        return counts
    for line in match.group(1).splitlines():
        name, count = line.split()
        counts[name] = int(count)
    return counts


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
