"""The header fast path (imagesync.images.headers) against the real qemu-img: where it answers, it answers as ``qemu-img
info`` does, and it starts no process; where a format qemu-img probes is near, it leaves the answer to qemu-img."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagesync.images import headers
from imagesync.images.convert import inspect, prepare
from tests.support.images import MiB, make_image, qemu_img, sha512_of
from tests.support.qemu_calls import Calls, count_qemu_calls


def qemu_says(path: Path) -> tuple[str, int]:
    data = json.loads(qemu_img("info", "--output=json", str(path)))
    return str(data["format"]), int(data["virtual-size"])


@pytest.fixture
def qemu_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return count_qemu_calls(monkeypatch)


def _create(tmp_path: Path, *options: str, size: str = "1M") -> Path:
    path = tmp_path / "disk"
    qemu_img("create", "-q", "-f", "qcow2", *options, str(path), size)
    return path


@pytest.mark.parametrize("options", [
    (), ("-o", "compat=0.10"), ("-o", "cluster_size=512"), ("-o", "lazy_refcounts=on"),
    ("-o", "refcount_bits=1"), ("-o", "refcount_bits=64"), ("-o", "preallocation=metadata"),
])
def test_a_plain_qcow2_is_read_from_its_header_as_qemu_img_reads_it(tmp_path: Path, options: tuple[str, ...]) -> None:
    image = _create(tmp_path, *options, size="5M")
    header = headers.vouch(image)
    assert header is not None
    assert (header.format, header.virtual_size) == qemu_says(image) == ("qcow2", 5 * MiB)


@pytest.mark.parametrize(("options", "size", "expected"), [
    (("-o", "cluster_size=2M"), "3T", 3 * 1024**4), ((), "1000000", 1000448), ((), "511", 512),
])
def test_qcow2_sizes_and_clusters_at_the_edges(tmp_path: Path, options: tuple[str, ...], size: str,
                                               expected: int) -> None:
    image = _create(tmp_path, *options, size=size)
    assert headers.vouch(image) == headers.Header("qcow2", expected)
    assert qemu_says(image) == ("qcow2", expected)


@pytest.mark.parametrize(("fmt", "size_mb"), [("qcow2", 1), ("qcow2", 3), ("raw", 1), ("raw", 3)])
def test_converted_disks_are_read_as_qemu_img_reads_them(tmp_path: Path, fmt: str, size_mb: int) -> None:
    image = make_image(tmp_path, fmt, size_mb=size_mb)
    header = headers.vouch(image, fmt)
    assert header is not None
    assert (header.format, header.virtual_size) == qemu_says(image)


def _bytes_file(tmp_path: Path, data: bytes, name: str = "blob") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


RAW_BYTES: dict[str, Callable[[], bytes]] = {
    "zeros": lambda: bytes(MiB),
    "binary noise, as in the bulk test images": lambda: hashlib.sha512(b"bulk-0").digest() * 64,
    "a boot sector": lambda: b"\xeb\x63\x90" + bytes(507) + b"\x55\xaa" + bytes(MiB - 512),
    "text after a NUL-filled sector": lambda: bytes(512) + b"not a probe\n" * 300 + bytes(496),
}


@pytest.mark.parametrize("kind", list(RAW_BYTES))
def test_bytes_no_probe_knows_are_raw_of_their_size_as_qemu_img_says(tmp_path: Path, kind: str) -> None:
    blob = _bytes_file(tmp_path, RAW_BYTES[kind]())
    assert headers.vouch(blob) == headers.Header("raw", blob.stat().st_size)
    assert qemu_says(blob) == ("raw", blob.stat().st_size)


def test_an_iso_is_still_told_apart_from_raw(tmp_path: Path, qemu_calls: Calls) -> None:
    iso = make_image(tmp_path, "iso")
    info = inspect(iso, name="i")
    assert (info.format, info.virtual_size) == ("iso", MiB)
    assert qemu_calls == []


@pytest.mark.parametrize("fmt", ["qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "parallels"])
def test_every_format_qemu_img_creates_but_plain_qcow2_goes_to_qemu_img(tmp_path: Path, fmt: str) -> None:
    image = tmp_path / "disk"
    qemu_img("create", "-q", "-f", fmt, str(image), "1M")
    assert headers.vouch(image) is None
    assert qemu_says(image)[0] == fmt


def _bochs() -> bytes:
    head = (b"Bochs Virtual HD Image".ljust(32, b"\0") + b"Redolog".ljust(16, b"\0")
            + b"Growing".ljust(16, b"\0") + struct.pack("<II", 0x00020000, 512))
    return head.ljust(MiB, b"\0")


PROBED: dict[str, tuple[str, Callable[[], bytes]]] = {
    # qemu-img cannot create these; their probes still take the bytes from raw.
    "bochs": ("blob", _bochs),
    "cloop": ("blob", lambda: b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
              .ljust(MiB, b"\0")),
    "vmdk descriptor": ("blob", lambda: b"# Disk DescriptorFile\nversion=1\n".ljust(MiB, b"\0")),
    "vdi signature": ("blob", lambda: (bytes(64) + b"\x7f\x10\xda\xbe").ljust(MiB, b"\0")),
    "luks": ("blob", lambda: b"LUKS\xba\xbe\x00\x01".ljust(MiB, b"\0")),
    "dmg, by its name": ("image.dmg", lambda: bytes(MiB)),
}


@pytest.mark.parametrize("kind", list(PROBED))
def test_bytes_a_probe_takes_from_raw_go_to_qemu_img(tmp_path: Path, kind: str) -> None:
    name, data = PROBED[kind]
    blob = _bytes_file(tmp_path, data(), name)
    assert headers.vouch(blob) is None
    done = subprocess.run(["qemu-img", "info", "--output=json", str(blob)], capture_output=True, text=True, check=False)
    # qemu-img fails on these or names another format: it never calls them raw.
    assert done.returncode != 0 or json.loads(done.stdout)["format"] != "raw", done.stdout


def test_a_fixed_vhd_goes_to_qemu_img_though_qemu_reads_it_as_raw(tmp_path: Path, qemu_calls: Calls) -> None:
    # Its only header is a footer at the end, which this qemu does not probe: raw, as qemu-img itself says.
    image = tmp_path / "disk"
    qemu_img("create", "-q", "-f", "vpc", "-o", "subformat=fixed", str(image), "1M")
    assert headers.vouch(image) is None
    assert inspect(image, name="v").format == qemu_says(image)[0] == "raw"
    assert len(qemu_calls) == 1


def test_plain_qcow2_and_raw_are_prepared_without_a_process(tmp_path: Path, qemu_calls: Calls) -> None:
    for fmt in ("qcow2", "raw"):
        image = make_image(tmp_path / fmt, fmt)
        prepared = prepare(image, sha512=sha512_of(image), accepted=[fmt], cache_dir=tmp_path / "cache", name="p",
                           declared=fmt)
        assert (prepared.path, prepared.format, prepared.virtual_size) == (image, fmt, MiB)
    assert qemu_calls == []
    vmdk = make_image(tmp_path / "vmdk", "vmdk")
    assert inspect(vmdk, name="v").format == "vmdk"
    assert [call[0] for call in qemu_calls] == ["info"]  # the counter sees what does go to qemu-img
