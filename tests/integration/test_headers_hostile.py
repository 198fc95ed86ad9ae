"""Hostile and unusual qcow2 headers never take the fast path (imagesync.images.headers): qemu-img answers for them,
with the checks of imagesync.images.convert, exactly as before the fast path existed. And a qemu-img the fast path
cannot speak for (missing, or with block drivers it does not know) turns it off."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from imagesync.images import headers, qemu
from imagesync.images.convert import ConversionError, inspect
from tests.support.images import (
    encrypted_qcow2,
    make_image,
    qcow2_with_backing,
    qcow2_with_data_file,
    qemu_img,
)
from tests.support.qemu_calls import Calls, count_qemu_calls, wrapped_qemu_img

QEMU_FAILS = "qemu-img info failed"


@pytest.fixture
def qemu_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return count_qemu_calls(monkeypatch)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), "1M")
    return path


# (offset, struct format, value) patched into a plain qcow2 v3 header, and what qemu-img then makes of it: the
# message inspect() raises, or None when qemu-img reads a qcow2 inspect() accepts.
PATCHES: dict[str, tuple[int, str, int, str | None]] = {
    "version 4": (4, ">I", 4, QEMU_FAILS),
    "backing file offset": (8, ">Q", 0x200, None),  # a zero-length name: qemu reads no backing file
    "cluster bits 8": (20, ">I", 8, QEMU_FAILS),
    "cluster bits 22": (20, ">I", 22, QEMU_FAILS),
    "size of no whole sector": (24, ">Q", 1024 * 1024 + 100, None),  # qemu rounds it down
    "size 0": (24, ">Q", 0, "empty"),
    "AES encryption": (32, ">I", 1, "encrypted"),
    "L1 table too small": (36, ">I", 0, QEMU_FAILS),
    "L1 table unaligned": (40, ">Q", 0x30001, QEMU_FAILS),
    "no refcount table": (56, ">I", 0, QEMU_FAILS),
    "refcount table unaligned": (48, ">Q", 0x10008, QEMU_FAILS),
    "snapshot table unaligned": (64, ">Q", 0x123, QEMU_FAILS),
    "one snapshot claimed": (60, ">I", 1, None),  # qemu reads the header as a (nameless) snapshot
    "dirty bit": (72, ">Q", 1, None),
    "corrupt bit": (72, ">Q", 2, "corrupt"),
    "external data file bit": (72, ">Q", 4, "external data file"),
    "unknown incompatible bit": (72, ">Q", 1 << 40, QEMU_FAILS),
    "unknown compatible bit": (80, ">Q", 1 << 5, None),
    "bitmaps autoclear bit": (88, ">Q", 1, None),
    "unknown autoclear bit": (88, ">Q", 1 << 7, None),
    "refcount order 7": (96, ">I", 7, QEMU_FAILS),
    "header length 96": (100, ">I", 96, QEMU_FAILS),
    "header length 120": (100, ">I", 120, QEMU_FAILS),
    "zstd without its bit": (104, ">B", 1, QEMU_FAILS),
    "unknown header extension": (112, ">I", 0x12345678, None),
    "data file name extension": (112, ">I", 0x44415441, "external data file"),
    "extension longer than the cluster": (116, ">I", 0x10000, QEMU_FAILS),
}


@pytest.mark.parametrize("case", list(PATCHES))
def test_patched_headers_go_to_qemu_img_and_get_its_answer(plain: Path, qemu_calls: Calls, case: str) -> None:
    offset, fmt, value, outcome = PATCHES[case]
    data = bytearray(plain.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    plain.write_bytes(bytes(data))
    assert headers.vouch(plain) is None
    if outcome is None:
        assert inspect(plain, name="img").format == "qcow2"
    else:
        with pytest.raises(ConversionError, match=outcome):
            inspect(plain, name="img")
    assert [call[0] for call in qemu_calls] == ["info"]


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "backing file": (qcow2_with_backing, "backing file"),
    "external data file": (lambda d: qcow2_with_data_file(d, d / "data.raw"), "external data file"),
    "encryption": (encrypted_qcow2, "encrypted"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_images_reading_host_files_go_to_qemu_img_and_are_refused(tmp_path: Path, qemu_calls: Calls,
                                                                  case: str) -> None:
    make, refusal = HOSTILE[case]
    image = make(tmp_path)
    assert headers.vouch(image) is None
    with pytest.raises(ConversionError, match=refusal):
        inspect(image, name="img")
    assert len(qemu_calls) == 1


@pytest.mark.parametrize("options", [("-o", "compression_type=zstd"), ("-o", "extended_l2=on")])
def test_qcow2_with_incompatible_features_goes_to_qemu_img(tmp_path: Path, options: tuple[str, ...]) -> None:
    image = tmp_path / "disk"
    qemu_img("create", "-q", "-f", "qcow2", *options, str(image), "1M")
    assert headers.vouch(image) is None
    assert inspect(image, name="img").format == "qcow2"


def test_qcow2_with_a_snapshot_or_a_bitmap_goes_to_qemu_img(tmp_path: Path) -> None:
    snapshot, bitmap = tmp_path / "snapshot", tmp_path / "bitmap"
    for image in (snapshot, bitmap):
        qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
    qemu_img("snapshot", "-c", "s1", str(snapshot))
    qemu_img("bitmap", "--add", str(bitmap), "b0")
    assert headers.vouch(snapshot) is None
    assert headers.vouch(bitmap) is None


def test_a_truncated_header_goes_to_qemu_img(plain: Path) -> None:
    plain.write_bytes(plain.read_bytes()[:100].ljust(1024, b"\0"))
    assert headers.vouch(plain) is None


def test_a_qcow2_is_only_vouched_for_as_a_qcow2(plain: Path) -> None:
    assert headers.vouch(plain, "qcow2") == headers.Header("qcow2", 1024 * 1024)
    assert headers.vouch(plain, "raw") is None  # qemu-img -f raw answers that


def _fake_qemu_img(directory: Path, extra_driver: str) -> Path:
    """A qemu-img on PATH that lists one more block driver and runs the real one for everything else."""
    listing = f'"{{real}}" --help | sed "s/^Supported formats:/& {extra_driver}/"'
    return wrapped_qemu_img(directory, f'if [ "$1" = --help ]; then\n  {listing}\nelse\n  exec "{{real}}" "$@"\nfi\n')


def test_a_qemu_img_with_a_driver_we_do_not_know_turns_the_fast_path_off(tmp_path: Path, plain: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert headers.vouch(plain) is not None
    fake = _fake_qemu_img(tmp_path / "bin", "shinynewformat")
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ.get('PATH', '')}")
    assert "shinynewformat" in qemu.formats()
    assert headers.vouch(plain) is None
    assert inspect(plain, name="img").format == "qcow2"  # the fake runs the real qemu-img info


def test_without_qemu_img_nothing_is_vouched_for_and_qemu_img_is_missed(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    image = make_image(tmp_path, "raw")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert headers.vouch(image) is None
    with pytest.raises(ConversionError, match="qemu-img is not installed"):
        inspect(image, name="img")
