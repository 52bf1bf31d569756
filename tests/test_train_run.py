"""End-to-end CPU training on the toy dataset: learning, outputs, inference API, exact resume, CLI."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from txtrayalign.cli import main
from txtrayalign.train import load_model
from txtrayalign.train.checkpoint import load
from txtrayalign.train.config import resolve
from txtrayalign.train.loop import Inputs, train
from txtrayalign.train.toydata import tiny_experiment, write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), studies=120, image_size=32, seed=0)


def inputs(toy, out) -> Inputs:
    return Inputs(toy["images_index"], toy["split"], out, toy["sentences"], toy["sections"])


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = train(tiny_experiment(epochs=6), inputs(toy, out), device="cpu")
    return out, summary


def test_training_learns_and_writes_its_files(trained):
    out, summary = trained
    for name in ("best.pt", "last.pt", "history.csv", "config.yaml", "curves.png", "tokenizer/tokenizer.json"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    hist = pd.read_csv(out / "history.csv")
    assert list(hist.columns) == ["step", "epoch", "lr", "loss", "acc", "val_loss", "val_recall@1", "val_recall@5",
                                  "val_recall@10"]
    assert hist["step"].tolist() == list(range(1, summary["total_steps"] + 1))
    val = hist.dropna(subset=["val_loss"])
    assert len(val) == 6
    assert val["val_loss"].iloc[-1] < val["val_loss"].iloc[0] - 0.1
    # chance recall@5 among ~37 validation pairs is about 0.2
    assert val["val_recall@5"].iloc[-1] > 0.35
    assert summary["finished"]


def test_load_model_encodes_images_and_texts(trained, toy):
    out, _ = trained
    model = load_model(out, "cpu")
    images = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)  # another size: resized to the training size
    with torch.no_grad():
        zi = model.encode_images(images)
        zt = model.encode_texts(["Small nodule in the left lung.", "No pneumothorax is seen."])
        zi1 = model.encode_images(images[:, None])
    assert zi.shape == (3, 32) and zt.shape == (2, 32)
    assert torch.allclose(zi.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(zi, zi1)
    best = load(out / "best.pt")
    assert set(best["model"]) == set(model.state_dict())


def test_rerun_of_a_finished_run_is_a_no_op(trained, toy):
    out, summary = trained
    before = (out / "last.pt").stat().st_mtime_ns
    best = (out / "best.pt").read_bytes()
    # a workflow manager deletes the declared outputs before rerunning a job
    for name in ("best.pt", "history.csv", "curves.png"):
        (out / name).unlink()
    again = train(tiny_experiment(epochs=6, num_workers=0, checkpoint_every=7), inputs(toy, out), device="cpu")
    assert again == summary
    assert (out / "last.pt").stat().st_mtime_ns == before
    assert (out / "best.pt").read_bytes() == best
    assert len(pd.read_csv(out / "history.csv")) == summary["total_steps"] and (out / "curves.png").is_file()


def test_changed_settings_start_over(toy, tmp_path):
    out = tmp_path / "changed"
    train(tiny_experiment(epochs=1), inputs(toy, out), device="cpu", max_steps=4)
    assert load(out / "last.pt")["step"] == 4
    summary = train(tiny_experiment(epochs=1, lr_head=5e-4), inputs(toy, out), device="cpu", max_steps=2)
    state = load(out / "last.pt")
    assert summary["steps"] == 2 and [r["step"] for r in state["history"]] == [1, 2]  # not resumed from step 4


def final_state(out):
    state = load(out / "last.pt")
    return state["model"], state["teacher"], state["history"]


@pytest.mark.slow
def test_kill_and_resume_equals_an_unbroken_run(toy, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="txtrayalign")
    cfg = tiny_experiment(epochs=2, distill={"enabled": True, "weight": 0.5, "ema": 0.9})
    train(cfg, inputs(toy, tmp_path / "unbroken"), device="cpu")

    # 1) stopped by --max-steps mid-epoch, then resumed (same settings, code and inputs)
    train(cfg, inputs(toy, tmp_path / "stopped"), device="cpu", max_steps=7)
    assert load(tmp_path / "stopped" / "last.pt")["step"] == 7
    caplog.clear()
    train(cfg, inputs(toy, tmp_path / "stopped"), device="cpu")
    assert "resuming from" in caplog.text and "at epoch 0 step 7" in caplog.text
    assert "starting over" not in caplog.text

    # 2) killed abruptly at step 8 (after the periodic checkpoint of step 5), then restarted
    import txtrayalign.train.distributed as ddp

    calls = {"n": 0}
    real = ddp.average_gradients

    def dying(params, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt("simulated kill")
        return real(params, *a, **k)

    monkeypatch.setattr(ddp, "average_gradients", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, inputs(toy, tmp_path / "killed"), device="cpu")
    monkeypatch.setattr(ddp, "average_gradients", real)
    assert load(tmp_path / "killed" / "last.pt")["step"] == 5
    caplog.clear()
    train(cfg, inputs(toy, tmp_path / "killed"), device="cpu")
    assert "at epoch 0 step 5" in caplog.text and "starting over" not in caplog.text

    ref_model, ref_teacher, ref_hist = final_state(tmp_path / "unbroken")
    for name in ("stopped", "killed"):
        model, teacher, hist = final_state(tmp_path / name)
        for k in ref_model:
            assert torch.equal(model[k], ref_model[k]), (name, k)
        for k in ref_teacher:
            assert torch.equal(teacher[k], ref_teacher[k]), (name, k)
        assert [r["loss"] for r in hist] == [r["loss"] for r in ref_hist]


def test_cli_trains_with_section_text_and_micro_batches(toy, tmp_path):
    exp = {"text_encoder": {"vocab_size": 150}, "embed_dim": 16,
           "train": {"epochs": 1, "batch_size": 16, "micro_batch_size": 5, "image_size": 32, "num_workers": 1,
                     "text_mode": "section", "optimizer": "sgd", "freeze_text_layers": 1}}
    out = tmp_path / "cli"
    argv = ["train", "--experiment-json", json.dumps(exp), "--images-index", str(toy["images_index"]),
            "--sections", str(toy["sections"]), "--split", str(toy["split"]), "--out-dir", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 9 and np.isfinite(hist["loss"]).all()


def test_changed_input_starts_over_and_says_why(toy, tmp_path, caplog):
    """Run identity includes the inputs: other training text, same settings and code -> start over."""
    caplog.set_level(logging.INFO, logger="txtrayalign")
    cfg = tiny_experiment(epochs=1, text_mode="section")
    out = tmp_path / "inputs"
    train(cfg, inputs(toy, out), device="cpu", max_steps=3)
    sections = pd.read_parquet(toy["sections"])
    sections["train_text"] = sections["train_text"].str.upper()
    changed = dict(toy, sections=tmp_path / "sections.parquet")
    sections.to_parquet(changed["sections"], index=False)
    caplog.clear()
    summary = train(cfg, inputs(changed, out), device="cpu", max_steps=2)
    assert "cannot be continued: the inputs differ (sections); starting over" in caplog.text
    state = load(out / "last.pt")
    assert summary["steps"] == 2 and [r["step"] for r in state["history"]] == [1, 2]  # not resumed from step 3
    # the sentences file is not read in section mode: another one changes nothing
    caplog.clear()
    train(cfg, Inputs(changed["images_index"], changed["split"], out, tmp_path / "absent.parquet",
                      changed["sections"]), device="cpu", max_steps=2)
    assert "starting over" not in caplog.text


def test_a_failed_start_over_keeps_the_previous_model(toy, tmp_path):
    """Nothing is deleted before its replacement exists (issue 12): a typo in an encoder name on a
    finished run fails with the old model, its history and checkpoint as they were."""
    from txtrayalign.train.loop import SUPERSEDED, set_aside

    cfg = tiny_experiment(epochs=1)
    out = tmp_path / "kept"
    train(cfg, inputs(toy, out), device="cpu")
    names = ("last.pt", "best.pt", "history.csv", "config.yaml", "tokenizer/tokenizer.json")
    files = {n: (out / n).read_bytes() for n in names}
    bad = copy.deepcopy(cfg)
    bad["image_encoder"]["name"] = "resnet19"
    with pytest.raises(Exception, match="resnet19"):
        train(bad, inputs(toy, out), device="cpu")
    assert {n: (out / n).read_bytes() for n in names} == files
    assert not (out / SUPERSEDED).exists()

    # killed before its first checkpoint (no chance to put the old run back): the next start does
    set_aside(out)
    (out / "config.yaml").write_text("partial: true\n")
    assert not (out / "last.pt").exists() and (out / SUPERSEDED / "best.pt").is_file()
    train(cfg, inputs(toy, out), device="cpu")  # the same identity as the kept, finished run
    assert {n: (out / n).read_bytes() for n in names} == files and not (out / SUPERSEDED).exists()

    # a valid new setting replaces it; the old run goes once the new one has its first checkpoint
    train(tiny_experiment(epochs=1, lr_head=5e-4), inputs(toy, out), device="cpu")
    assert not (out / SUPERSEDED).exists()
    assert (out / "best.pt").read_bytes() != files["best.pt"]


def test_zero_epochs_saves_the_model_as_built(toy, tmp_path):
    """train.epochs 0 (a released model scored as it is): built, validated once, saved; no optimiser step."""
    from txtrayalign.train.loop import build_model
    from txtrayalign.train.tokenizer import get_tokenizer

    cfg = tiny_experiment(epochs=0)
    out = tmp_path / "zero"
    summary = train(cfg, inputs(toy, out), device="cpu")
    assert summary["finished"] and summary["steps"] == 0 and summary["total_steps"] == 0
    built = build_model(cfg, get_tokenizer(cfg["text_encoder"], out), torch.device("cpu")).state_dict()
    best, last = load(out / "best.pt"), load(out / "last.pt")
    assert set(best["model"]) == set(built)
    assert all(torch.equal(best["model"][k], built[k]) for k in built)
    assert last["finished"] and last["optimizer"] == {}
    hist = pd.read_csv(out / "history.csv")
    assert hist["step"].tolist() == [0] and np.isfinite(hist["val_loss"]).all()
    assert (out / "curves.png").is_file() and load_model(out, "cpu") is not None


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="train.epoch'"):
        resolve({"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        resolve('{"colour": 1}')
    with pytest.raises(ValueError, match="train.precision"):
        resolve({"train": {"precision": "fp8"}})


def test_schedule_warms_up_then_decays_to_zero():
    from txtrayalign.train.loop import amp_dtype, lr_factor

    assert [lr_factor(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    decay = [lr_factor(s, 4, 20) for s in range(4, 21)]
    assert decay[0] == 1.0 and decay[-1] == 0.0 and all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert amp_dtype("auto", torch.device("cpu")) is None
    assert amp_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        amp_dtype("fp16", torch.device("cpu"))


def test_frozen_encoders_get_no_updates_and_stay_in_eval_mode(toy, tmp_path):
    cfg = tiny_experiment(epochs=1, freeze_image=True)
    out = tmp_path / "frozen"
    train(cfg, inputs(toy, out), device="cpu", max_steps=2)
    from txtrayalign.train.model import ClipModel, apply_freezing
    from txtrayalign.train.tokenizer import get_tokenizer

    torch.manual_seed(cfg["train"]["seed"])
    start = ClipModel(cfg, get_tokenizer(cfg["text_encoder"], out))
    apply_freezing(start, cfg)
    after = load(out / "last.pt")["model"]
    for k, v in start.state_dict().items():
        if k.startswith("image_encoder."):
            assert torch.equal(v, after[k]), k  # weights and BatchNorm statistics untouched
    assert not torch.equal(start.state_dict()["text_proj.weight"], after["text_proj.weight"])


def test_recall_counts_studies_and_breaks_ties_fairly():
    from txtrayalign.train.validation import chance_recall, recall_at_k

    img = torch.eye(4)
    txt = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 1.0, 0, 0]])
    groups = np.array([7, 8, 9, 9])  # images 2 and 3 share a study (and its text)
    r = recall_at_k(img, txt, groups, ks=(1, 2))
    # image 0: own text first (1, 1). image 1: two texts above its own, one tie (0, 0).
    # image 2: one text above, one tie (0, 1/2). image 3: ties with both other studies' texts (1/3, 2/3)
    assert r["val_recall@1"] == pytest.approx((1 + 0 + 0 + 1 / 3) / 4)
    assert r["val_recall@2"] == pytest.approx((1 + 0 + 1 / 2 + 2 / 3) / 4)
    collapsed = recall_at_k(torch.ones(10, 3), torch.ones(10, 3), np.arange(10), ks=(1, 5))
    chance = chance_recall(np.arange(10), ks=(1, 5))
    assert collapsed["val_recall@1"] == pytest.approx(chance["chance@1"])
    assert collapsed["val_recall@5"] == pytest.approx(chance["chance@5"])
