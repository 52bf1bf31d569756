"""Damaged or lost checkpoints heal: named in the log, set aside, restored from a verified copy or
trained again; never a traceback, never a copy that shares the damage. And the thread count is a
setting: the same `train.threads` gives the same weights whatever torch was set to before."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from txtrayalign.cli import main
from txtrayalign.train.checkpoint import DamagedCheckpoint, load
from txtrayalign.train.loop import Inputs, train
from txtrayalign.train.toydata import tiny_experiment, write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), studies=60, image_size=32, seed=0)


def inputs(toy, out) -> Inputs:
    return Inputs(toy["images_index"], toy["split"], out, toy["sentences"], toy["sections"])


CFG = tiny_experiment(epochs=2)


@pytest.fixture(scope="module")
def finished(toy, tmp_path_factory):
    """A finished run, copied (never changed) by each test."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(CFG, inputs(toy, out), device="cpu")
    return out


@pytest.fixture()
def run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out, copy_function=shutil.copy2)
    return out


def truncate(path, keep=100):
    data = path.read_bytes()
    path.write_bytes(data[:keep])  # in place, as a full disk or an interrupted copy leaves it


def weights(path):
    return load(path)["model"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_best_copy_is_independent_of_best(finished):
    """.best.pt is a copy (its own inode), so damage done in place to best.pt cannot reach it."""
    best, kept = finished / "best.pt", finished / ".best.pt"
    assert best.stat().st_ino != kept.stat().st_ino and best.stat().st_nlink == 1
    assert best.read_bytes() == kept.read_bytes()


def test_truncated_best_is_named_set_aside_and_restored_from_its_copy(toy, run, finished, caplog):
    """Before: the copy was a hard link, truncated with best.pt; a rerun restored the damaged file."""
    caplog.set_level(logging.INFO, logger="txtrayalign")
    truncate(run / "best.pt")
    with pytest.raises(DamagedCheckpoint, match=r"best\.pt is not a readable checkpoint.*delete it and rerun"):
        load(run / "best.pt")
    train(CFG, inputs(toy, run), device="cpu")  # what `--forcerun train` (or a deleted best.pt) runs
    assert f"{run / 'best.pt'} is damaged" in caplog.text and "restored from its copy .best.pt" in caplog.text
    assert "nothing to do" in caplog.text and "starting over" not in caplog.text
    assert (run / "best.pt.damaged").is_file()
    assert same(weights(run / "best.pt"), weights(finished / "best.pt"))


def test_best_and_its_copy_both_damaged_trains_again_to_the_same_model(toy, run, finished, caplog):
    caplog.set_level(logging.INFO, logger="txtrayalign")
    truncate(run / "best.pt")
    truncate(run / ".best.pt")
    (run / "history.csv").unlink()
    train(CFG, inputs(toy, run), device="cpu")
    assert "has no readable copy" in caplog.text and "restored from" not in caplog.text
    assert same(weights(run / "best.pt"), weights(finished / "best.pt"))  # CPU training is deterministic
    assert load(run / ".best.pt")  # a good copy again


def test_truncated_last_starts_over_with_a_log_line_not_a_traceback(toy, run, finished, caplog):
    """Before: `RuntimeError: cannot read checkpoint .../last.pt` and Snakemake deleted the valid best.pt."""
    caplog.set_level(logging.INFO, logger="txtrayalign")
    truncate(run / "last.pt")
    summary = train(CFG, inputs(toy, run), device="cpu")
    assert f"{run / 'last.pt'} is damaged (not a readable checkpoint): moved to last.pt.damaged" in caplog.text
    assert summary["finished"] and load(run / "last.pt")["finished"]
    assert same(weights(run / "best.pt"), weights(finished / "best.pt"))
    assert same(load(run / "last.pt")["model"], load(finished / "last.pt")["model"])


def test_damaged_best_in_the_embed_command_is_one_line(toy, run, tmp_path, capsys):
    """A damaged best.pt read by another command: `txtrayalign <cmd>: error: <path> ...`, exit 2."""
    from txtrayalign.train import load_model

    truncate(run / "best.pt")
    with pytest.raises(DamagedCheckpoint):
        load_model(run, "cpu")
    code = main(["embed", "--model-dir", str(run), "--split", str(toy["split"]), "--sentences", str(toy["sentences"]),
                 "--sections", str(toy["sections"]), "--report-section", "none", "--out-bank", str(tmp_path / "bank.h5")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"txtrayalign embed: error: {run / 'best.pt'} is not a readable "
                                                  "checkpoint"), err


def test_train_threads_is_the_setting_not_the_callers(toy, finished, tmp_path):
    """torch set to 1 or 3 threads by the caller: training still uses train.threads (2), same weights."""
    previous = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            out = tmp_path / f"threads{n}"
            train(CFG, inputs(toy, out), device="cpu")
            assert torch.get_num_threads() == n, "the caller's setting comes back"
            assert same(weights(out / "best.pt"), weights(finished / "best.pt")), n
    finally:
        torch.set_num_threads(previous)
    assert load(finished / "last.pt") and CFG["train"]["threads"] == 2


def test_a_new_thread_count_is_a_new_run(toy, run, caplog):
    caplog.set_level(logging.INFO, logger="txtrayalign")
    cfg = tiny_experiment(epochs=2, threads=1)
    train(cfg, inputs(toy, run), device="cpu", max_steps=1)
    assert "the experiment settings differ (train.threads)" in caplog.text


def test_a_full_disk_while_saving_a_checkpoint_is_enospc_naming_it(toy, tmp_path, monkeypatch):
    """torch reports a full disk as RuntimeError("... file write failed"), which read as a bug (a
    traceback); it is now OSError(ENOSPC) naming the checkpoint, which the command line reports in one
    line, and no partial file is left."""
    import errno

    import txtrayalign.train.checkpoint as ckpt

    def full_disk(payload, f):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0))
    out = tmp_path / "run"
    with pytest.raises(OSError) as caught:
        train(CFG, inputs(toy, out), device="cpu")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith(".pt")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_batch_larger_than_the_data_is_one_line(toy, tmp_path, capsys):
    import json

    cfg = json.dumps({"text_encoder": {"vocab_size": 200}, "embed_dim": 32,
                      "train": {"epochs": 1, "batch_size": 4096, "image_size": 32, "num_workers": 0}})
    code = main(["train", "--experiment-json", cfg, "--images-index", str(toy["images_index"]),
                 "--sentences", str(toy["sentences"]), "--sections", str(toy["sections"]), "--split",
                 str(toy["split"]), "--out-dir", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("txtrayalign train: error: only ")
    assert err.strip().splitlines()[-1].endswith("fewer than one batch of 4096; lower train.batch_size")
