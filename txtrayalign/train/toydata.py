"""A tiny learnable image-report dataset in the pipeline's file layout, for tests and benchmarks.

Each study draws a finding (shape), a side and a size; its image shows that shape there on a
noisy background and its report says so in a few sentences among filler. Files written match
the contracts in docs/design.md: images/<size>/{index.parquet, toy.h5}, text/{sentences,
sections}.parquet and splits/all.parquet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SHAPES = ["nodule", "opacity", "effusion", "line"]
SIDES = ["left", "right"]
SIZES = ["small", "large"]
FILLER = [
    "No acute osseous abnormality.",
    "The cardiomediastinal silhouette is within normal limits.",
    "No pneumothorax is seen.",
    "Degenerative changes of the spine.",
    "Comparison is made to the prior study.",
]


def draw_image(rng: np.random.Generator, size: int, shape: int, side: int, big: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 60 + 40 * np.exp(-((xx - 0.5) ** 2) / 0.08) + rng.normal(0, 12, (size, size))
    cx = (0.3 if side == 0 else 0.7) + rng.normal(0, 0.03)
    cy = 0.5 + rng.normal(0, 0.05)
    r = (0.18 if big else 0.09) * rng.uniform(0.9, 1.1)
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    if shape == 0:
        mask = d < r
    elif shape == 1:
        mask = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r * 1.5) & (rng.random((size, size)) < 0.6)
    elif shape == 2:
        mask = (yy > cy + 0.1) & (np.abs(xx - cx) < r * 1.3)
    else:
        mask = np.abs(xx - cx - (yy - cy) * 0.5) < r * 0.25
    img = img + mask * 120
    return np.clip(img, 0, 255).astype(np.uint8)


def write_toy_dataset(root: Path, studies: int = 120, image_size: int = 32, seed: int = 0,
                      val_fraction: float = 0.2, max_images_per_study: int = 2) -> dict[str, Path]:
    """Write the toy dataset under `root`; returns the paths of its files."""
    import h5py

    root = Path(root)
    rng = np.random.default_rng(seed)
    img_dir = root / "images" / str(image_size)
    img_dir.mkdir(parents=True, exist_ok=True)
    rows, sentences, sections, images = [], [], [], []
    n_val = int(round(studies * val_fraction))
    sentence_id = 0
    for s in range(studies):
        subject, study = 10000000 + s, 50000000 + s
        split = "validate" if s < n_val else "train"
        shape, side, big = rng.integers(4), rng.integers(2), rng.integers(2)
        key = [f"{SIZES[big].capitalize()} {SHAPES[shape]} in the {SIDES[side]} lung.",
               f"The {SIDES[side]} {SHAPES[shape]} is {SIZES[big]}."]
        body = key + list(rng.choice(FILLER, size=2, replace=False))
        rng.shuffle(body)
        for pos, sent in enumerate(body):
            sentences.append({"sentence_id": sentence_id, "subject_id": subject, "study_id": study, "split": split,
                              "section": "impression", "position": pos, "sentence": sent})
            sentence_id += 1
        sections.append({"subject_id": subject, "study_id": study, "split": split, "train_text": " ".join(body)})
        for d in range(rng.integers(1, max_images_per_study + 1)):
            dicom = f"{s:08x}-{d:08x}-00000000-00000000-00000000"
            images.append(draw_image(rng, image_size, shape, side, big))
            rows.append({"subject_id": subject, "study_id": study, "dicom_id": dicom, "split": split})
    with h5py.File(img_dir / "toy.h5", "w") as f:
        f.create_dataset("images", data=np.stack(images), chunks=(1, image_size, image_size))
        f.create_dataset("dicom_id", data=np.array([r["dicom_id"] for r in rows], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.attrs["size"] = image_size
    index = pd.DataFrame({"dicom_id": [r["dicom_id"] for r in rows], "shard": "toy.h5", "row": np.arange(len(rows))})
    paths = {
        "images_index": img_dir / "index.parquet",
        "sentences": root / "text" / "sentences.parquet",
        "sections": root / "text" / "sections.parquet",
        "split": root / "splits" / "all.parquet",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    index.to_parquet(paths["images_index"], index=False)
    pd.DataFrame(sentences).to_parquet(paths["sentences"], index=False)
    pd.DataFrame(sections).to_parquet(paths["sections"], index=False)
    pd.DataFrame(rows).to_parquet(paths["split"], index=False)
    return paths


def tiny_experiment(image_size: int = 32, **train: object) -> dict:
    """Experiment settings for a seconds-long CPU run on the toy dataset (tests, smoke benchmarks)."""
    from txtrayalign.train.config import resolve

    settings = {
        "epochs": 4, "batch_size": 16, "image_size": image_size, "num_workers": 0, "warmup_steps": 5,
        "lr_image": 1e-3, "lr_text": 1e-3, "lr_head": 1e-3, "checkpoint_every": 5,
    }
    settings.update(train)
    return resolve({"text_encoder": {"vocab_size": 200}, "embed_dim": 32, "train": settings})
