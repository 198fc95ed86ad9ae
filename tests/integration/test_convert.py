"""Format detection and conversion with the real qemu-img (DESIGN §7)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from imagesync.images.convert import ConversionError, Prepared, inspect, prepare, qemu_img_available
from tests.support.images import (
    MALICIOUS_KINDS,
    MaliciousKind,
    MiB,
    encrypted_qcow2,
    make_image,
    make_ova,
    malicious_ova,
    qcow2_with_backing,
    qcow2_with_data_file,
    qemu_img,
    same_content,
    sha512_of,
    vmdk_with_flat_extent,
)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return tmp_path / "src"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _prepare(path: Path, accepted: Sequence[str], cache: Path, max_size: int = 200 * 1024 * MiB) -> Prepared:
    # The hostile 300 GiB sparse OVA must never be read in full, so it gets a dummy digest.
    digest = sha512_of(path) if path.stat().st_size < 64 * MiB else "0" * 128
    return prepare(path, sha512=digest, accepted=accepted, cache_dir=cache, name="img-1", max_size=max_size)


def _leftovers(cache: Path) -> list[str]:
    converted = cache / "converted"
    return sorted(p.name for p in converted.iterdir()) if converted.exists() else []


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with size and mtime (directories: presence only, the work dir touches their mtime)."""
    return {
        str(p.relative_to(root)): (0, 0) if p.is_dir() else (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


def test_qemu_img_is_found() -> None:
    found = qemu_img_available()
    assert found is not None
    assert os.access(found, os.X_OK)


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vpc", "vhdx", "vdi"])
def test_format_comes_from_the_bytes_not_the_name(src: Path, fmt: str) -> None:
    image = make_image(src, fmt, name="image.raw")
    info = inspect(image, name="img-1")
    assert info.format == fmt
    # vpc rounds up to its CHS geometry; every other format keeps the exact byte size.
    assert info.virtual_size == MiB if fmt != "vpc" else MiB <= info.virtual_size < 2 * MiB
    assert info.actual_size > 0


def test_raw_and_iso_detected(src: Path) -> None:
    raw = make_image(src, "raw", size_mb=3, name="image.qcow2")
    info = inspect(raw, name="r")
    assert (info.format, info.virtual_size) == ("raw", 3 * MiB)
    assert inspect(make_image(src, "iso", name="image.qcow2.iso"), name="i").format == "iso"


def test_garbage_is_raw_as_qemu_says_but_empty_is_refused(src: Path) -> None:
    # qemu-img reads any bytes it cannot recognise as a raw disk; we follow it for binary bytes (the target then
    # boots garbage, but the bytes were signed and checksummed by the publisher). Text is refused: see
    # test_convert_declared.py.
    src.mkdir()
    garbage = src / "garbage.qcow2"
    garbage.write_bytes(b"not a disk image at all\n\x00" * 100)
    assert inspect(garbage, name="g").format == "raw"
    empty = src / "empty.qcow2"
    empty.write_bytes(b"")
    with pytest.raises(ConversionError, match="empty"):
        inspect(empty, name="e")


def test_broken_qcow2_header_is_an_error(src: Path) -> None:
    src.mkdir()
    broken = src / "broken.qcow2"
    broken.write_bytes(b"QFI\xfb" + b"\xff" * 508)
    with pytest.raises(ConversionError, match="qemu-img info failed") as err:
        inspect(broken, name="img-9")
    assert err.value.subject == "img-9"
    assert "\n" not in str(err.value)


def test_accepted_format_is_used_unchanged(src: Path, cache: Path) -> None:
    image = make_image(src, "qcow2", name="image.raw")
    prepared = _prepare(image, ["raw", "qcow2"], cache)
    assert prepared == Prepared(image, "qcow2", MiB, converted=False)
    assert _leftovers(cache) == []


@pytest.mark.parametrize(
    ("source", "target"),
    [("qcow2", "raw"), ("raw", "qcow2"), ("vmdk", "qcow2"), ("vhdx", "vdi"), ("qcow2", "vpc"), ("vdi", "vmdk")],
)
def test_conversion_preserves_content(src: Path, cache: Path, source: str, target: str) -> None:
    reference = make_image(src / "ref", "raw")
    image = make_image(src, source, name="download.bin")
    prepared = _prepare(image, [target, "iso"], cache)
    assert prepared.converted
    assert prepared.format == target
    assert prepared.path == cache / "converted" / f"{sha512_of(image)}.{target}"
    assert f'"format": "{target}"' in qemu_img("info", "--output=json", "-f", target, str(prepared.path))
    assert same_content(prepared.path, reference)
    assert not same_content(prepared.path, make_image(src / "other", "raw", pattern=b"another pattern\n"))
    assert _leftovers(cache) == [prepared.path.name]


def test_second_prepare_reuses_the_cached_conversion(src: Path, cache: Path) -> None:
    image = make_image(src, "vmdk")
    digest = sha512_of(image)
    first = prepare(image, sha512=digest, accepted=["qcow2"], cache_dir=cache, name="img-1")
    before = first.path.stat()
    # The source no longer exists: only the cache can answer, so no conversion can have run.
    second = prepare(src / "gone.vmdk", sha512=digest, accepted=["raw", "qcow2"], cache_dir=cache, name="img-1")
    assert second == first
    assert second.path.stat().st_mtime_ns == before.st_mtime_ns
    assert second.path.stat().st_ino == before.st_ino


def test_unusable_cache_entry_is_replaced(src: Path, cache: Path) -> None:
    image = make_image(src, "raw")
    digest = sha512_of(image)
    stale = cache / "converted" / f"{digest}.qcow2"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a qcow2")
    prepared = prepare(image, sha512=digest, accepted=["qcow2"], cache_dir=cache, name="img-1")
    assert prepared.path == stale
    assert same_content(stale, image)


def test_ova_with_ovf_uses_its_disk(src: Path, cache: Path) -> None:
    ova = make_ova(src, "vmdk", name="appliance.qcow2")
    prepared = _prepare(ova, ["vmdk"], cache)
    assert (prepared.format, prepared.converted, prepared.virtual_size) == ("vmdk", True, MiB)
    assert prepared.path.parent == cache / "converted"
    assert same_content(prepared.path, make_image(src / "ref", "raw"))
    assert _leftovers(cache) == [prepared.path.name]


def test_ova_disk_is_converted(src: Path, cache: Path) -> None:
    prepared = _prepare(make_ova(src, "vmdk"), ["raw"], cache)
    assert prepared.format == "raw"
    assert same_content(prepared.path, make_image(src / "ref", "raw"))


def test_ovf_chooses_among_several_disks(src: Path, cache: Path) -> None:
    other = make_image(src / "other", "qcow2", pattern=b"the disk the OVF names\n").read_bytes()
    ova = make_ova(src, "vmdk", extra_members=[("other.qcow2", other)], ovf_disk="other.qcow2")
    prepared = _prepare(ova, ["qcow2"], cache)
    assert prepared.format == "qcow2"
    assert same_content(prepared.path, make_image(src / "ref", "raw", pattern=b"the disk the OVF names\n"))


def test_ova_without_ovf_uses_its_single_disk(src: Path, cache: Path) -> None:
    prepared = _prepare(make_ova(src, "qcow2", with_ovf=False), ["qcow2"], cache)
    assert prepared.format == "qcow2"
    assert same_content(prepared.path, make_image(src / "ref", "raw"))


def test_ova_with_several_disks_and_no_ovf_is_refused(src: Path, cache: Path) -> None:
    extra = make_image(src / "other", "qcow2").read_bytes()
    ova = make_ova(src, "vmdk", with_ovf=False, extra_members=[("second.qcow2", extra)])
    with pytest.raises(ConversionError, match="2 disk files"):
        _prepare(ova, ["qcow2"], cache)
    assert _leftovers(cache) == []


def test_ovf_naming_a_missing_disk_is_refused(src: Path, cache: Path) -> None:
    with pytest.raises(ConversionError, match="lacks"):
        _prepare(make_ova(src, ovf_disk="../../etc/passwd"), ["qcow2"], cache)


_EXPECTED = {
    "absolute": "absolute", "dotdot": "'..'", "symlink": "regular file", "hardlink": "regular file",
    "device": "regular file", "fifo": "regular file", "directory": "regular file", "huge": "bytes",
    "too_many": "members", "xxe": "DTD", "billion_laughs": "DTD", "utf16_doctype": "DTD", "external_dtd": "DTD",
}


@pytest.mark.parametrize("kind", MALICIOUS_KINDS)
def test_malicious_ova_is_refused_and_writes_nothing(tmp_path: Path, cache: Path, kind: MaliciousKind) -> None:
    ova = malicious_ova(tmp_path / "src", kind)
    (cache / "converted").mkdir(parents=True)
    before = _tree(tmp_path)
    with pytest.raises(ConversionError, match="refused OVA") as err:
        _prepare(ova, ["qcow2"], cache)
    assert _EXPECTED[kind] in str(err.value)
    assert _tree(tmp_path) == before
    assert not (Path.cwd().parent / "ESCAPED").exists()


def test_ova_bigger_than_the_limit_is_refused(src: Path, cache: Path) -> None:
    ova = make_ova(src, "raw")  # 1 MiB disk inside
    with pytest.raises(ConversionError, match="bytes"):
        _prepare(ova, ["raw"], cache, max_size=MiB // 2)
    assert _leftovers(cache) == []


@pytest.mark.parametrize("accepted", [["qcow2"], ["raw"]])
def test_images_reading_host_files_are_refused(src: Path, cache: Path, accepted: list[str]) -> None:
    hostile = {
        "backing file": qcow2_with_backing(src),
        "external data file": qcow2_with_data_file(src, src / "data.raw"),
        "extent files": vmdk_with_flat_extent(src),
        "encrypted": encrypted_qcow2(src),
    }
    for reason, image in hostile.items():
        with pytest.raises(ConversionError, match=reason):
            _prepare(image, accepted, cache)
    assert _leftovers(cache) == []


@pytest.mark.parametrize("accepted", [["qcow2"], ["raw"]])
def test_external_data_file_flag_without_a_file_name_is_refused(src: Path, cache: Path, accepted: list[str]) -> None:
    # qemu-img info reads such an image without complaint and names no data file (only "data-file-raw"), yet no
    # hypervisor can open it: it must not reach a target that takes qcow2 as it is.
    image = make_image(src, "qcow2")
    header = bytearray(image.read_bytes())
    header[72:80] = (4).to_bytes(8, "big")  # incompatible feature bit 2: external data file
    image.write_bytes(bytes(header))
    assert '"data-file-raw"' in qemu_img("info", "--output=json", str(image))
    with pytest.raises(ConversionError, match="external data file"):
        _prepare(image, accepted, cache)
    assert _leftovers(cache) == []


def test_backing_file_hidden_in_an_ova_is_refused(src: Path, cache: Path) -> None:
    backed = qcow2_with_backing(src / "parts").read_bytes()
    ova = make_ova(src, "vmdk", extra_members=[("backed.qcow2", backed)], ovf_disk="backed.qcow2")
    with pytest.raises(ConversionError, match="backing file"):
        _prepare(ova, ["qcow2"], cache)
    assert _leftovers(cache) == []


def test_unsupported_target_format_is_named(src: Path, cache: Path) -> None:
    with pytest.raises(ConversionError, match="'ami'"):
        _prepare(make_image(src, "raw"), ["qcow2", "ami"], cache)


def test_iso_is_never_converted(src: Path, cache: Path) -> None:
    iso = make_image(src, "iso")
    assert _prepare(iso, ["raw", "iso"], cache) == Prepared(iso, "iso", MiB, converted=False)
    with pytest.raises(ConversionError, match="iso"):
        _prepare(iso, ["qcow2", "raw"], cache)
    with pytest.raises(ConversionError, match="cannot convert a qcow2 image to iso"):
        _prepare(make_image(src, "qcow2"), ["iso"], cache)
    assert _leftovers(cache) == []


def test_failed_conversion_leaves_no_temporary_file(src: Path, cache: Path) -> None:
    src.mkdir()
    huge = src / "huge.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(huge), "3T")  # a VHD cannot be bigger than 2040 GiB
    with pytest.raises(ConversionError, match=r"qemu-img convert failed: .*too large") as err:
        _prepare(huge, ["vpc"], cache, max_size=4 * 1024**4)
    assert err.value.hint
    assert _leftovers(cache) == []


def test_virtual_size_over_the_limit_is_refused(src: Path, cache: Path) -> None:
    with pytest.raises(ConversionError, match="virtual size"):
        _prepare(make_image(src, "qcow2", size_mb=4), ["raw"], cache, max_size=2 * MiB)


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress])
def test_compressed_images_are_unpacked(src: Path, cache: Path, compress: object) -> None:
    assert callable(compress)
    image = make_image(src, "qcow2")
    packed = src / "image.qcow2"
    packed.write_bytes(compress(image.read_bytes()))
    prepared = _prepare(packed, ["qcow2"], cache)
    assert (prepared.format, prepared.converted) == ("qcow2", True)
    assert prepared.path.read_bytes() == image.read_bytes()


def test_compressed_ova_is_unpacked(src: Path, cache: Path) -> None:
    ova = make_ova(src, "vmdk")
    packed = src / "appliance.ova.gz"
    packed.write_bytes(gzip.compress(ova.read_bytes()))
    assert _prepare(packed, ["vmdk"], cache).format == "vmdk"


def test_decompression_bomb_and_bad_compression_are_refused(src: Path, cache: Path) -> None:
    src.mkdir()
    bomb = src / "bomb.raw"
    bomb.write_bytes(gzip.compress(b"\0" * (8 * MiB)))
    with pytest.raises(ConversionError, match="size limit"):
        _prepare(bomb, ["raw"], cache, max_size=4 * MiB)
    corrupt = src / "corrupt.raw"
    corrupt.write_bytes(gzip.compress(b"x" * MiB)[:-200] + b"\xff" * 100)
    with pytest.raises(ConversionError, match="decompress"):
        _prepare(corrupt, ["raw"], cache)
    zstd = src / "image.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 1000)
    with pytest.raises(ConversionError, match="uncompressed"):
        _prepare(zstd, ["raw"], cache)
    assert _leftovers(cache) == []


def test_bad_sha512_cannot_escape_the_cache(src: Path, cache: Path) -> None:
    with pytest.raises(ConversionError, match="sha512"):
        prepare(make_image(src, "vmdk"), sha512="../../x", accepted=["qcow2"], cache_dir=cache, name="img-1")


def test_a_target_accepting_the_original_gets_it_not_another_targets_conversion(src: Path, cache: Path) -> None:
    image = make_image(src, "qcow2")
    converted = _prepare(image, ["raw"], cache)
    assert converted.converted and converted.format == "raw"
    direct = _prepare(image, ["qcow2", "raw"], cache)
    assert direct == Prepared(image, "qcow2", MiB, converted=False)
