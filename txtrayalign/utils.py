"""Small helpers every stage uses: atomic writes, logging, progress bars, code fingerprints."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import logging
import os
import re
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


# atomic_path's temporary name: "." + the file's name + "." + mkstemp's 8 random characters + suffix.
_MKSTEMP_RANDOM = r"[a-z0-9_]{8}"


def remove_stale_temporaries(out: str | os.PathLike, suffix: str) -> list[Path]:
    """Delete what an earlier, killed `atomic_path(out, suffix)` left beside `out`.

    Only that exact name pattern, only in `out`'s folder; each removal is logged. Two jobs writing the
    same output at once are not supported (the workflow never runs them).
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    own = re.compile(re.escape(f".{out.name}.") + _MKSTEMP_RANDOM + re.escape(suffix))
    removed = []
    for candidate in sorted(out.parent.iterdir()):
        if own.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            size = candidate.stat().st_size
            candidate.unlink()
            logging.getLogger(__name__).info(
                "removed %s (%d bytes), left by an earlier interrupted write of %s", candidate, size, out.name)
            removed.append(candidate)
    return removed


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


PACKAGE_ROOT = Path(__file__).resolve().parent
# Package files that are not code of any stage: the settings schema reaches every stage through the
# resolved settings that the rules pass on (a changed default changes those values, hence `params`).
NOT_CODE = frozenset({"config.schema.yaml"})


def _module_file(name: str) -> Path | None:
    """The source file of a `txtrayalign` module or package, None for anything else."""
    parts = name.split(".")
    if parts[0] != "txtrayalign":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    module = base.with_suffix(".py")
    return module if len(parts) > 1 and module.is_file() else None


# What one source file imports and which string literals it holds, by the file's content hash: the
# ast walk is most of a closure's cost, and the same content always gives the same answer.
_SCANS: dict[str, dict] = {}
SCAN_CACHE_VERSION = 1


def _scan(data: bytes, path: Path) -> dict:
    """`imports`: [level, module, [names]] per import statement (functions included); `strings`: the
    string literals that could name package data (one line, relative, at most 200 characters)."""
    imports, strings = [], set()
    for node in ast.walk(ast.parse(data, filename=str(path))):
        if isinstance(node, ast.Import):
            imports.extend([0, alias.name, []] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append([node.level, node.module or "", [alias.name for alias in node.names]])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text and len(text) <= 200 and not text.startswith((".", "/")) and "\n" not in text:
                strings.add(text)
    return {"imports": imports, "strings": sorted(strings)}


def _imported_names(scan: dict, path: Path, name: str) -> set[str]:
    """Every module name an `import` anywhere in the file (functions included) may load."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for level, module, aliases in scan["imports"]:
        if level:
            base = package.split(".")
            base = base[: len(base) - (level - 1)]
            module = ".".join(base + ([module] if module else []))
        names.add(module)
        names.update(f"{module}.{alias}" for alias in aliases)  # `from pkg import submodule`
    return names


def _data_files(scan: dict, path: Path, listings: dict[Path, set[str]]) -> set[Path]:
    """Package data a module names by a string literal: a file, or a folder that is not a package."""
    folder = path.parent
    if folder not in listings:
        listings[folder] = set(os.listdir(folder))
    found: set[Path] = set()
    for text in scan["strings"]:
        if text.split("/", 1)[0] not in listings[folder]:  # cannot exist: spare the stat calls
            continue
        candidate = folder / text
        try:
            if candidate.is_file() and candidate.suffix != ".py" and candidate.name not in NOT_CODE:
                found.add(candidate)
            elif candidate.is_dir() and not (candidate / "__init__.py").exists():
                found.update(f for f in candidate.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                             and f.suffix not in {".py", ".pyc"} and f.name not in NOT_CODE)
        except (OSError, ValueError):
            continue
    return found


class _Sources:
    """Reads each package file once and scans it once (by content hash, optionally from a cache file)."""

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache
        self.data: dict[Path, bytes] = {}
        self.used: dict[str, dict] = {}
        self.listings: dict[Path, set[str]] = {}
        self.modules: dict[str, Path | None] = {}
        self.stored: dict[str, dict] = {}
        if cache is not None:
            with contextlib.suppress(OSError, ValueError):
                stored = json.loads(cache.read_text(encoding="utf-8"))
                if stored.get("version") == SCAN_CACHE_VERSION:
                    self.stored = stored["files"]

    def read(self, path: Path) -> bytes:
        if path not in self.data:
            self.data[path] = path.read_bytes()
        return self.data[path]

    def scan(self, path: Path) -> dict:
        data = self.read(path)
        key = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key not in self.used:
            self.used[key] = _SCANS.get(key) or self.stored.get(key) or _scan(data, path)
            _SCANS[key] = self.used[key]
        return self.used[key]

    def closure(self, modules: Iterable[str]) -> list[Path]:
        files: dict[str, Path] = {}
        todo = list(modules)
        while todo:
            parts = todo.pop().split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c first runs a/__init__ and a/b/__init__
                name = ".".join(parts[:i])
                if name in files:
                    continue
                if name not in self.modules:
                    self.modules[name] = _module_file(name)
                source = self.modules[name]
                if source is None:
                    continue
                files[name] = source
                todo.extend(_imported_names(self.scan(source), source, name))
        found = set(files.values())
        for source in list(found):
            found |= _data_files(self.scan(source), source, self.listings)
        return sorted(found)

    def fingerprint(self, items: Iterable[str | os.PathLike]) -> str:
        files: set[Path] = set()
        for item in items:
            if str(item).startswith("txtrayalign"):
                files.update(self.closure([str(item)]))
                continue
            p = Path(item)
            if not p.is_absolute():
                p = PACKAGE_ROOT / p
            candidates = p.rglob("*") if p.is_dir() else [p]
            files.update(f for f in candidates if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc")
        h = hashlib.sha256()
        for f in sorted(files):
            h.update(str(f.relative_to(PACKAGE_ROOT)).encode())
            h.update(self.read(f))
        return h.hexdigest()[:16]

    def save(self) -> None:
        """Keep the scans of this run's files (only those) in the cache file; a failure costs only time."""
        if self.cache is None or self.used == self.stored:
            return
        with contextlib.suppress(OSError):
            with atomic_path(self.cache) as tmp:
                tmp.write_text(json.dumps({"version": SCAN_CACHE_VERSION, "files": self.used}), encoding="utf-8")


def module_closure(*modules: str) -> list[Path]:
    """The files a stage runs: its `txtrayalign` modules, everything they import from the package
    (transitively, the packages' `__init__` files and imports inside functions included), and the
    package data those modules name (e.g. the labeller's phrase YAMLs)."""
    return _Sources().closure(modules)


def code_fingerprint(*modules_or_paths: str | os.PathLike) -> str:
    """A short hash of the code behind a stage, so a change of that code reruns the stage.

    Each item is a module name (`txtrayalign.train.cli`: the module with its import closure, see
    `module_closure`) or a file or folder relative to the package (all files in it). Rules put the
    result in `params`; training stores it in its checkpoints.
    """
    return _Sources().fingerprint(modules_or_paths)


def code_fingerprints(stages: dict[str, str | tuple[str, ...]], cache: str | os.PathLike | None = None
                      ) -> dict[str, str]:
    """`code_fingerprint` of every stage at once ({stage: module or modules}): each file is read and
    scanned once for all of them. `cache`: a JSON file keeping the scans by content hash between calls
    (the workflow keeps one in .snakemake/), so a dry run parses no Python file it parsed before."""
    sources = _Sources(Path(cache) if cache is not None else None)
    out = {stage: sources.fingerprint([items] if isinstance(items, str) else items) for stage, items in stages.items()}
    sources.save()
    return out


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """A content hash of a file (BLAKE2b, read in chunks)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
