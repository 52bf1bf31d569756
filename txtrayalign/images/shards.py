"""HDF5 image shards: write one (streamed, atomic), merge many into one index, read them back.

A shard holds dataset `images` (N, S, S) uint8 chunked (1, S, S), dataset `dicom_id` (N,) UTF-8
strings, and attrs `size`, `resize_mode`, `window`, `source`, `code_version` (see docs/design.md).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.errors import InputError
from txtrayalign.images.decode import ImageDecodeError
from txtrayalign.images.preprocess import load_preprocessed_with_note
from txtrayalign.utils import atomic_path, code_fingerprint, progress, write_parquet_atomic

log = logging.getLogger(__name__)

COMPRESSIONS: tuple[str, ...] = ("none", "gzip", "lzf")
SKIPPED_COLUMNS = ["path", "dicom_id", "error_kind", "message"]
MERGED_INDEX_COLUMNS = ["dicom_id", "shard", "row"]
SHARD_TMP_SUFFIX = ".h5.tmp"
PARQUET_TMP_SUFFIX = ".parquet.tmp"  # what utils.write_parquet_atomic writes under


class SkippedShareExceeded(RuntimeError):
    """More files failed to decode than the shard allows; the shard is not written."""

    def __init__(self, skipped: pd.DataFrame, total: int, max_share: float) -> None:
        counts = skipped["error_kind"].value_counts().to_dict()
        super().__init__(
            f"{len(skipped)} of {total} images could not be decoded (share {len(skipped) / max(total, 1):.4f} "
            f"> allowed {max_share}); by kind: {counts}; first: {skipped['path'].iloc[0]}: "
            f"{skipped['message'].iloc[0]}"
        )
        self.skipped = skipped


@dataclass(frozen=True)
class ShardSettings:
    """How every image of a shard is preprocessed."""

    size: int
    resize_mode: str = "center_crop"
    window: str = "bitdepth"


def open_shard(path: str | os.PathLike):
    """The HDF5 shard at `path`, read-only; a damaged one (cut short, not HDF5) is an InputError naming
    it and the next step: the workflow rebuilds a deleted shard with the same command."""
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = " ".join(str(exc).split())
        raise InputError(f"{path}: not a readable HDF5 image shard ({reason}); delete it and rerun the same "
                         "snakemake command, which rebuilds it") from None


def code_version() -> str:
    """The package version plus a fingerprint of the images package, stored in each shard."""
    from txtrayalign import __version__

    return f"{__version__}+{code_fingerprint('images')}"


def shard_name(group: str, part: int = 1, parts: int = 1) -> str:
    """`p10`, or `p10-2of4` when a group is split into several parts."""
    return group if parts == 1 else f"{group}-{part}of{parts}"


def select_shard_rows(index: pd.DataFrame, group: str, part: int = 1, parts: int = 1) -> pd.DataFrame:
    """The rows of `index` in `group`, sorted by (subject_id, study_id, dicom_id), then the
    `part`-th (1-based) of `parts` contiguous, near-equal row ranges."""
    if parts < 1 or not 1 <= part <= parts:
        raise ValueError(f"need 1 <= part <= parts, got part={part}, parts={parts}")
    rows = index.loc[index["group"] == group]
    keys = [c for c in ("subject_id", "study_id", "dicom_id") if c in rows.columns]
    rows = rows.sort_values(keys, kind="stable").reset_index(drop=True)
    bounds = np.linspace(0, len(rows), parts + 1).round().astype(int)
    return rows.iloc[bounds[part - 1] : bounds[part]].reset_index(drop=True)


# --------------------------------------------------------------------------------------- decoding

_SETTINGS: ShardSettings | None = None


def _init_worker(settings: ShardSettings) -> None:
    global _SETTINGS
    _SETTINGS = settings


def _decode_batch(batch: Sequence[tuple[int, str]]) -> list[tuple[int, np.ndarray | None, str, str]]:
    """Preprocess a batch of (position, path); failures come back as (position, None, kind, message)."""
    assert _SETTINGS is not None, "worker not initialised"
    out = []
    for pos, path in batch:
        try:
            image, note = load_preprocessed_with_note(path, _SETTINGS.size, _SETTINGS.resize_mode,
                                                      _SETTINGS.window)
            out.append((pos, image, "", note))  # stored; the note (odd geometry) goes to the log
        except ImageDecodeError as exc:
            out.append((pos, None, exc.kind, exc.message))
        except Exception as exc:  # noqa: BLE001 - one odd file must not end a 40k-image job
            out.append((pos, None, "decode_error", f"{path}: {type(exc).__name__}: {exc}"))
    return out


def decode_in_order(
    paths: Sequence[str], settings: ShardSettings, workers: int = 1, chunksize: int = 8
) -> Iterator[tuple[int, np.ndarray | None, str, str]]:
    """Yield (position, image or None, error kind, message) for `paths`, in order.

    With workers > 1, batches of `chunksize` go to a process pool like `Pool.imap`, but at most
    2 * workers batches are in flight, so finished images never pile up in memory when writing is
    slower than decoding (plain `imap` has no such back-pressure).
    """
    batches = [
        [(i, p) for i, p in enumerate(paths[s : s + chunksize], start=s)]
        for s in range(0, len(paths), chunksize)
    ]
    if workers <= 1:
        _init_worker(settings)
        for batch in batches:
            yield from _decode_batch(batch)
        return
    ctx = mp.get_context("forkserver")  # fresh workers: no inherited HDF5 handles or threads
    ctx.set_forkserver_preload(["txtrayalign.images.preprocess"])
    with ctx.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        pending: deque = deque()
        todo = iter(batches)
        for batch in todo:
            pending.append(pool.apply_async(_decode_batch, (batch,)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            results = pending.popleft().get()
            next_batch = next(todo, None)
            if next_batch is not None:
                pending.append(pool.apply_async(_decode_batch, (next_batch,)))
            yield from results


# ---------------------------------------------------------------------------------------- writing


def write_shard(
    rows: pd.DataFrame,
    root: str | os.PathLike,
    out: str | os.PathLike,
    settings: ShardSettings,
    *,
    compression: str = "none",
    workers: int = 1,
    chunksize: int = 8,
    max_skipped_share: float = 0.01,
) -> tuple[int, pd.DataFrame]:
    """Decode `rows` (columns dicom_id, path relative to `root`) into the HDF5 shard `out`.

    Images are streamed into a preallocated dataset that is shrunk at the end, so memory does not
    grow with the shard. Returns (images written, skipped DataFrame with SKIPPED_COLUMNS). Raises
    `SkippedShareExceeded` (and writes nothing) when more than `max_skipped_share` of the rows fail;
    the job stops as soon as that is certain.
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    root = Path(root)
    total = len(rows)
    size = settings.size
    allowed = int(np.floor(max_skipped_share * total + 1e-9))
    dicom_ids = rows["dicom_id"].astype(str).tolist()
    rel_paths = rows["path"].astype(str).tolist()
    skipped: list[dict] = []
    written = 0
    results = decode_in_order([str(root / p) for p in rel_paths], settings, workers, chunksize)
    with closing(results), atomic_path(out, suffix=SHARD_TMP_SUFFIX) as tmp, h5py.File(tmp, "w") as h5:
        images, ids = _growable_datasets(h5, total, size, compression)
        for pos, image, kind, message in progress(
            results, desc=f"shard {Path(out).stem}", total=total, unit="img"
        ):
            if image is None:
                skipped.append({"path": rel_paths[pos], "dicom_id": dicom_ids[pos], "error_kind": kind,
                                "message": message})
                log.warning("skipped %s (%s): %s", rel_paths[pos], kind, message)
                if len(skipped) > allowed:
                    raise SkippedShareExceeded(
                        pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), total, max_skipped_share
                    )
                continue
            if message:
                log.warning("stored %s, but: %s", rel_paths[pos], message)
            images[written] = image
            ids[written] = dicom_ids[pos]
            written += 1
        images.resize(written, axis=0)
        ids.resize(written, axis=0)
        h5.attrs.update(size=size, resize_mode=settings.resize_mode, window=settings.window, source=str(root),
                        code_version=code_version())
    return written, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def _growable_datasets(h5, total: int, size: int, compression: str):
    """The shard's `images` (total, size, size) uint8 and `dicom_id` datasets, preallocated for every
    row and resizable: the writer shrinks them to the images it stored."""
    import h5py

    images = h5.create_dataset("images", shape=(total, size, size), maxshape=(None, size, size), dtype=np.uint8,
                               chunks=(1, size, size), compression=None if compression == "none" else compression)
    ids = h5.create_dataset("dicom_id", shape=(total,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"))
    return images, ids


# ---------------------------------------------------------------------------------------- merging


def merge_shards(
    shards: Sequence[str | os.PathLike],
    skipped: Sequence[str | os.PathLike],
    out_index: str | os.PathLike,
    out_skipped: str | os.PathLike,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one index (dicom_id, shard, row) over `shards` and one table of all skips.

    `shard` is the shard's path relative to the index file's folder (its file name when they sit
    together, as the pipeline lays them out). Shards must agree on size, resize_mode and window,
    and a dicom_id may appear in one shard only.
    """
    out_dir = Path(out_index).resolve().parent
    frames = []
    reference: dict | None = None
    for shard in shards:
        shard = Path(shard)
        with open_shard(shard) as h5:
            for key in ("images", "dicom_id"):
                if key not in h5:
                    raise ValueError(f"{shard}: not an image shard (no {key!r} dataset)")
            settings = {k: h5.attrs.get(k) for k in ("size", "resize_mode", "window")}
            settings = {k: (v.item() if hasattr(v, "item") else v) for k, v in settings.items()}
            ids = h5["dicom_id"].asstr()[:]
        if reference is None:
            reference = {"shard": shard, **settings}
        elif any(settings[k] != reference[k] for k in settings):
            raise ValueError(f"{shard}: settings {settings} differ from {reference['shard']}'s {reference}")
        name = os.path.relpath(shard.resolve(), out_dir)
        frames.append(
            pd.DataFrame({"dicom_id": ids, "shard": name, "row": np.arange(len(ids), dtype=np.int64)})
        )
    index = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {"dicom_id": pd.Series(dtype=str), "shard": pd.Series(dtype=str), "row": pd.Series(dtype="int64")}
        )
    )
    dup = index["dicom_id"].duplicated(keep=False)
    if dup.any():
        first = index.loc[dup].sort_values("dicom_id").head(2)
        raise ValueError(
            f"dicom_id {first['dicom_id'].iloc[0]!r} is in more than one shard: {list(first['shard'])}"
        )
    skipped_frames = [pd.read_parquet(p, columns=SKIPPED_COLUMNS) for p in skipped]
    skipped_all = (
        pd.concat(skipped_frames, ignore_index=True)
        if skipped_frames
        else pd.DataFrame({c: pd.Series(dtype=str) for c in SKIPPED_COLUMNS})
    )
    write_parquet_atomic(index[MERGED_INDEX_COLUMNS], out_index)
    write_parquet_atomic(skipped_all, out_skipped)
    return index, skipped_all


# ---------------------------------------------------------------------------------------- reading


class ShardReader:
    """Random access to preprocessed images by dicom_id, over the merged index of the shards.

    HDF5 handles are opened lazily, on first use in each process, and reopened after a fork
    (checked with os.getpid()), so one reader can be shared with DataLoader workers. Pickling
    (spawned workers) drops the handles too.
    """

    def __init__(self, index_parquet: str | os.PathLike) -> None:
        index_parquet = Path(index_parquet)
        df = pd.read_parquet(index_parquet)
        missing = [c for c in MERGED_INDEX_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{index_parquet}: missing column(s) {missing}; expected {MERGED_INDEX_COLUMNS}")
        self._base = index_parquet.parent
        codes, names = pd.factorize(df["shard"])
        self._shard_paths = [self._base / n for n in names]
        self._ids = df["dicom_id"].astype(str).tolist()
        self._shard_code = codes.astype(np.int32)
        self._row = df["row"].to_numpy(dtype=np.int64)
        self._pos = {d: i for i, d in enumerate(self._ids)}
        self._handles: dict[int, tuple] = {}  # shard code -> (h5py.File, its `images` dataset)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, dicom_id: object) -> bool:
        return dicom_id in self._pos

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def _images(self, code: int):
        if os.getpid() != self._pid:  # forked: the parent's handles are not ours to use
            self._handles = {}
            self._pid = os.getpid()
        opened = self._handles.get(code)
        if opened is None:
            handle = open_shard(self._shard_paths[code])
            # keep the dataset object too: looking it up by name costs more than reading one image
            opened = self._handles[code] = (handle, handle["images"])
        return opened[1]

    def _locate(self, dicom_id: str) -> int:
        try:
            return self._pos[dicom_id]
        except KeyError:
            raise KeyError(f"dicom_id {dicom_id!r} is not in the image shards") from None

    def get(self, dicom_id: str) -> np.ndarray:
        """The (S, S) uint8 image of `dicom_id`."""
        i = self._locate(dicom_id)
        return self._images(int(self._shard_code[i]))[int(self._row[i])]

    def get_many(self, dicom_ids: Sequence[str]) -> np.ndarray:
        """(len(ids), S, S) uint8, in the order asked; one sorted read per shard."""
        positions = np.array([self._locate(d) for d in dicom_ids], dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        out: np.ndarray | None = None
        codes = self._shard_code[positions]
        for code in np.unique(codes):
            where = np.nonzero(codes == code)[0]
            rows = self._row[positions[where]]
            unique_rows, inverse = np.unique(rows, return_inverse=True)
            data = self._images(int(code))[unique_rows]
            if out is None:
                out = np.empty((len(positions), *data.shape[1:]), dtype=np.uint8)
            out[where] = data[inverse]
        return out

    def close(self) -> None:
        if os.getpid() == self._pid:
            for handle, _ in self._handles.values():
                handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
