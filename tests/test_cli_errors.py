"""The top-level command line: bad input ends in one line and exit status 2; bugs keep their traceback."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import txtrayalign.cli as cli
from txtrayalign.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
NO_SPACE_ADVICE = ("free some space, or set `results:` to a disk with room, and run the same command again "
                   "(files are written whole or not at all)")


def _fake_command(monkeypatch, exc: BaseException) -> None:
    def run(args):
        raise exc

    monkeypatch.setattr(cli, "_load", lambda name: ((lambda parser: None), run))


@pytest.mark.parametrize(
    "exc, line",
    [
        (InputError("config.yaml: key 'x': not a number"), "config.yaml: key 'x': not a number"),
        (FileNotFoundError(2, "No such file or directory", "a/b.csv"), "a/b.csv: No such file or directory"),
        (FileNotFoundError("a/b.parquet"), "a/b.parquet: No such file or directory"),  # pandas' form
        (IsADirectoryError(21, "Is a directory", "out"), "out: Is a directory"),
        (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
        (UnicodeDecodeError("utf-8", b"\xff\xfe", 0, 1, "invalid start byte"),
         "cannot decode as utf-8 (invalid start byte at byte 0)"),
        (InputError("first line\n  second line"), "first line second line"),
        # a full disk, whichever library meets it (torch.save raises a RuntimeError)
        (OSError(errno.ENOSPC, "No space left on device", "results/x.h5"),
         f"no space left on device writing results/x.h5: {NO_SPACE_ADVICE}"),
        (RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                      "data/0: file write failed: No space left on device"), f"no space left on device: {NO_SPACE_ADVICE}"),
        # an OSError is the files or the machine (h5py on a truncated file), not a bug
        (OSError("Unable to synchronously open file (truncated file: eof = 96)"),
         "Unable to synchronously open file (truncated file: eof = 96)"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, capsys, exc, line):
    _fake_command(monkeypatch, exc)
    assert cli.main(["sections"]) == 2
    assert capsys.readouterr().err == f"txtrayalign sections: error: {line}\n"


def test_bugs_keep_their_traceback_and_debug_shows_user_errors_too(monkeypatch):
    _fake_command(monkeypatch, KeyError("a bug"))
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["sections"])
    _fake_command(monkeypatch, InputError("bad"))
    with pytest.raises(InputError, match="bad"):
        cli.main(["--debug", "sections"])


def test_chexpert_on_a_missing_or_utf16_file_is_one_line(tmp_path):
    """Issue 12: `txtrayalign chexpert` on a missing path or a UTF-16 CSV printed a 29-line traceback.

    Now UTF-16 with a byte-order mark is decoded by the project's one policy and labelled like its
    UTF-8 copy; without a BOM (NUL bytes) and a missing path are one line naming the file, exit 2."""
    text = "no acute disease\n\"large right pleural effusion.\"\n"
    (tmp_path / "u8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    (tmp_path / "u16le.csv").write_bytes(text.encode("utf-16-le"))
    env = {"PYTHONPATH": str(ROOT), "TXTRAYALIGN_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}

    def chexpert(name):
        out = tmp_path / f"{name}.out.csv"
        proc = subprocess.run([sys.executable, "-m", "txtrayalign", "chexpert", "--reports_path",
                               str(tmp_path / name), "--output_path", str(out)], capture_output=True, text=True,
                              env=env, timeout=300)
        return proc, out

    (p8, o8), (p16, o16) = chexpert("u8.csv"), chexpert("u16.csv")
    assert p8.returncode == 0 and p16.returncode == 0, p16.stderr
    assert o16.read_bytes() == o8.read_bytes()
    for name, message in (("none.csv", f"--reports_path {tmp_path / 'none.csv'}: no such file"),
                          ("u16le.csv", f"{tmp_path / 'u16le.csv'}: ")):
        proc, out = chexpert(name)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert "Traceback" not in proc.stderr and lines[-1].startswith("txtrayalign chexpert: error: "), lines
        assert lines[-1].startswith(f"txtrayalign chexpert: error: {message}"), lines
        assert not out.exists()
