"""Image decoding, resizing and HDF5 shards: real files, synthetic DICOMs, faults, atomicity."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from txtrayalign.cli import main as cli_main
from txtrayalign.images import ERROR_KINDS, ImageDecodeError, decode_image, load_preprocessed, resize_square
from txtrayalign.images.shards import ShardReader, select_shard_rows, shard_name

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ helpers


def chest_phantom(h: int = 96, w: int = 80) -> np.ndarray:
    """0..1 floats: bright body and mediastinum, two dark lungs (bone/tissue bright, air dark)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = (x - w / 2) / (w / 2), (y - h / 2) / (h / 2)
    lungs = sum(np.clip(1 - ((u - cx) / 0.3) ** 2 - ((v + 0.1) / 0.6) ** 2, 0, 1) for cx in (-0.45, 0.45))
    return np.clip(0.85 - 0.7 * lungs, 0, 1)


def lungs_darker(img: np.ndarray) -> tuple[float, float]:
    """(mean of the central vertical strip, mean of both lateral strips) at mid height.

    Rows 35-55 % of the height; centre: columns 40-60 %; lateral: 20-35 % and 65-80 % (wide enough
    for a patient who is not centred, e.g. nih_00027426_000)."""
    h, w = img.shape
    rows = slice(int(0.35 * h), int(0.55 * h))
    centre = img[rows, int(0.4 * w) : int(0.6 * w)].mean()
    lateral = np.concatenate(
        [img[rows, int(0.2 * w) : int(0.35 * w)].ravel(), img[rows, int(0.65 * w) : int(0.8 * w)].ravel()]
    ).mean()
    return float(centre), float(lateral)


def make_dicom(
    stored: np.ndarray,
    path: Path | None = None,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
    **elements,
) -> FileDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path or "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    alloc = 8 if stored.dtype.itemsize == 1 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = alloc, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    if path is not None:
        if preamble:
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
        else:  # bare data set: no 128-byte preamble, no DICM, no file meta, Implicit VR LE
            del ds.file_meta
            ds.preamble = None
            pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return ds


def stored12(phantom: np.ndarray) -> np.ndarray:
    return np.rint(phantom * 4095).astype(np.uint16)


# ------------------------------------------------------------------------------- real shared files


def _shared_files() -> list[str]:
    folder = ROOT.parent / "shared" / "testdata"
    return sorted(
        str(p.relative_to(folder)) for p in folder.glob("*/*") if p.suffix in {".dcm", ".png", ".jpg"}
    )


@pytest.mark.parametrize("name", _shared_files() or ["dicom/absent.dcm"])
def test_shared_real_file_is_a_plausible_chest(shared_testdata, name):
    img = decode_image(shared_testdata / name)
    assert img.dtype == np.uint8 and img.ndim == 2 and min(img.shape) >= 256
    assert img.std() > 25, "contrast too low: windowing/bit depth went wrong"
    assert 40 < img.mean() < 220
    centre, lateral = lungs_darker(img)
    assert centre > lateral + 15, (
        f"lungs ({lateral:.0f}) not darker than mediastinum ({centre:.0f}): inverted?"
    )
    small = load_preprocessed(shared_testdata / name, 128)
    assert small.shape == (128, 128) and small.dtype == np.uint8
    c, lat = lungs_darker(small)
    assert c > lat + 10


def test_shared_monochrome1_files_come_out_like_monochrome2(shared_testdata):
    dicoms = shared_testdata / "dicom"
    mono1 = [p for p in sorted(dicoms.glob("*.dcm")) if "mono1" in p.name]
    mono2 = [p for p in sorted(dicoms.glob("*.dcm")) if "mono2" in p.name]
    assert mono1 and mono2
    for p in mono1:
        assert (
            pydicom.dcmread(p, force=True, stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME1"
        )
    signs = {p.name: np.sign(np.subtract(*lungs_darker(decode_image(p)))) for p in mono1 + mono2}
    assert set(signs.values()) == {1.0}, signs


def test_shared_no_preamble_file_needs_force(shared_testdata):
    path = shared_testdata / "dicom" / "cr_mono1_chest_no_preamble.dcm"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(path)
    assert decode_image(path).shape == (440, 440)


# ---------------------------------------------------------------------------------- DICOM semantics


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path):
    data = stored12(chest_phantom())
    make_dicom(data, tmp_path / "m2.dcm")
    make_dicom(4095 - data, tmp_path / "m1.dcm", photometric="MONOCHROME1")
    m2, m1 = decode_image(tmp_path / "m2.dcm"), decode_image(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(m1, m2)
    centre, lateral = lungs_darker(m1)
    assert centre > lateral + 50


def test_bitdepth_window_uses_bits_stored_not_image_max(tmp_path):
    data = np.rint(chest_phantom() * 1000).astype(np.uint16)  # a dim 12-bit image, max 850
    make_dicom(data, tmp_path / "dim.dcm", bits_stored=12)
    out = decode_image(tmp_path / "dim.dcm", window="bitdepth")
    np.testing.assert_array_equal(out, np.rint(data * 255.0 / 4095).astype(np.uint8))
    stretched = decode_image(tmp_path / "dim.dcm", window="percentile")
    assert stretched.max() == 255 and stretched.min() == 0


def test_high_bits_beyond_bits_stored_are_masked(tmp_path):
    data = stored12(chest_phantom())
    make_dicom(data | 0xF000, tmp_path / "dirty.dcm")  # garbage in the 4 unused high bits
    make_dicom(data, tmp_path / "clean.dcm")
    np.testing.assert_array_equal(decode_image(tmp_path / "dirty.dcm"), decode_image(tmp_path / "clean.dcm"))


def test_rescale_and_window_centre_width(tmp_path):
    data = stored12(chest_phantom())
    make_dicom(
        data,
        tmp_path / "win.dcm",
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=3000,
        WindowWidth=4000,
    )
    # DICOM LINEAR window on the rescaled values, output spanning the rescaled 12-bit range
    value = data.astype(np.float64) * 2 - 1000
    y_min, y_max = -1000.0, 4095 * 2 - 1000.0
    c, w = 3000 - 0.5, 4000 - 1.0
    windowed = np.clip(((value - c) / w + 0.5) * (y_max - y_min) + y_min, y_min, y_max)
    expected = np.rint((windowed - y_min) * 255 / (y_max - y_min)).astype(np.uint8)
    got = decode_image(tmp_path / "win.dcm")
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_signed_pixel_data(tmp_path):
    data = (stored12(chest_phantom()).astype(np.int16) - 2048).astype(np.int16)
    make_dicom(data, tmp_path / "signed.dcm")
    out = decode_image(tmp_path / "signed.dcm")
    np.testing.assert_array_equal(out, np.rint((data + 2048) * 255.0 / 4095).astype(np.uint8))


def test_dicom_without_preamble_or_file_meta(tmp_path):
    data = stored12(chest_phantom())
    make_dicom(data, tmp_path / "bare.dcm", preamble=False)
    make_dicom(data, tmp_path / "full.dcm")
    assert (tmp_path / "bare.dcm").read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(decode_image(tmp_path / "bare.dcm"), decode_image(tmp_path / "full.dcm"))


@pytest.mark.parametrize("syntax", [pydicom.uid.RLELossless, pydicom.uid.JPEG2000Lossless])
def test_compressed_dicom_decodes_like_uncompressed(tmp_path, syntax):
    data = stored12(chest_phantom())
    make_dicom(data, tmp_path / "plain.dcm")
    ds = make_dicom(data)
    ds.compress(syntax)
    ds.save_as(tmp_path / "packed.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "packed.dcm").file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(decode_image(tmp_path / "packed.dcm"), decode_image(tmp_path / "plain.dcm"))


@pytest.mark.parametrize(
    "syntax",
    [
        pydicom.uid.JPEGBaseline8Bit,
        pydicom.uid.JPEGLosslessSV1,
        pydicom.uid.JPEGLSLossless,
        pydicom.uid.JPEG2000,
        pydicom.uid.RLELossless,
    ],
)
def test_decoders_for_compressed_syntaxes_are_installed(syntax):
    assert pydicom.pixels.get_decoder(syntax).is_available, f"no decoder plugin for {syntax.name}"


# ------------------------------------------------------------------------------------ Pillow inputs


def test_jpeg_draft_mode_downscales_in_dct_domain(tmp_path):
    big = np.asarray(Image.fromarray((chest_phantom(1024, 1024) * 255).astype(np.uint8)))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    full = decode_image(tmp_path / "big.jpg")
    drafted = decode_image(tmp_path / "big.jpg", min_side=128)
    assert full.shape == (1024, 1024)
    assert drafted.shape == (128, 128)  # 1/8 scale, never below min_side
    assert decode_image(tmp_path / "big.jpg", min_side=600).shape == (1024, 1024)  # < 2x smaller: no draft
    a = resize_square(full, 128, "center_crop").astype(int)
    b = load_preprocessed(tmp_path / "big.jpg", 128).astype(int)
    assert np.abs(a - b).mean() < 2.0


def test_rgb_and_16bit_png_become_8bit_grey(tmp_path):
    grey = (chest_phantom() * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "rgb.png"), grey)
    sixteen = (chest_phantom() * 65535).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    got = decode_image(tmp_path / "deep.png")
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.rint(sixteen / 257.0)).max() <= 1


# ------------------------------------------------------------------------------------------ errors


def _fault_files(tmp: Path) -> dict[str, Path]:
    """One file per error kind."""
    data = stored12(chest_phantom())
    ok = make_dicom(data, tmp / "ok.dcm")
    files = {}
    files["missing_file"] = tmp / "absent.dcm"
    (tmp / "empty.jpg").write_bytes(b"")
    files["zero_bytes"] = tmp / "empty.jpg"
    raw = (tmp / "ok.dcm").read_bytes()
    (tmp / "cut.dcm").write_bytes(raw[: len(raw) // 2])
    files["truncated"] = tmp / "cut.dcm"
    buf = io.BytesIO()
    Image.fromarray((chest_phantom(256, 256) * 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
    (tmp / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["truncated_jpg"] = tmp / "cut.jpg"
    del ok.PixelData
    ok.save_as(tmp / "nopixels.dcm", enforce_file_format=True)
    files["no_pixel_data"] = tmp / "nopixels.dcm"
    (tmp / "notes.jpg").write_text("this is a radiology report, not a picture\n" * 20)
    files["not_an_image"] = tmp / "notes.jpg"
    mpeg = make_dicom(data)
    mpeg.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    mpeg.PixelData = pydicom.encaps.encapsulate([b"\0" * 64])
    mpeg.save_as(tmp / "video.dcm", enforce_file_format=True)
    files["unsupported_syntax"] = tmp / "video.dcm"
    return files


def test_error_kinds(tmp_path):
    files = _fault_files(tmp_path)
    for label, path in files.items():
        expected = label.removesuffix("_jpg")
        with pytest.raises(ImageDecodeError) as info:
            decode_image(path)
        assert info.value.kind == expected, (label, info.value)
        assert info.value.kind in ERROR_KINDS
        assert str(path.name) in info.value.message
    with pytest.raises(ValueError):
        ImageDecodeError("bogus", "x")


# ------------------------------------------------------------------------------------------ resize


def test_resize_modes_geometry():
    img = np.zeros((200, 100), dtype=np.uint8)  # portrait, 1:2
    img[:40] = 255  # a white band at the top, outside the central square (rows 50-150)
    img[40:, 45:55] = 128  # a grey vertical stripe below the band
    for mode in ("center_crop", "shortest_side"):
        out = resize_square(img, 50, mode)
        assert out.shape == (50, 50) and out.dtype == np.uint8
        assert out[:, :20].max() <= 2, f"{mode}: the top band should be cropped away"
        assert abs(int(out[25, 25]) - 128) <= 2
    padded = resize_square(img, 50, "pad")
    assert padded.shape == (50, 50)
    assert padded[:, :12].max() == 0 and padded[:, 38:].max() == 0  # 25 wide content, centred
    assert padded[:8, 13:37].min() >= 250  # the whole image kept: the band is at the top
    tiny = resize_square(np.full((10, 20), 77, np.uint8), 64, "center_crop")
    assert tiny.shape == (64, 64) and np.abs(tiny.astype(int) - 77).max() <= 1
    with pytest.raises(ValueError):
        resize_square(img, 50, "stretch")


# ------------------------------------------------------------------------------------------ shards


@pytest.fixture()
def tiny_root(tmp_path) -> tuple[Path, pd.DataFrame]:
    """Four readable images in p10 (DICOM, MONOCHROME1 DICOM, JPEG, PNG), one broken one, one in p11."""
    root = tmp_path / "root"
    rows = []

    def place(subject: int, study: int, dicom_id: str, ext: str) -> Path:
        d = root / f"files/p{str(subject)[:2]}/p{subject}/s{study}"
        d.mkdir(parents=True, exist_ok=True)
        rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}{ext}"
        rows.append(
            {
                "dicom_id": dicom_id,
                "subject_id": subject,
                "study_id": study,
                "path": rel,
                "group": f"p{str(subject)[:2]}",
            }
        )
        return root / rel

    phantom = chest_phantom(120, 100)
    make_dicom(stored12(phantom), place(10000001, 50000001, "a1", ".dcm"))
    make_dicom(4095 - stored12(phantom), place(10000001, 50000001, "a2", ".dcm"), photometric="MONOCHROME1")
    Image.fromarray((phantom * 255).astype(np.uint8)).save(
        place(10000002, 50000002, "b1", ".jpg"), quality=95
    )
    Image.fromarray((phantom * 255).astype(np.uint8)).save(place(10000002, 50000003, "b2", ".png"))
    place(10000003, 50000004, "c1", ".jpg").write_bytes(b"")
    Image.fromarray((phantom * 255).astype(np.uint8)).save(place(11000001, 50000005, "d1", ".png"))
    index = pd.DataFrame(rows)
    index.to_parquet(tmp_path / "images.parquet", index=False)
    return root, index


def _shard_args(tmp: Path, root: Path, out: str, *extra: str) -> list[str]:
    return [
        "images",
        "--index",
        str(tmp / "images.parquet"),
        "--root",
        str(root),
        "--shard",
        "p10",
        "--size",
        "32",
        "--out",
        str(tmp / out),
        "--skipped",
        str(tmp / out.replace(".h5", ".skipped.parquet")),
        *extra,
    ]


def test_shard_reads_back_exactly_and_skips_bad_files(tmp_path, tiny_root):
    root, index = tiny_root
    assert cli_main(_shard_args(tmp_path, root, "p10.h5", "--max-skipped-share", "0.3")) == 0
    with h5py.File(tmp_path / "p10.h5", "r") as h5:
        images, ids = h5["images"], h5["dicom_id"].asstr()[:]
        assert images.shape == (4, 32, 32) and images.dtype == np.uint8 and images.chunks == (1, 32, 32)
        assert list(ids) == ["a1", "a2", "b1", "b2"]
        assert h5.attrs["size"] == 32 and h5.attrs["resize_mode"] == "center_crop"
        assert h5.attrs["window"] == "bitdepth" and h5.attrs["source"] == str(root)
        assert h5.attrs["code_version"].startswith("0.")
        for i, dicom_id in enumerate(ids):
            path = root / index.set_index("dicom_id").loc[dicom_id, "path"]
            png = tmp_path / f"{dicom_id}.png"
            assert cli_main(["show-image", str(path), "--size", "32", "--out", str(png)]) == 0
            np.testing.assert_array_equal(images[i], np.asarray(Image.open(png)))
        np.testing.assert_array_equal(images[0], images[1])  # MONOCHROME1 twin of a1
    skipped = pd.read_parquet(tmp_path / "p10.skipped.parquet")
    assert list(skipped.columns) == ["path", "dicom_id", "error_kind", "message"]
    assert skipped[["dicom_id", "error_kind"]].values.tolist() == [["c1", "zero_bytes"]]


def test_parallel_workers_give_the_same_shard(tmp_path, tiny_root):
    root, _ = tiny_root
    args = ("--max-skipped-share", "0.3", "--resize-mode", "pad", "--compression", "gzip")
    assert cli_main(_shard_args(tmp_path, root, "serial.h5", *args)) == 0
    assert cli_main(_shard_args(tmp_path, root, "pool.h5", *args, "--workers", "2", "--chunksize", "1")) == 0
    with h5py.File(tmp_path / "serial.h5", "r") as a, h5py.File(tmp_path / "pool.h5", "r") as b:
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        assert list(a["dicom_id"].asstr()[:]) == list(b["dicom_id"].asstr()[:])
        assert b["images"].compression == "gzip"


def test_too_many_skips_fail_and_leave_no_shard(tmp_path, tiny_root):
    root, _ = tiny_root
    assert cli_main(_shard_args(tmp_path, root, "p10.h5")) != 0  # 1 of 5 bad > default 0.01
    assert not (tmp_path / "p10.h5").exists()
    assert not (tmp_path / "p10.skipped.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p10.h5")]


def test_exception_mid_loop_leaves_no_shard(tmp_path, tiny_root, monkeypatch):
    import txtrayalign.images.shards as shards
    from txtrayalign.images.preprocess import load_preprocessed_with_note

    root, _ = tiny_root
    calls = []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted mid-shard")
        return load_preprocessed_with_note(path, *args, **kwargs)

    monkeypatch.setattr(shards, "load_preprocessed_with_note", flaky)
    with pytest.raises(KeyboardInterrupt):
        cli_main(_shard_args(tmp_path, root, "p10.h5", "--max-skipped-share", "0.5"))
    assert len(calls) == 3
    assert not (tmp_path / "p10.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p10.h5")]


def test_sigkill_mid_shard_leaves_nothing_that_looks_finished(tmp_path, tiny_root):
    root, _ = tiny_root
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import txtrayalign.images.shards as shards
        real, seen = shards.load_preprocessed_with_note, []
        def slow(*a, **k):
            seen.append(1)
            if len(seen) == 3:
                Path({str(marker)!r}).write_text("2 images written")
                time.sleep(60)
            return real(*a, **k)
        shards.load_preprocessed_with_note = slow
        from txtrayalign.cli import main
        sys.exit(main({_shard_args(tmp_path, root, "p10.h5", "--max-skipped-share", "0.5")!r}))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TXTRAYALIGN_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the shard job ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".p10.h5")]
        assert leftovers, "the shard should be being written under a temporary name"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "p10.h5").exists()
    assert not (tmp_path / "p10.skipped.parquet").exists()
    # Issue 12: the hidden temporary stayed behind for good. The next run of the shard removes it
    # (and says so) and writes the shard; another shard's temporary and other files are kept.
    assert [p.name for p in leftovers] == [p.name for p in tmp_path.iterdir() if p.name.startswith(".p10.h5")]
    others = [tmp_path / ".p11.h5.abcd1234.h5.tmp", tmp_path / ".p10.h5.notes", tmp_path / "p10.h5.abcd1234.h5.tmp"]
    for other in others:
        other.write_text("not ours")
    log = tmp_path / "rerun.log"
    assert cli_main([*_shard_args(tmp_path, root, "p10.h5", "--max-skipped-share", "0.5"), "--log", str(log)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p10.h5.") and p.name.endswith(".tmp")]
    assert all(other.read_text() == "not ours" for other in others)
    assert f"removed {leftovers[0]}" in log.read_text()
    with h5py.File(tmp_path / "p10.h5", "r") as h5:
        assert list(h5["dicom_id"].asstr()[:]) == ["a1", "a2", "b1", "b2"]


def test_empty_group_writes_a_valid_empty_shard(tmp_path, tiny_root):
    root, _ = tiny_root
    args = _shard_args(tmp_path, root, "p17.h5")
    args[args.index("p10")] = "p17"
    assert cli_main(args) == 0
    with h5py.File(tmp_path / "p17.h5", "r") as h5:
        assert h5["images"].shape == (0, 32, 32) and h5["dicom_id"].shape == (0,)
    assert pd.read_parquet(tmp_path / "p17.skipped.parquet").empty


def _read_in_child(reader: ShardReader, dicom_id: str, queue) -> None:
    queue.put(reader.get(dicom_id).tolist())


def test_merge_and_shard_reader(tmp_path, tiny_root):
    root, _ = tiny_root
    out = tmp_path / "images" / "32"
    out.mkdir(parents=True)
    for group in ("p10", "p11"):
        args = _shard_args(tmp_path, root, f"images/32/{group}.h5", "--max-skipped-share", "0.5")
        args[args.index("p10")] = group
        assert cli_main(args) == 0
    assert (
        cli_main(
            [
                "merge-images",
                "--shards",
                str(out / "p10.h5"),
                str(out / "p11.h5"),
                "--skipped",
                str(out / "p10.skipped.parquet"),
                str(out / "p11.skipped.parquet"),
                "--out-index",
                str(out / "index.parquet"),
                "--out-skipped",
                str(out / "skipped.parquet"),
            ]
        )
        == 0
    )
    merged = pd.read_parquet(out / "index.parquet")
    assert merged.values.tolist() == [
        ["a1", "p10.h5", 0],
        ["a2", "p10.h5", 1],
        ["b1", "p10.h5", 2],
        ["b2", "p10.h5", 3],
        ["d1", "p11.h5", 0],
    ]
    assert pd.read_parquet(out / "skipped.parquet")["dicom_id"].tolist() == ["c1"]

    reader = ShardReader(out / "index.parquet")
    assert len(reader) == 5 and reader.ids == ["a1", "a2", "b1", "b2", "d1"] and "c1" not in reader
    with h5py.File(out / "p10.h5", "r") as h5:
        np.testing.assert_array_equal(reader.get("b1"), h5["images"][2])
    many = reader.get_many(["d1", "b1", "a1", "b1"])
    assert many.shape == (4, 32, 32)
    np.testing.assert_array_equal(many[1], reader.get("b1"))
    np.testing.assert_array_equal(many[3], many[1])
    np.testing.assert_array_equal(many[0], reader.get("d1"))
    with pytest.raises(KeyError, match="c1"):
        reader.get("c1")
    # handles opened in the parent are not reused in a forked child
    queue = mp.get_context("fork").Queue()
    child = mp.get_context("fork").Process(target=_read_in_child, args=(reader, "a2", queue))
    child.start()
    got = np.array(queue.get(timeout=30), dtype=np.uint8)
    child.join(timeout=30)
    np.testing.assert_array_equal(got, reader.get("a2"))
    reader.close()


def test_merge_rejects_a_dicom_id_in_two_shards(tmp_path, tiny_root):
    root, _ = tiny_root
    for name in ("x.h5", "y.h5"):
        assert cli_main(_shard_args(tmp_path, root, name, "--max-skipped-share", "0.5")) == 0
    code = cli_main(
        [
            "merge-images",
            "--shards",
            str(tmp_path / "x.h5"),
            str(tmp_path / "y.h5"),
            "--out-index",
            str(tmp_path / "i.parquet"),
            "--out-skipped",
            str(tmp_path / "s.parquet"),
        ]
    )
    assert code != 0 and not (tmp_path / "i.parquet").exists()


def test_parts_split_a_group_into_disjoint_ranges():
    index = pd.DataFrame(
        {
            "dicom_id": [f"d{i:03d}" for i in range(23)],
            "subject_id": [10000000 + i % 7 for i in range(23)],
            "study_id": [50000000 + i for i in range(23)],
            "group": ["p10"] * 20 + ["p11"] * 3,
        }
    )
    parts = [select_shard_rows(index, "p10", k, 3) for k in (1, 2, 3)]
    assert [len(p) for p in parts] == [7, 6, 7]
    ids = [d for p in parts for d in p["dicom_id"]]
    assert sorted(ids) == sorted(index.loc[index.group == "p10", "dicom_id"]) and len(set(ids)) == 20
    assert shard_name("p10", 2, 3) == "p10-2of3" and shard_name("p10") == "p10"
    with pytest.raises(ValueError):
        select_shard_rows(index, "p10", 4, 3)


# ------------------------------------------------------------------------------- synthetic dataset

FAULT_TO_KIND = {
    "truncated_jpg": "truncated",
    "truncated_dicom": "truncated",
    "zero_byte_image": "zero_bytes",
    "dicom_no_pixels": "no_pixel_data",
}


def test_synthetic_faults_land_in_skipped_with_their_kinds(synth_root, tmp_path):
    from txtrayalign.constants import GROUPS
    from txtrayalign.images.shards import ShardSettings, write_shard
    from txtrayalign.index import build_index

    faults = pd.read_csv(synth_root / "faults.csv", dtype=str, keep_default_na=False)
    faults = faults[faults["kind"].isin(list(FAULT_TO_KIND))]
    assert len(faults) >= 6
    for fmt in ("jpg", "dcm"):
        images, _, _ = build_index(synth_root, fmt)
        skipped, written = [], 0
        for group in GROUPS:
            rows = select_shard_rows(images, group)
            n, skip = write_shard(
                rows,
                synth_root,
                tmp_path / fmt / f"{group}.h5",
                ShardSettings(size=32),
                max_skipped_share=1.0,
            )
            written += n
            skipped.append(skip)
        skipped = pd.concat(skipped, ignore_index=True)
        expected = faults[faults["path"].str.endswith(f".{fmt}")]
        assert sorted(zip(skipped["path"], skipped["error_kind"], strict=True)) == sorted(
            zip(expected["path"], expected["kind"].map(FAULT_TO_KIND), strict=True)
        )
        assert set(skipped["dicom_id"]) == set(expected["dicom_id"])
        assert written + len(skipped) == len(images)


def test_synthetic_dicoms_decode_like_their_jpg_twins(synth_root):
    from txtrayalign.index import build_index

    images, _, _ = build_index(synth_root, "dcm")
    bad = set(pd.read_csv(synth_root / "faults.csv", dtype=str)["path"])
    checked = 0
    for rel in images["path"]:
        if rel in bad or rel.replace(".dcm", ".jpg") in bad:
            continue
        a = decode_image(synth_root / rel).astype(float)
        b = decode_image(synth_root / rel.replace(".dcm", ".jpg")).astype(float)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99, rel
        assert np.abs(a - b).mean() < 10, rel
        checked += 1
    assert checked > 50


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_shard(tmp_path):
    """Peak RSS writing 80 vs 480 images of 512x512 (20 MB vs 126 MB of pixels) stays the same."""
    Image.fromarray((chest_phantom(64, 64) * 255).astype(np.uint8)).save(tmp_path / "one.png")
    script = textwrap.dedent("""
        import resource, sys
        import pandas as pd
        from txtrayalign.images.shards import ShardSettings, write_shard
        n, root, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        rows = pd.DataFrame({"dicom_id": [f"id{i:05d}" for i in range(n)], "path": ["one.png"] * n})
        write_shard(rows, root, out, ShardSettings(size=512), workers=2, chunksize=4)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TXTRAYALIGN_NO_PROGRESS": "1"}
    peaks = {}
    for n in (80, 480):
        done = subprocess.run(
            [sys.executable, "-c", script, str(n), str(tmp_path), str(tmp_path / f"{n}.h5")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[n] = int(done.stdout.split()[-1]) / 1024  # MiB
        with h5py.File(tmp_path / f"{n}.h5", "r") as h5:
            assert h5["images"].shape == (n, 512, 512)
    assert peaks[480] - peaks[80] < 30, peaks  # holding the shard would add ~100 MiB


def test_remove_stale_temporaries_only_takes_its_own(tmp_path):
    from txtrayalign.images.shards import SHARD_TMP_SUFFIX
    from txtrayalign.utils import atomic_path, remove_stale_temporaries

    out = tmp_path / "p10.h5"
    with pytest.raises(RuntimeError), atomic_path(out, suffix=SHARD_TMP_SUFFIX) as tmp:
        raise RuntimeError("the write failed: atomic_path removed its temporary; a kill would not")
    stale = [tmp, tmp_path / f".p10.h5.zz_9zz_9{SHARD_TMP_SUFFIX}"]  # the real name, and another
    for path in stale:
        path.write_bytes(b"half a shard")
    keep = [tmp_path / ".p10.h5.abcdefgh.parquet.tmp", tmp_path / ".p10.h5x.abcdefgh.h5.tmp",
            tmp_path / ".p10.h5.abc.h5.tmp", tmp_path / "sub" / f".p10.h5.abcdefgh{SHARD_TMP_SUFFIX}"]
    for path in keep:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    assert remove_stale_temporaries(out, SHARD_TMP_SUFFIX) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(path.exists() for path in keep)
    assert remove_stale_temporaries(tmp_path / "nowhere" / "p10.h5", SHARD_TMP_SUFFIX) == []


def test_image_commands_end_bad_input_in_one_line(tmp_path, tiny_root, capsys):
    """Issue 12 (command lines): a missing index, a broken one, a file that is not a shard and an
    undecodable image each end in one line naming the file, exit status 2."""
    root, _ = tiny_root
    (tmp_path / "broken.parquet").write_text("not parquet")
    (tmp_path / "fake.h5").write_text("not hdf5")
    pd.DataFrame({"dicom_id": ["a"]}).to_parquet(tmp_path / "cols.parquet")
    args = _shard_args(tmp_path, root, "p10.h5")
    at = args.index("--index") + 1
    cases = [
        ([*args[:at], str(tmp_path / "none.parquet"), *args[at + 1:]],
         f"txtrayalign images: error: {tmp_path / 'none.parquet'}: No such file or directory"),
        ([*args[:at], str(tmp_path / "broken.parquet"), *args[at + 1:]],
         f"txtrayalign images: error: {tmp_path / 'broken.parquet'}: not a readable parquet file"),
        ([*args[:at], str(tmp_path / "cols.parquet"), *args[at + 1:]],
         f"txtrayalign images: error: {tmp_path / 'cols.parquet'}: not a index_images table, missing column(s) "
         "['path', 'group'] (has ['dicom_id'])"),
        ([*args, "--part", "3", "--parts", "2"], "txtrayalign images: error: --part/--parts: need 1 <= part"),
        (["merge-images", "--shards", str(tmp_path / "fake.h5"), "--out-index", str(tmp_path / "i.parquet"),
          "--out-skipped", str(tmp_path / "s.parquet")],
         f"txtrayalign merge-images: error: {tmp_path / 'fake.h5'}: not a readable HDF5 image shard"),
        (["show-image", str(tmp_path / "fake.h5"), "--size", "32", "--out", str(tmp_path / "x.png")],
         f"txtrayalign show-image: error: {tmp_path / 'fake.h5'}"),
    ]
    for argv, start in cases:
        capsys.readouterr()
        assert cli_main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if " error: " in line or "Traceback" in line]
        assert len(err) == 1 and err[0].startswith(start), (argv, err)
    assert not any((tmp_path / name).exists() for name in ("p10.h5", "i.parquet", "x.png"))


def test_odd_geometry_is_stored_and_logged_with_its_reason(tmp_path, caplog):
    """A 1x1 image and a 6000x200 one decode, so they are stored; before, without a word (the latter
    keeps only the middle 3% of its long side). Now the shard's log names each with the reason."""
    import logging

    from txtrayalign.images.resize import odd_geometry
    from txtrayalign.images.shards import ShardSettings, write_shard

    assert odd_geometry(1, 1, 32) == "1x1 pixels: upsampled to 32x32, it holds almost no detail"
    assert odd_geometry(200, 6000, 32) == "aspect ratio 30.0: center_crop keeps only the middle 3% of its long side"
    assert odd_geometry(6000, 200, 32, "pad") == "aspect ratio 30.0: the image fills 3% of the padded square"
    assert odd_geometry(2500, 2000, 32) == "" and odd_geometry(20, 20, 16) == ""  # a chest film; small but > S
    root = tmp_path / "root"
    root.mkdir()
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(root / "dot.png")
    Image.fromarray(np.tile(np.arange(200, dtype=np.uint8)[:, None], (1, 6000))).save(root / "strip.png")
    Image.fromarray((chest_phantom(120, 100) * 255).astype(np.uint8)).save(root / "chest.png")
    rows = pd.DataFrame({"dicom_id": ["dot", "strip", "chest"], "path": ["dot.png", "strip.png", "chest.png"]})
    caplog.set_level(logging.WARNING, logger="txtrayalign")
    written, skipped = write_shard(rows, root, tmp_path / "p10.h5", ShardSettings(size=32))
    assert written == 3 and skipped.empty
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["stored dot.png, but: 1x1 pixels: upsampled to 32x32, it holds almost no detail",
                        "stored strip.png, but: aspect ratio 30.0: center_crop keeps only the middle 3% of its "
                        "long side"]


def test_a_truncated_shard_is_named_with_the_next_step(tmp_path, tiny_root, capsys):
    """Before: "not an HDF5 image shard (...)" from merge-images and an h5py traceback in training,
    with no next step. Now one line naming the shard and how to rebuild it (the workflow rebuilds a
    deleted shard with the same command: tests/test_rerun.py)."""
    from txtrayalign.train.data import shards_fingerprint

    root, _ = tiny_root
    out = tmp_path / "images" / "32"
    out.mkdir(parents=True)
    assert cli_main(_shard_args(tmp_path, root, "images/32/p10.h5", "--max-skipped-share", "0.5")) == 0
    merge = ["merge-images", "--shards", str(out / "p10.h5"), "--skipped", str(out / "p10.skipped.parquet"),
             "--out-index", str(out / "index.parquet"), "--out-skipped", str(out / "skipped.parquet")]
    assert cli_main(merge) == 0
    data = (out / "p10.h5").read_bytes()
    (out / "p10.h5").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert cli_main(merge) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"txtrayalign merge-images: error: {out / 'p10.h5'}: not a readable "
                                               "HDF5 image shard ("), err
    assert err[0].endswith("delete it and rerun the same snakemake command, which rebuilds it")
    with pytest.raises(Exception, match="p10.h5: not a readable HDF5 image shard"):
        shards_fingerprint(out / "index.parquet")  # what training reads first
    with pytest.raises(Exception, match="p10.h5: not a readable HDF5 image shard"):
        ShardReader(out / "index.parquet").get("a1")
