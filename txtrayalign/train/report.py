"""What a user sees of a run: history.csv, curves.png and TensorBoard events."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from txtrayalign.utils import atomic_path

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["step", "epoch", "lr", "loss", "acc", "val_loss", "val_recall@1", "val_recall@5", "val_recall@10"]


def write_history(rows: list[dict], path: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        df.to_csv(tmp, index=False)
    return df


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(df["step"], df["loss"], lw=0.8, label="train loss")
    val = df.dropna(subset=["val_loss"])
    axes[0].plot(val["step"], val["val_loss"], "o-", label="validation loss")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].plot(df["step"], df["acc"], lw=0.8, label="in-batch accuracy")
    axes[1].set_xlabel("step")
    axes[1].legend()
    for k in (1, 5, 10):
        axes[2].plot(val["step"], val[f"val_recall@{k}"], "o-", label=f"val recall@{k}")
    axes[2].set_xlabel("step")
    axes[2].set_ylim(0, 1)
    axes[2].legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


class Board:
    """TensorBoard scalars (rank 0 only); silently absent when tensorboard is not installed."""

    def __init__(self, folder: Path | None) -> None:
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder))
        except ImportError as e:
            log.warning("no TensorBoard events: %s", e)

    def scalars(self, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key.replace("@", "_at_"), value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
