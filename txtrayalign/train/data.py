"""Image-report pairs from the HDF5 shards: dataset, cheap uint8 augmentation, sampler, batched tokenisation.

Every random choice of a training sample (crop, rotation, jitter, which sentences) comes from a
generator seeded by (seed, epoch, index), and the batch order from one seeded by (seed, epoch):
the data a step sees is a function of (seed, epoch, step) only, so a resumed run sees exactly
what an unbroken one would, whatever the number of workers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from txtrayalign.errors import InputError
from txtrayalign.images.shards import ShardReader, open_shard
from txtrayalign.tables import read_table
from txtrayalign.utils import file_digest

log = logging.getLogger(__name__)


@dataclass
class PairTable:
    """The pairs of one split: per image its id, study and study text index."""

    dicom_id: np.ndarray
    study_id: np.ndarray
    text_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.dicom_id)


@dataclass
class PairData:
    splits: dict[str, PairTable]
    texts: list[list[str]]  # per study: its sentences (sentences mode) or [train_text] (section mode)
    reader: ShardReader  # lazy per-process HDF5 handles


def load_pairs(split_path: Path, images_index: Path, sentences_path: Path | None, sections_path: Path | None,
               text_mode: str) -> PairData:
    """Join the split, the shard index and the study texts; drop (and count) images without either."""
    split = read_table(split_path, "split", ["subject_id", "study_id", "dicom_id", "split"])
    reader = ShardReader(images_index)
    if text_mode == "sentences":
        if sentences_path is None:
            raise InputError("text_mode 'sentences' needs --sentences")
        sent = read_table(sentences_path, "sentences", ["study_id", "sentence"])
        sent = sent[sent["sentence"].astype(str).str.strip() != ""]
        grouped = sent.groupby("study_id", sort=False)["sentence"].agg(list)
    else:
        if sections_path is None:
            raise InputError("text_mode 'section' needs --sections")
        sec = read_table(sections_path, "sections", ["study_id", "train_text"])
        sec = sec[sec["train_text"].fillna("").astype(str).str.strip() != ""]
        grouped = sec.drop_duplicates("study_id").set_index("study_id")["train_text"].map(lambda t: [str(t)])
    study_to_text = {int(s): i for i, s in enumerate(grouped.index)}
    texts = [[str(x) for x in v] for v in grouped.to_numpy()]

    in_shards = split["dicom_id"].astype(str).map(lambda d: d in reader)
    no_image = int((~in_shards).sum())
    merged = split[in_shards]
    merged = merged.assign(text_idx=merged["study_id"].map(lambda s: study_to_text.get(int(s), -1)))
    no_text = int((merged["text_idx"] < 0).sum())
    merged = merged[merged["text_idx"] >= 0]
    if no_image or no_text:
        log.warning("dropped %d image(s) missing from the shard index %s and %d whose study has no text (%s)",
                    no_image, images_index, no_text, text_mode)
    tables = {}
    for name, part in merged.groupby("split"):
        part = part.sort_values("dicom_id", kind="stable")
        tables[str(name)] = PairTable(
            dicom_id=part["dicom_id"].astype(str).to_numpy(), study_id=part["study_id"].to_numpy(np.int64),
            text_idx=part["text_idx"].to_numpy(np.int64),
        )
    log.info("pairs per split: %s", {k: len(v) for k, v in tables.items()})
    if "train" not in tables:
        text_path = sentences_path if text_mode == "sentences" else sections_path
        raise InputError(no_training_pairs(split, in_shards, split_path, images_index, text_path))
    return PairData(tables, texts, reader)


def no_training_pairs(split, in_shards, split_path: Path, images_index: Path, text_path: Path | None) -> str:
    """Why no training pair is left, naming the input that is empty: the split, the images or the text."""
    is_train = split["split"].astype(str) == "train"
    if not is_train.any():
        counts = split["split"].astype(str).value_counts().to_dict()
        return f"no training pairs: {split_path} has no image in the train split (it holds {counts or 'none'})"
    with_image = int((is_train & in_shards).sum())
    if not with_image:
        return (f"no training pairs: none of the {int(is_train.sum())} training images of {split_path} is in "
                f"{images_index} (the images stage skipped them: see its skipped.parquet)")
    return (f"no training pairs: none of the {with_image} training images' studies has a text in {text_path} "
            "(its train_text is empty: see text/problems.parquet and the setting text.train_section)")


def text_input(text_mode: str, sentences_path: Path | None, sections_path: Path | None) -> tuple[str, Path | None]:
    """The text file a run of this mode reads: ("sentences", path) or ("sections", path)."""
    return ("sentences", sentences_path) if text_mode == "sentences" else ("sections", sections_path)


SHARD_SAMPLE_ROWS = 4  # images per shard read for the fingerprint (first, last and two between)


def shards_fingerprint(images_index: Path) -> str:
    """A cheap fingerprint of the images a run reads: the merged index, and per shard its settings
    attributes (size, resize mode, window, source, code version), its dicom_id list, the shape and
    dtype of its images, its size in bytes and a few sampled images. No pass over the pixel data."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(file_digest(images_index).encode())
    shards = sorted(read_table(images_index, "image_shard_index", ["shard"])["shard"].astype(str).unique())
    for name in shards:
        path = Path(images_index).parent / name
        h.update(f"{name}:{path.stat().st_size}".encode())
        with open_shard(path) as f:
            for key in sorted(f.attrs):
                h.update(f"{key}={f.attrs[key]!s}".encode())
            images = f["images"]
            h.update(f"{images.shape}{images.dtype}".encode())
            h.update(np.asarray(f["dicom_id"][()]).astype(bytes).tobytes())
            if len(images):
                for row in sorted({int(r) for r in np.linspace(0, len(images) - 1, SHARD_SAMPLE_ROWS)}):
                    h.update(np.ascontiguousarray(images[row]).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- augmentation on uint8


try:  # OpenCV's fixed-point warp is ~10x faster than PIL's generic affine transform; PIL is the fallback
    import cv2

    cv2.setNumThreads(1)
except ImportError:  # pragma: no cover - depends on the environment
    cv2 = None


def _warp(img: np.ndarray, coeffs: tuple[float, ...], size: int) -> np.ndarray:
    """Bilinear affine warp to size x size; `coeffs` map output pixel coordinates to input ones."""
    if cv2 is not None:
        m = np.array(coeffs, dtype=np.float64).reshape(2, 3)
        return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = Image.fromarray(img).transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(out)


def augment(img: np.ndarray, size: int, rng: np.random.Generator, crop_scale: tuple[float, float],
            rotation: float, brightness: float, contrast: float) -> np.ndarray:
    """Random resized crop + rotation (one bilinear affine warp) and brightness/contrast (one lookup table)."""
    h, w = img.shape
    area = rng.uniform(crop_scale[0], crop_scale[1]) * h * w
    ratio = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    cw, ch = min(w, math.sqrt(area * ratio)), min(h, math.sqrt(area / ratio))
    cx, cy = rng.uniform(cw / 2, w - cw / 2), rng.uniform(ch / 2, h - ch / 2)
    theta = math.radians(rng.uniform(-rotation, rotation)) if rotation else 0.0
    cos, sin = math.cos(theta), math.sin(theta)
    sx, sy = cw / size, ch / size
    a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
    half = size / 2
    arr = _warp(img, (a, b, cx - (a + b) * half, d, e, cy - (d + e) * half), size)
    bf = rng.uniform(1 - brightness, 1 + brightness) if brightness else 1.0
    cf = rng.uniform(1 - contrast, 1 + contrast) if contrast else 1.0
    if bf != 1.0 or cf != 1.0:
        mean = float(arr[::4, ::4].mean()) * bf
        lut = np.clip(np.arange(256, dtype=np.float32) * (bf * cf) + (1 - cf) * mean, 0, 255).astype(np.uint8)
        arr = cv2.LUT(arr, lut) if cv2 is not None else lut[arr]
    return np.ascontiguousarray(arr)


def centre_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Deterministic resize of the whole (square) image to size x size."""
    if img.shape == (size, size):
        return img
    if cv2 is not None:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


# ---------------------------------------------------------------- datasets


class TrainPairs(torch.utils.data.Dataset):
    """Items are addressed by (epoch, step, index): the randomness of a sample is seeded by (seed, epoch, index)."""

    def __init__(self, data: PairData, table: PairTable, image_size: int, sentences_per_image: int, seed: int,
                 augment_cfg: dict) -> None:
        self.reader, self.table, self.texts = data.reader, table, data.texts
        self.image_size, self.k, self.seed = image_size, sentences_per_image, seed
        self.aug = augment_cfg

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, step, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        img = augment(self.reader.get(self.table.dicom_id[i]), self.image_size, rng, tuple(self.aug["crop_scale"]),
                      self.aug["rotation"], self.aug["brightness"], self.aug["contrast"])
        sentences = self.texts[self.table.text_idx[i]]
        if len(sentences) > self.k:
            chosen = np.sort(rng.choice(len(sentences), self.k, replace=False))
            sentences = [sentences[j] for j in chosen]
        return img, " ".join(sentences), epoch, step


class EvalPairs(torch.utils.data.Dataset):
    """Deterministic: centre resize and the study's first sentences."""

    def __init__(self, data: PairData, table: PairTable, image_size: int, sentences_per_image: int) -> None:
        self.reader, self.table, self.texts = data.reader, table, data.texts
        self.image_size, self.k = image_size, sentences_per_image

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        img = centre_resize(self.reader.get(self.table.dicom_id[i]), self.image_size)
        return img, " ".join(self.texts[self.table.text_idx[i]][: self.k]), -1, -1


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of (epoch, step, index) from (start_epoch, start_step) to the end of training.

    Each epoch is a permutation seeded by (seed, epoch), cut into `global_batch`-sized batches
    (the incomplete last one dropped); this rank takes its contiguous slice of each batch.
    """

    def __init__(self, n: int, global_batch: int, seed: int, epochs: int, start_epoch: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise InputError(f"train.batch_size {global_batch} is not divisible by the number of processes {world_size}")
        if n < global_batch:
            raise InputError(f"only {n} training pairs, fewer than one batch of {global_batch}; lower train.batch_size")
        self.n, self.b, self.seed, self.epochs = n, global_batch, seed, epochs
        self.start_epoch, self.start_step, self.rank, self.world = start_epoch, start_step, rank, world_size
        self.steps_per_epoch = n // global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        local = self.b // self.world
        for epoch in range(self.start_epoch, self.epochs):
            perm = self.permutation(epoch).tolist()
            first = self.start_step if epoch == self.start_epoch else 0
            for step in range(first, self.steps_per_epoch):
                batch = perm[step * self.b:(step + 1) * self.b][self.rank * local:(self.rank + 1) * local]
                yield [(epoch, step, i) for i in batch]

    def __len__(self) -> int:
        total = (self.epochs - self.start_epoch) * self.steps_per_epoch - self.start_step
        return max(0, total)


class Collate:
    """Stack uint8 images and tokenise the batch's texts in one call to the fast tokenizer."""

    def __init__(self, tokenizer, max_length: int, pad_to_max: bool = False) -> None:
        self.tokenizer, self.max_length, self.pad_to_max = tokenizer, max_length, pad_to_max

    def __call__(self, items):
        images = torch.from_numpy(np.stack([it[0] for it in items]))
        tok = self.tokenizer(
            [it[1] for it in items], padding="max_length" if self.pad_to_max else True, truncation=True,
            max_length=self.max_length, return_tensors="pt", return_token_type_ids=False,
        )
        return {"images": images, "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "epoch": items[0][2], "step": items[0][3], "texts": [it[1] for it in items]}


def training_corpus(data: PairData) -> list[str]:
    """The texts of the training studies (for a from-scratch vocabulary)."""
    table = data.splits.get("train")
    if table is None or not len(table):
        raise InputError("no training pairs")
    return [s for t in np.unique(table.text_idx) for s in data.texts[t]]
