"""Checkpoints: tensors and plain Python values only (loadable with weights_only=True), written atomically."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from txtrayalign.errors import InputError
from txtrayalign.utils import atomic_path


class DamagedCheckpoint(InputError):
    """A checkpoint file torch cannot read back (cut short, overwritten, not a checkpoint)."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` atomically. A full disk is an OSError(ENOSPC) naming `path` (torch reports it as
    a RuntimeError "file write failed", which would read as a bug)."""
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:
            if shutil.disk_usage(tmp.parent).free < FULL_DISK_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
            raise


FULL_DISK_BYTES = 1 << 20  # free space below which a failed write is taken for a full disk


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`; a file that is not one is a DamagedCheckpoint naming it and the way out."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged file
        reason = " ".join(str(e).split())[:200]
        raise DamagedCheckpoint(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {reason}); delete it and rerun the same "
            "snakemake command: training restores best.pt from its copy or trains again") from None
    if not isinstance(payload, dict):
        raise DamagedCheckpoint(f"{path} holds a {type(payload).__name__}, not a checkpoint; delete it and rerun")
    return payload


def readable(path: Path) -> bool:
    """Whether `path` is a checkpoint torch can read back (a missing file is not)."""
    try:
        load(path)
    except (OSError, DamagedCheckpoint):
        return False
    return True


def copy_verified(src: Path, dst: Path) -> None:
    """An independent copy of checkpoint `src` at `dst` (never a hard link: damage to one must not reach
    the other), written atomically and read back before it replaces `dst`."""
    with atomic_path(dst, suffix=".pt.tmp") as tmp:
        shutil.copyfile(src, tmp)
        load(tmp)


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict on the CPU, without a torch.compile / DDP wrapper prefix."""
    module = getattr(module, "_orig_mod", module)
    module = getattr(module, "module", module)
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
