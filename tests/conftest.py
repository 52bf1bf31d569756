"""Shared fixtures: the real files in ../shared/testdata and a small synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = ROOT.parent / "shared" / "testdata"

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
