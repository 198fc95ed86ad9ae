"""What a list declares (hv:format) against what the bytes are, and files that cannot be disks: real qemu-img."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, DemoWorld, demo_images
from imagesync.images.convert import ConversionError, inspect, prepare
from imagesync.run.pipeline import sync
from tests.support.images import make_image, make_ova, sha512_of

TEXT = b"this is no OVA\n"  # what a publisher really listed as an OVA: 15 bytes of text


def _sync_one(world: DemoWorld, image: DemoImage) -> tuple[str, str | None, list[str]]:
    alpine = demo_images()[0]
    world.publish([alpine, image])
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    result = sync(config.load(path), dry_run=False)
    by_id = {r.action.identifier: r for r in result.results}
    assert by_id[alpine.identifier].status == "done"  # the other image of the list is not held up
    held = sorted(p.name for p in (world.root / "archive" / "demo").glob("*.json"))
    return by_id[image.identifier].status, by_id[image.identifier].error, held


def test_declared_ova_that_is_a_text_file_is_refused(world: DemoWorld) -> None:
    status, error, held = _sync_one(world, DemoImage("demo-bogus", "1.0", "Bogus appliance", TEXT, format="OVA"))
    assert status == "failed"
    assert error is not None and "demo/demo-bogus" in error and "'OVA'" in error and "\n" not in error
    assert held == ["demo-alpine-1.0.raw.json"]


def test_declared_ova_that_is_a_raw_disk_is_refused(world: DemoWorld, tmp_path: Path) -> None:
    disk = make_image(tmp_path / "src", "raw").read_bytes()
    status, error, _ = _sync_one(world, DemoImage("demo-disk", "1.0", "Disk, not OVA", disk, format="OVA"))
    assert status == "failed" and error is not None and "not an OVA" in error


def test_declared_raw_that_is_one_line_of_text_is_refused(world: DemoWorld) -> None:
    status, error, held = _sync_one(world, DemoImage("demo-tiny", "1.0", "Tiny", TEXT))
    assert status == "failed" and error is not None and "512" in error
    assert held == ["demo-alpine-1.0.raw.json"]


# --- prepare() with the declaration, table driven -----------------------------------------------------------

def _prepare(path: Path, declared: str | None, cache: Path) -> str:
    return prepare(path, sha512=sha512_of(path), accepted=["qcow2", "raw"], cache_dir=cache, name="l/img-1",
                   declared=declared).format


@pytest.mark.parametrize(("fmt", "declared"), [
    ("qcow2", "QCOW2"), ("qcow2", "qcow2"), ("qcow2", " Qcow2 "), ("qcow2", "qcow"), ("raw", "RAW"), ("raw", "img"),
    ("vmdk", "VMDK"), ("vpc", "VHD"), ("vdi", "vdi"), ("vhdx", "VHDX"),
    ("qcow2", None), ("qcow2", ""), ("qcow2", "ami"), ("raw", "Cloud image (KVM)"),
])
def test_matching_absent_and_unknown_declarations_are_accepted(tmp_path: Path, fmt: str, declared: str | None) -> None:
    image = make_image(tmp_path / "src", fmt)
    accepted = _prepare(image, declared, tmp_path / "cache")
    assert accepted in ("qcow2", "raw")


@pytest.mark.parametrize("declared", ["ISO", "raw"])
def test_iso_declared_as_iso_or_raw_is_accepted(tmp_path: Path, declared: str) -> None:
    image = make_image(tmp_path / "src", "iso")
    prepared = prepare(image, sha512=sha512_of(image), accepted=["iso"], cache_dir=tmp_path / "cache", name="l/i",
                       declared=declared)
    assert prepared.format == "iso"


@pytest.mark.parametrize(("fmt", "declared", "detected"), [
    ("qcow2", "VMDK", "qcow2"), ("raw", "QCOW2", "raw"), ("vmdk", "raw", "vmdk"), ("raw", "iso", "raw"),
    ("qcow2", "OVA", "not an OVA"),
])
def test_mismatching_declarations_are_refused(tmp_path: Path, fmt: str, declared: str, detected: str) -> None:
    image = make_image(tmp_path / "src", fmt)
    with pytest.raises(ConversionError) as caught:
        _prepare(image, declared, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("l/img-1: ") and repr(declared) in message and detected in message
    assert not list((tmp_path / "cache" / "converted").glob("*.*"))


def test_ova_declared_as_ova_or_as_its_disk_format(tmp_path: Path) -> None:
    ova = make_ova(tmp_path / "src", "vmdk")
    assert _prepare(ova, "OVA", tmp_path / "cache") == "qcow2"
    assert _prepare(ova, "vmdk", tmp_path / "cache2") == "qcow2"  # the disk inside is what was declared
    with pytest.raises(ConversionError, match="'QCOW2'"):
        _prepare(ova, "QCOW2", tmp_path / "cache3")


# --- files that cannot be disks -----------------------------------------------------------------------------

@pytest.mark.parametrize("content", [TEXT, b"\x00" * 511, bytes(range(256)) * 1])
def test_smaller_than_a_sector_is_no_disk(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "small.img"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match="smaller than one 512-byte sector"):
        inspect(path, name="small")


@pytest.mark.parametrize("content", [
    b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n" * 40,
    ("{\"error\": \"token expired\", \"detail\": \"r\u00e9essayez\"}\n" * 100).encode(),
    b"not a disk image at all\n" * 100,
])
def test_text_is_no_raw_disk(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "page.img"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match="text, not a disk image"):
        inspect(path, name="page")


def test_binary_garbage_and_a_text_pattern_on_a_sparse_disk_stay_raw(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(bytes(range(256)) * 64)
    assert inspect(garbage, name="g").format == "raw"
    # The test images start with a page of text pattern, then zeros: a disk, not a text file.
    assert inspect(make_image(tmp_path / "src", "raw", size_mb=2), name="p").format == "raw"
