"""Small helpers every stage uses: atomic writes, logging, progress bars, code fingerprints."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("txtrayalign")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or kill inside the block leaves no file at `path`, so nothing half-written looks done.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix if suffix is not None else ".tmp", dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates files readable by their owner alone; give the result the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_parquet_atomic(df, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to parquet atomically (no index column)."""
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def setup_logging(log_file: str | os.PathLike | None = None, verbose: bool = False) -> None:
    """Log to stderr and, when given, to `log_file` too."""
    level = logging.DEBUG if verbose else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm progress bar on stderr; quiet when TXTRAYALIGN_NO_PROGRESS is set."""
    from tqdm.auto import tqdm

    disable = bool(os.environ.get("TXTRAYALIGN_NO_PROGRESS"))
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, mininterval=1.0, file=sys.stderr)


def code_fingerprint(*modules_or_paths: str | os.PathLike) -> str:
    """A short hash of the source files (or package folders) that define a stage.

    Rules put it in `params` so Snakemake reruns a stage when its code changes.
    """
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for item in modules_or_paths:
        p = Path(item)
        if not p.is_absolute():
            p = root / p
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in {".pyc"}:
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]
