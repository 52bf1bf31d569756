"""Shared fixtures: the real files in ../shared/testdata and a small synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared/testdata beside the checkout; TXTRAYALIGN_TESTDATA names it from a checkout elsewhere (a worktree)
SHARED_TESTDATA = Path(os.environ.get("TXTRAYALIGN_TESTDATA", ROOT.parent / "shared" / "testdata"))

os.environ.setdefault("TXTRAYALIGN_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    """The folder of real files written by others; tests that need it skip where it is absent."""
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"real test files not found at {SHARED_TESTDATA} (only present in the project workspace)")
    return SHARED_TESTDATA


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-CXR-JPG dataset (with faults), shared by the whole session."""
    from txtrayalign.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, studies=60, seed=7, fmt="both", image_size=128, faults=True)
    return out


# The modules that run whole workflows, longest first. They are collected before everything else so
# that pytest-xdist (`-n auto --dist loadscope`, see pyproject.toml: one work unit per module, or per
# class inside a module) hands them out first and the quick modules fill the gaps (longest-first
# scheduling); without xdist the order changes nothing that a test relies on. Tests keep their order
# inside a module (test_rerun's scenarios build on each other).
# test_slurm goes first: it mostly waits for SLURM, beside test_rerun's first group (which builds the
# base run); its second group then finds that run built. Each worker holds the next unit in advance.
LONG_MODULES = ("test_slurm.py", "test_rerun.py", "test_workflow_datasets.py", "test_cross_dataset.py",
                "test_workflow.py", "test_byo_table.py", "test_train_run.py")


def pytest_collection_modifyitems(session, config, items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)  # stable: the order within each rank stays the collection order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, at most 4 (each workflow test runs Snakemake on 2 cores)."""
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_configure(config) -> None:
    # xdist workers share the cores: one torch thread each in the tests' own process
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
