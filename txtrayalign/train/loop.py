"""The training loop: optimiser and schedule, AMP, EMA teacher, checkpoints and exact resume.

A step's randomness (batch order, augmentation, sampled sentences, dropout) is a function of
(seed, epoch, step), and `last.pt` holds everything else that changes (weights, optimiser,
scaler, teacher, position, history, RNG states), so a run killed at any moment and started again
with the same arguments ends where an unbroken run ends (bit-exactly on the CPU).

A run's identity is its settings, its code and its inputs: `last.pt` resumes only when all three
match (`resumable_state`); otherwise the run starts over, and the previous run is kept aside until
the new one has written its first checkpoint (`set_aside`, `recover_superseded`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from txtrayalign.errors import InputError
from txtrayalign.train import checkpoint as ckpt
from txtrayalign.train import distributed as ddp
from txtrayalign.train.data import (
    Collate,
    EpochBatchSampler,
    EvalPairs,
    TrainPairs,
    load_pairs,
    shards_fingerprint,
    text_input,
    training_corpus,
)
from txtrayalign.train.model import ClipModel, apply_freezing, param_groups
from txtrayalign.train.model import build_model as build_clip_model
from txtrayalign.train.report import Board, plot_curves, write_history
from txtrayalign.train.step import forward_backward
from txtrayalign.train.tokenizer import get_tokenizer
from txtrayalign.train.validation import chance_recall, validate
from txtrayalign.utils import atomic_path, code_fingerprint, file_digest, progress

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    images_index: Path
    split: Path
    out_dir: Path
    sentences: Path | None = None
    sections: Path | None = None


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32. auto: bf16 on CUDA, fp32 on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp16" and device.type != "cuda":
        raise InputError("train.precision fp16 needs CUDA; use fp32 or bf16 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 101 + rank


def build_optimizer(model: ClipModel, cfg: dict) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if not groups:
        raise InputError("every parameter is frozen: nothing to train")
    if cfg["train"]["optimizer"] == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, fused=on_cuda or None)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def set_train_mode(model: ClipModel, cfg: dict) -> None:
    """Training mode, except frozen encoders (no BatchNorm statistic updates, no dropout)."""
    model.train()
    if cfg["train"]["freeze_image"]:
        model.image_encoder.eval()
    if cfg["train"]["freeze_text"]:
        model.text_encoder.eval()


TRAINING_CODE = "txtrayalign.train.cli"  # the `train` command: its import closure is the training code

# Settings that do not change what a run computes: a run may resume with other values of these.
RESUME_INSENSITIVE = {("name",), ("gpus",), ("train", "num_workers"), ("train", "checkpoint_every"),
                      ("train", "compile")}

BEST_COPY = ".best.pt"  # a verified copy of best.pt that survives a workflow manager deleting best.pt
SUPERSEDED = ".superseded"  # the previous run, kept until the new one has written its first checkpoint
RUN_FILES = ("last.pt", "best.pt", BEST_COPY, "history.csv", "curves.png", "config.yaml", "tokenizer",
             "tensorboard")


# ---------------------------------------------------------------- run identity


def input_fingerprint(inputs: Inputs, text_mode: str) -> dict[str, str]:
    """A fingerprint of each input the run reads: the split, the text of its mode and the images."""
    kind, text_path = text_input(text_mode, inputs.sentences, inputs.sections)
    out = {"split": file_digest(inputs.split), "images": shards_fingerprint(inputs.images_index)}
    if text_path is not None:
        out[kind] = file_digest(text_path)
    return out


def _comparable(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    for path in RESUME_INSENSITIVE:
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return out


def _changed_keys(old, new, prefix: str = "") -> list[str]:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix or "(all)"] if old != new else []
    out = []
    for key in sorted(set(old) | set(new), key=str):
        out += _changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    return out


def why_not_resumable(state: dict, old_cfg: dict | None, cfg: dict, code: str, inputs: dict[str, str]) -> str | None:
    """Why a run with this identity cannot continue `state`: settings, code or inputs; None when it can."""
    if old_cfg is None:
        return "its settings (config.yaml) are missing"
    changed = _changed_keys(_comparable(old_cfg), _comparable(cfg))
    if changed:
        return "the experiment settings differ (" + ", ".join(changed) + ")"
    if state.get("code") != code:
        return "the training code differs"
    old_inputs = state.get("inputs") or {}
    changed = [name for name in sorted(set(old_inputs) | set(inputs)) if old_inputs.get(name) != inputs.get(name)]
    if changed:
        return "the inputs differ (" + ", ".join(changed) + ")"
    return None


def resumable_state(last_path: Path, cfg: dict, code: str, inputs: dict[str, str]) -> dict | None:
    """The state in `last_path` if the same settings, code and inputs wrote it, else None (start over)."""
    if not last_path.is_file():
        return None
    state = ckpt.load(last_path)
    config_path = last_path.parent / "config.yaml"
    old_cfg = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    reason = why_not_resumable(state, old_cfg, cfg, code, inputs)
    if reason:
        log.warning("%s cannot be continued: %s; starting over", last_path, reason)
        return None
    return state


# ---------------------------------------------------------------- the run folder


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def set_aside(out: Path) -> bool:
    """Move the previous run's files into `out/.superseded` (nothing is deleted yet)."""
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present:
        return False
    aside = out / SUPERSEDED
    if aside.exists():  # an earlier attempt's leftovers: the run kept there is the one to keep
        for name in present:
            _remove(out / name)
        return True
    aside.mkdir()
    for name in present:
        os.replace(out / name, aside / name)
    log.info("previous run moved to %s until the new run writes its first checkpoint", aside)
    return True


def recover_superseded(out: Path) -> None:
    """Settle a `.superseded` run: removed once the new run has a checkpoint, else put back in place."""
    aside = out / SUPERSEDED
    if not aside.is_dir():
        return
    if (out / "last.pt").is_file():
        shutil.rmtree(aside)
        return
    for name in RUN_FILES:  # what the replacing run wrote before it stopped
        _remove(out / name)
    for item in aside.iterdir():
        os.replace(item, out / item.name)
    aside.rmdir()
    log.warning("the run that was to replace %s stopped before its first checkpoint: the previous run is back",
                out)


def discard_superseded(out: Path) -> None:
    if (out / SUPERSEDED).is_dir():
        shutil.rmtree(out / SUPERSEDED)


def set_aside_damaged(out: Path) -> None:
    """Checkpoints torch cannot read (cut short by a full disk, overwritten) named in the log and moved
    to `<name>.damaged`, so that the run restores a good copy or starts over instead of failing."""
    for name in ("last.pt", "best.pt", BEST_COPY):
        path = out / name
        if path.is_file() and not ckpt.readable(path):
            os.replace(path, path.with_name(name + ".damaged"))
            log.warning("%s is damaged (not a readable checkpoint): moved to %s.damaged", path, name)
    best, kept = out / "best.pt", out / BEST_COPY
    if best.is_file() and not kept.is_file():
        ckpt.copy_verified(best, kept)
    elif kept.is_file() and not best.is_file():
        ckpt.copy_verified(kept, best)
        log.info("%s restored from its copy %s", best, kept.name)


def restore_outputs(out: Path, state: dict) -> bool:
    """A finished run's files that a workflow manager may have removed (best.pt from its verified copy).
    False when best.pt is gone with no readable copy: the run must train again.

    They are touched too: a workflow manager reran this job because an input is newer, and would run
    it again and again if its outputs kept their old modification times.
    """
    best, kept = out / "best.pt", out / BEST_COPY
    if not best.is_file():
        if not kept.is_file():
            log.warning("%s is missing and has no readable copy (%s): training again", best, kept.name)
            return False
        ckpt.copy_verified(kept, best)
        log.info("%s restored from its copy %s", best, kept.name)
    if not (out / "history.csv").is_file():
        write_history(state["history"], out / "history.csv")
    if not (out / "curves.png").is_file():
        plot_curves(state["history"], out / "curves.png")
    for name in ("best.pt", "history.csv", "curves.png"):
        if (out / name).is_file():
            os.utime(out / name)
    return True


def _save_config(cfg: dict, path: Path) -> None:
    with atomic_path(path, suffix=".yaml.tmp") as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _loader(dataset, collate, num_workers: int, pin: bool, **kw) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, collate_fn=collate, num_workers=num_workers, pin_memory=pin,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None, **kw,
    )


# ---------------------------------------------------------------- the steps of a run


def open_run(out: Path, cfg: dict, inputs: Inputs, rank: int, world_size: int) -> tuple[dict | None, str, dict]:
    """Decide between resuming and starting over (rank 0 decides, every rank follows).

    Returns (state to resume or None, code fingerprint, input fingerprint). Starting over moves the
    previous run aside; `train` removes it once the new run has its first checkpoint.
    """
    code = code_fingerprint(TRAINING_CODE)
    fingerprint = input_fingerprint(inputs, cfg["train"]["text_mode"])
    state = None
    if rank == 0:
        recover_superseded(out)
        set_aside_damaged(out)
        state = resumable_state(out / "last.pt", cfg, code, fingerprint)
        if state is not None and state.get("finished") and not restore_outputs(out, state):
            state = None
    if world_size > 1:
        box = [state is not None]
        torch.distributed.broadcast_object_list(box, src=0)
        if box[0] and state is None:
            state = ckpt.load(out / "last.pt")
    if state is None and rank == 0:
        set_aside(out)
    return state, code, fingerprint


def build_model(cfg: dict, tokenizer, dev: torch.device, out: Path | None = None) -> ClipModel:
    """The experiment's model (pretrained weights as the settings say), frozen parts frozen, on `dev`;
    with `out`, its preprocessing is recorded there (models/<exp>/preprocessing.json) for embedding."""
    torch.manual_seed(cfg["train"]["seed"])
    model = build_clip_model(cfg, tokenizer, pretrained=True, model_dir=out)
    apply_freezing(model, cfg)
    model.to(dev)
    if cfg["train"]["channels_last"]:
        model.image_encoder.to(memory_format=torch.channels_last)
    ddp.broadcast_parameters(model)
    return model


def prepare_tokenizer(cfg: dict, out: Path, data, rank: int):
    if rank == 0:
        tokenizer = get_tokenizer(cfg["text_encoder"], out, training_corpus(data))
        _save_config(cfg, out / "config.yaml")
    ddp.barrier()
    if rank != 0:
        tokenizer = get_tokenizer(cfg["text_encoder"], out)
    return tokenizer


class Run:
    """One training run's moving parts (model, optimiser, scaler, teacher, loaders) and its files."""

    def __init__(self, cfg: dict, inputs: Inputs, data, tokenizer, dev: torch.device, rank: int, world_size: int,
                 identity: dict) -> None:
        t = self.t = cfg["train"]
        self.cfg, self.dev, self.rank, self.world_size = cfg, dev, rank, world_size
        self.out = Path(inputs.out_dir)
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        self.identity = identity  # {"code": ..., "inputs": {...}}, stored in every last.pt
        self.model = build_model(cfg, tokenizer, dev, self.out if rank == 0 else None)
        self.teacher = copy.deepcopy(self.model).requires_grad_(False).eval() if t["distill"]["enabled"] else None
        self.optimizer = build_optimizer(self.model, cfg) if t["epochs"] > 0 else None
        self.dtype = amp_dtype(t["precision"], dev)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.train_table = data.splits.get("train")
        n_train = len(self.train_table) if self.train_table is not None else 0
        self.steps_per_epoch = n_train // t["batch_size"] if t["epochs"] == 0 else EpochBatchSampler(
            n_train, t["batch_size"], t["seed"], t["epochs"], rank=rank, world_size=world_size).steps_per_epoch
        self.total_steps = self.steps_per_epoch * t["epochs"]
        self.history: list[dict] = []
        self.start_epoch = self.start_step = 0
        self.best_val = float("inf")
        self.pending: list[tuple] = []  # (row, loss tensor, acc tensor): read lazily, no device sync per step
        self.forward_model = torch.compile(self.model) if t["compile"] else self.model
        self.collate = Collate(tokenizer, cfg["text_encoder"]["max_length"], pad_to_max=bool(t["compile"]))
        self.data = data
        self.val_table = data.splits.get("validate")
        self.val_loader = None
        pin = dev.type == "cuda"
        self.pin = pin
        if rank == 0 and self.val_table is not None and len(self.val_table) >= 2:
            val_ds = EvalPairs(data, self.val_table, t["image_size"], t["sentences_per_image"])
            self.val_loader = _loader(val_ds, self.collate, min(t["num_workers"], 2), pin, batch_size=t["batch_size"],
                                      shuffle=False)
            log.info("validation: %d pairs; chance %s", len(self.val_table), chance_recall(self.val_table.study_id))
        self.board = Board(self.out / "tensorboard" if rank == 0 else None)

    # -------------------------------------------------------- state
    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.teacher is not None and state.get("teacher"):
            self.teacher.load_state_dict(state["teacher"])
        self.start_epoch, self.start_step = int(state["epoch"]), int(state["step"])
        self.history = [dict(r) for r in state["history"]]
        self.best_val = float(state["best_val"])
        if self.rank == 0 and not self.best_path.is_file() and self.best_val < float("inf"):
            self.best_val = float("inf")  # best.pt was lost: the next validation writes one again
            log.warning("%s is missing and has no readable copy: the next validation writes it", self.best_path)
        ckpt.set_rng_state(state["rng"])
        log.info("resuming from %s at epoch %d step %d", self.last_path, self.start_epoch, self.start_step)

    def save_last(self, epoch: int, step: int, finished: bool = False, summary: dict | None = None) -> None:
        if self.rank != 0:
            return
        ckpt.save(self.last_path, {
            "model": ckpt.module_state(self.model),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "scheduler": {"warmup_steps": self.t["warmup_steps"], "total_steps": self.total_steps,
                          "global_step": epoch * self.steps_per_epoch + step},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "teacher": ckpt.module_state(self.teacher) if self.teacher is not None else {},
            "epoch": epoch, "step": step, "history": self.history, "best_val": self.best_val,
            "rng": ckpt.rng_state(), "finished": finished, "summary": summary or {}, **self.identity,
        })
        discard_superseded(self.out)  # the new run has its first checkpoint: the previous one may go

    def save_best(self, metrics: dict) -> None:
        ckpt.save(self.best_path, {"model": ckpt.module_state(self.model), "metrics": metrics})
        ckpt.copy_verified(self.best_path, self.out / BEST_COPY)

    # -------------------------------------------------------- steps
    def train_loader(self):
        t = self.t
        sampler = EpochBatchSampler(len(self.train_table), t["batch_size"], t["seed"], t["epochs"], self.start_epoch,
                                    self.start_step, self.rank, self.world_size)
        train_ds = TrainPairs(self.data, self.train_table, t["image_size"], t["sentences_per_image"], t["seed"],
                              t["augment"])
        return _loader(train_ds, self.collate, t["num_workers"], self.pin, batch_sampler=sampler), len(sampler)

    def optimizer_step(self, batch: dict, epoch: int, step: int, global_step: int, base_lrs: list[float]) -> dict:
        """One optimiser step on `batch`; returns its history row (loss and accuracy filled in lazily)."""
        t, dev, optimizer = self.t, self.dev, self.optimizer
        factor = lr_factor(global_step, t["warmup_steps"], self.total_steps)
        for g, base in zip(optimizer.param_groups, base_lrs, strict=True):
            g["lr"] = base * factor
        torch.manual_seed(step_seed(t["seed"], epoch, step, self.rank))
        for key in ("images", "input_ids", "attention_mask"):
            batch[key] = batch[key].to(dev, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        result = forward_backward(self.forward_model, self.model, batch, micro=t["micro_batch_size"], device=dev,
                                  dtype=self.dtype, scaler=self.scaler, teacher=self.teacher,
                                  distill_weight=t["distill"]["weight"])
        params = [p for p in self.model.parameters() if p.requires_grad]
        ddp.average_gradients(params)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if t["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, t["grad_clip"])
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if self.teacher is not None:
            ema_update(self.teacher, self.model, t["distill"]["ema"])
        row = history_row(global_step + 1, epoch, optimizer.param_groups[0]["lr"])
        self.history.append(row)
        self.pending.append((row, result.contrastive, result.acc))
        return row

    def flush_pending(self) -> None:
        for row, loss_t, acc_t in self.pending:
            row["loss"] = ddp.mean_over_ranks(float(loss_t), self.dev) if self.world_size > 1 else float(loss_t)
            row["acc"] = float(acc_t)
            self.board.scalars({"train/loss": row["loss"], "train/acc": row["acc"], "train/lr": row["lr"]},
                               row["step"])
        self.pending.clear()

    def validate_into(self, row: dict, epoch: int) -> None:
        """Validation metrics into `row`; best.pt when the validation loss improves."""
        if self.val_loader is None:
            return
        metrics = validate(self.forward_model, self.model, self.val_loader, self.val_table.study_id,
                           self.t["batch_size"], self.dev, self.dtype)
        set_train_mode(self.model, self.cfg)
        row.update(metrics)
        self.board.scalars({f"val/{k}": v for k, v in metrics.items()}, row["step"])
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in metrics.items()})
        if self.rank == 0 and metrics["val_loss"] < self.best_val:
            self.best_val = metrics["val_loss"]
            self.save_best({k: float(v) for k, v in row.items()})

    def fit(self, max_steps: int | None) -> bool:
        """Optimiser steps from the resume point to the end or to `max_steps`; True when stopped early."""
        if self.total_steps == 0:
            return False
        t = self.t
        loader, n_batches = self.train_loader()
        bar = progress(loader, desc=f"train {self.out.name}", total=n_batches, unit="step") if self.rank == 0 \
            else loader
        set_train_mode(self.model, self.cfg)
        base_lrs = [g["base_lr"] for g in self.optimizer.param_groups]
        stop_at = max_steps if max_steps is not None else self.total_steps
        t_last, pairs_since, stopped_early = time.perf_counter(), 0, False
        for batch in bar:
            epoch, step = int(batch["epoch"]), int(batch["step"])
            global_step = epoch * self.steps_per_epoch + step
            if global_step >= stop_at:
                stopped_early = True
                break
            row = self.optimizer_step(batch, epoch, step, global_step, base_lrs)
            pairs_since += t["batch_size"]
            end_of_epoch = step == self.steps_per_epoch - 1
            if len(self.pending) >= 10 or end_of_epoch or (global_step + 1) % t["checkpoint_every"] == 0:
                self.flush_pending()
                now = time.perf_counter()
                rate = pairs_since / max(now - t_last, 1e-9)
                t_last, pairs_since = now, 0
                if self.rank == 0 and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.2f}", pairs_s=f"{rate:.0f}")
                    self.board.scalars({"train/pairs_per_s": rate}, row["step"])
            if end_of_epoch:
                self.validate_into(row, epoch + 1)
                self.save_last(epoch + 1, 0)
                if self.rank == 0:
                    write_history(self.history, self.out / "history.csv")
            elif (global_step + 1) % t["checkpoint_every"] == 0:
                self.save_last(epoch, step + 1)
        self.flush_pending()
        if hasattr(bar, "close"):
            bar.close()
        return stopped_early

    def score_as_built(self) -> None:
        """epochs 0: the model as built (pretrained weights, no optimiser step), validated once as step 0."""
        row = history_row(0, 0, 0.0)
        self.history.append(row)
        self.validate_into(row, 0)

    def finish(self, stopped_early: bool) -> dict:
        """The final last.pt, best.pt (when validation never chose one), history.csv and curves.png."""
        history = self.history
        done_steps = history[-1]["step"] if history else self.start_epoch * self.steps_per_epoch + self.start_step
        finished = not stopped_early and done_steps >= self.total_steps
        summary = {"steps": int(done_steps), "total_steps": int(self.total_steps), "finished": finished,
                   "best_val_loss": self.best_val if self.best_val < float("inf") else None}
        last_val = [r for r in history if not math.isnan(r.get("val_loss", math.nan))]
        if last_val:
            summary.update({k: float(last_val[-1][k]) for k in ("val_loss", "val_recall@1", "val_recall@5",
                                                                 "val_recall@10")})
        if self.rank == 0:
            next_epoch, next_step = divmod(done_steps, max(1, self.steps_per_epoch))
            self.save_last(next_epoch, next_step, finished=finished, summary=summary)
            if finished and not self.best_path.is_file():
                self.save_best({"note": "no validation pairs: best.pt is the final model"})
            write_history(history, self.out / "history.csv")
            plot_curves(history, self.out / "curves.png")
        self.board.close()
        return summary


def history_row(step: int, epoch: int, lr: float) -> dict:
    return {"step": step, "epoch": epoch, "lr": lr, "loss": math.nan, "acc": math.nan, "val_loss": math.nan,
            "val_recall@1": math.nan, "val_recall@5": math.nan, "val_recall@10": math.nan}


def train(cfg: dict, inputs: Inputs, device: str = "auto", max_steps: int | None = None) -> dict:
    """Train one experiment into `inputs.out_dir`; returns the final summary (metrics, paths, steps).

    `train.epochs: 0` saves the model as built (pretrained weights included) without any optimiser step.
    torch computes with `train.threads` CPU threads, whatever the machine or the workflow grants: the
    order of float additions, hence a CPU model's exact weights, depends on the thread count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg["train"]["threads"])
    try:
        return train_with_settled_threads(cfg, inputs, device, max_steps)
    finally:
        torch.set_num_threads(previous)


def train_with_settled_threads(cfg: dict, inputs: Inputs, device: str, max_steps: int | None) -> dict:
    rank, world_size, dev = ddp.setup(device)
    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state, code, fingerprint = open_run(out, cfg, inputs, rank, world_size)
    if state is not None and state.get("finished"):  # its outputs restored (open_run)
        log.info("%s is a finished run of these settings, code and inputs: nothing to do", out / "last.pt")
        return dict(state["summary"])
    ddp.barrier()
    try:
        data = load_pairs(inputs.split, inputs.images_index, inputs.sentences, inputs.sections,
                          cfg["train"]["text_mode"])
        tokenizer = prepare_tokenizer(cfg, out, data, rank)
        run = Run(cfg, inputs, data, tokenizer, dev, rank, world_size, {"code": code, "inputs": fingerprint})
        if state is not None:
            run.load(state)
        if cfg["train"]["epochs"] == 0:
            run.score_as_built()
        stopped_early = run.fit(max_steps)
        summary = run.finish(stopped_early)
    except BaseException:
        if rank == 0:
            recover_superseded(out)  # no checkpoint of the new run yet: the previous run goes back in place
        raise
    ddp.barrier()
    log.info("%s after %d of %d steps: %s", "finished" if summary["finished"] else "stopped", summary["steps"],
             summary["total_steps"], summary)
    return summary
