"""Detect an image's format from its bytes and turn it into a format the target accepts (DESIGN §7).

The list's ``hv:format`` is never trusted: qemu-img probes the bytes (for a plain qcow2 or raw image the header
says the same without a process, see :mod:`imagesync.images.headers`), and a declaration the bytes contradict is
refused, as are files that cannot be disks (see :mod:`imagesync.images.detect`). Everything qemu-img reads comes from a
publisher, so images that make qemu open other host files (backing files, external data files, VMDK extents)
are refused, qemu-img runs under resource limits, and OVA archives are unpacked by us, member by member,
without ever writing a member name to the filesystem.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagesync.images import headers, qemu
from imagesync.images.detect import ISO, check_archive, check_disk, is_iso, no_disk, sniff
from imagesync.images.ova import copy_bounded, extract_ova
from imagesync.images.qemu import ConversionError, qemu_img_available
from imagesync.util.atomic import fsync_dir

# Importers (execute, demo, tests) take these from here, where the conversion stage's interface is.
__all__ = ["ISO", "SOURCE_FORMATS", "TARGET_FORMATS", "ConversionError", "ImageInfo", "Prepared", "inspect",
           "prepare", "qemu_img_available"]

log = logging.getLogger(__name__)

TARGET_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
# Formats we let qemu-img read: the exotic probed drivers (dmg, cloop, bochs, parallels, ...) are attack surface
# no image list needs.
SOURCE_FORMATS = frozenset(TARGET_FORMATS)
# Only single-file VMDK layouts: every other create-type is a descriptor naming extent files on the host.
_VMDK_TYPES = frozenset({"monolithicSparse", "streamOptimized"})
_GiB = 1024**3
_SHA512 = re.compile(r"[0-9a-f]{128}")
_WORK_OWNER = re.compile(r"\.work-(\d+)-")


@dataclass(frozen=True)
class ImageInfo:
    """What qemu-img (or the header, or our ISO check) says about a file's bytes; sizes in bytes."""

    format: str
    virtual_size: int
    actual_size: int


@dataclass(frozen=True)
class Prepared:
    """A file ready for a target; ``converted`` is true whenever ``path`` is not the verified download itself."""

    path: Path
    format: str
    virtual_size: int
    converted: bool


def _qemu_info(path: Path, fmt: str | None, name: str) -> dict[str, Any]:
    # An absolute path, so qemu never reads "json:{...}" or "nbd:..." pseudo-filenames out of a file name.
    args = ["info", "--output=json", "-U", *(["-f", fmt] if fmt else []), str(path.absolute())]
    try:
        data = json.loads(qemu.run(args, qemu.INFO_LIMITS, name=name, what="info"))
    except ValueError as exc:
        raise ConversionError("qemu-img info printed something that is not JSON", subject=name) from exc
    if not isinstance(data, dict) or not isinstance(data.get("format"), str) or "virtual-size" not in data:
        raise ConversionError("qemu-img info output lacks format or virtual-size", subject=name)
    return data


def _foreign_extents(fmt: str, specific: dict[str, Any], path: Path) -> bool:
    if fmt != "vmdk":
        return False
    extents = specific.get("extents") or []
    return specific.get("create-type") not in _VMDK_TYPES or any(
        Path(str(extent.get("filename"))) != path.absolute() for extent in extents
    )


def _refusal(data: dict[str, Any], path: Path) -> str | None:
    """Why these bytes must not be used, or None."""
    fmt = data["format"]
    specific = (data.get("format-specific") or {}).get("data") or {}
    checks = (
        (fmt not in SOURCE_FORMATS, f"unsupported image format {fmt!r}"),
        ("backing-filename" in data or "full-backing-filename" in data,
         f"the image has a backing file ({str(data.get('backing-filename'))[:100]!r})"),
        # The feature bit alone (no file named) shows only as data-file-raw; no hypervisor can use such an image.
        ("data-file" in specific or "data-file-raw" in specific, "the image uses an external data file"),
        (bool(data.get("encrypted")) or "encrypt" in specific, "the image is encrypted"),
        (bool(specific.get("corrupt")), "the image is marked corrupt"),
        (_foreign_extents(fmt, specific, path), "the VMDK refers to extent files outside itself"),
        (int(data["virtual-size"]) <= 0, "the image is empty"),
    )
    return next((problem for bad, problem in checks if bad), None)


def _info(path: Path, fmt: str | None, name: str) -> ImageInfo:
    header = headers.vouch(path, fmt)  # a plain qcow2, or bytes no qemu probe knows: qemu-img would say the same
    if header is not None:
        found = ISO if header.format == "raw" and is_iso(path) else header.format
        return ImageInfo(found, header.virtual_size, path.stat().st_blocks * 512)
    data = _qemu_info(path, fmt, name)
    problem = _refusal(data, path)
    if problem:
        raise ConversionError(f"refused: {problem}", subject=name, hint="the publisher must provide a standalone image")
    if fmt and data["format"] != fmt:
        raise ConversionError(f"expected a {fmt} image, qemu-img reads {data['format']}", subject=name)
    found = ISO if data["format"] == "raw" and is_iso(path) else data["format"]
    return ImageInfo(found, int(data["virtual-size"]), int(data.get("actual-size") or 0))


def inspect(path: Path, *, name: str) -> ImageInfo:
    """Probe ``path``'s format from its bytes (ISO 9660 reported as ``iso``).

    Raises ConversionError if the file is empty, unreadable or cannot be a disk (smaller than a sector, text
    read as raw), or the image is refused (backing file, external data, encryption, VMDK extents, an exotic
    format).
    """
    try:
        size = path.stat().st_size
        if size == 0:
            raise ConversionError("the image file is empty", subject=name)
        info = _info(path, None, name)
        problem = no_disk(path, size, info.format)
    except OSError as exc:
        raise ConversionError(f"cannot read the image: {exc.strerror}", subject=name) from exc
    if problem:
        raise ConversionError(f"refused: {problem}", subject=name, hint="the publisher must list a disk image")
    return info


def _open_compressed(path: Path, kind: str) -> io.BufferedIOBase:
    if kind == "gzip":
        return gzip.GzipFile(path, "rb")
    if kind == "xz":
        return lzma.LZMAFile(path, "rb")
    return bz2.BZ2File(path, "rb")


def _decompress(path: Path, kind: str, work: Path, max_size: int, name: str) -> Path:
    if kind not in ("gzip", "xz", "bz2"):
        raise ConversionError(f"the image is {kind}-compressed", subject=name,
                              hint="the publisher must list the uncompressed image")
    dest = work / "decompressed"
    try:
        with _open_compressed(path, kind) as src, dest.open("xb") as out:
            copy_bounded(src, out, max_size, name)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise ConversionError(f"cannot decompress the {kind} image: {exc}", subject=name) from exc
    return dest


def _unwrap(path: Path, work: Path, max_size: int, name: str) -> tuple[Path, bool]:
    """The disk image inside ``path`` (decompressed and/or taken out of an OVA, or ``path`` itself), and
    whether it came out of an OVA."""
    kind = sniff(path)
    if kind in ("gzip", "xz", "bz2", "zstd"):
        path = _decompress(path, kind, work, max_size, name)
        kind = sniff(path)
        if kind not in (None, "tar"):
            raise ConversionError(f"the decompressed image is {kind}-compressed again", subject=name)
    if kind != "tar":
        return path, False
    path = extract_ova(path, work, max_size, name)
    if sniff(path) is not None:
        raise ConversionError("the disk inside the OVA is compressed or an archive", subject=name)
    return path, True


def _validate(sha512: str, accepted: Sequence[str], name: str) -> None:
    if not _SHA512.fullmatch(sha512):
        raise ConversionError("invalid sha512 (expected 128 lowercase hex digits)", subject=name)
    if not accepted:
        raise ConversionError("the target accepts no disk format", subject=name)
    for fmt in accepted:
        if fmt not in (*TARGET_FORMATS, ISO):
            raise ConversionError(f"unsupported target disk format {fmt!r}", subject=name,
                                  hint=f"supported: {', '.join((*TARGET_FORMATS, ISO))}")


def _cached(out_dir: Path, sha512: str, accepted: Sequence[str], name: str) -> Prepared | None:
    for fmt in accepted:
        candidate = out_dir / f"{sha512}.{fmt}"
        if fmt == ISO or not candidate.is_file():
            continue
        try:
            info = _info(candidate, fmt, name)
        except ConversionError as exc:
            log.warning("discarding unusable cached conversion %s: %s", candidate.name, exc)
            candidate.unlink(missing_ok=True)
            continue
        log.debug("image=%s reusing cached %s conversion", name, fmt)
        return Prepared(candidate, fmt, info.virtual_size, converted=True)
    return None


def _publish(src: Path, out_dir: Path, sha512: str, info: ImageInfo) -> Prepared:
    final = out_dir / f"{sha512}.{info.format}"
    with src.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(src, final)
    fsync_dir(out_dir)
    return Prepared(final, info.format, info.virtual_size, converted=True)


def _convert(source: Path, info: ImageInfo, *, work: Path, accepted: Sequence[str], max_size: int, name: str) -> Path:
    if info.format == ISO:
        raise ConversionError("the image is an ISO 9660 file system and the target does not accept iso", subject=name,
                              hint="add iso to the target's disk_formats")
    target = next((fmt for fmt in accepted if fmt != ISO), None)
    if target is None:
        raise ConversionError(f"cannot convert a {info.format} image to iso", subject=name)
    tmp = work / f"converted.{target}"
    log.info("image=%s converting %s -> %s", name, info.format, target)
    # -f names the probed format, so qemu never probes again while converting.
    args = ["convert", "-q", "-f", info.format, "-O", target, str(source.absolute()), str(tmp.absolute())]
    qemu.run(args, qemu.convert_limits(max_size), name=name, what="convert")
    return tmp


def _prepare_in(path: Path, work: Path, out_dir: Path, sha512: str, accepted: Sequence[str], *,
                max_size: int, name: str, declared: str | None) -> Prepared:
    source, archive = _unwrap(path, work, max_size, name)
    check_archive(declared, archive=archive, name=name)
    info = inspect(source, name=name)
    check_disk(declared, archive=archive, disk=info.format, name=name)
    if info.virtual_size > max_size:
        raise ConversionError(f"virtual size {info.virtual_size} exceeds the limit of {max_size} bytes", subject=name)
    if info.format in accepted:
        if source == path:
            return Prepared(path, info.format, info.virtual_size, converted=False)
        return _publish(source, out_dir, sha512, info)
    output = _convert(source, info, work=work, accepted=accepted, max_size=max_size, name=name)
    return _publish(output, out_dir, sha512, _info(output, output.suffix[1:], name))


def _usable_as_is(path: Path, accepted: Sequence[str], max_size: int, name: str,
                  declared: str | None) -> Prepared | None:
    if not path.is_file() or sniff(path) is not None:
        return None  # gone (a cached conversion will do) or an archive / compressed file to unwrap first
    check_archive(declared, archive=False, name=name)
    info = inspect(path, name=name)
    check_disk(declared, archive=False, disk=info.format, name=name)
    if info.format not in accepted or info.virtual_size > max_size:
        return None
    return Prepared(path, info.format, info.virtual_size, converted=False)


def _remove_orphaned_work(out_dir: Path) -> None:
    """Remove work directories whose process is gone: a half-written conversion of a killed run. Those of a live
    process (or a reused pid, or unnamed ones of older versions) are left to ``imagesync gc``. Raises OSError."""
    for work in out_dir.glob(".work-*"):
        match = _WORK_OWNER.match(work.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            log.info("removing %s, the work directory of a killed conversion", work.name)
            shutil.rmtree(work, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def prepare(path: Path, *, sha512: str, accepted: Sequence[str], cache_dir: Path, name: str,
            max_size: int = 200 * _GiB, declared: str | None = None) -> Prepared:
    """Return ``path`` itself if its real format is in ``accepted``, else a cached converted copy.

    ``declared`` is the list's hv:format: bytes it contradicts are refused (see :mod:`imagesync.images.detect`).
    OVA archives are unpacked safely and compressed (gzip, xz, bz2) images decompressed, within ``max_size``.
    Conversion targets ``accepted[0]`` (skipping ``iso``); its output is cached as
    ``cache_dir/converted/<sha512>.<format>`` and reused without reading ``path`` again.
    Raises ConversionError for any refused, unreadable or unconvertible image; leaves no temporary file behind.
    """
    _validate(sha512, accepted, name)
    direct = _usable_as_is(path, accepted, max_size, name, declared)
    if direct is not None:
        # The verified download itself beats any cached conversion another target asked for.
        return direct
    out_dir = cache_dir / "converted"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        cached = _cached(out_dir, sha512, accepted, name)
        if cached is not None:
            return cached
        # A private work directory per call: concurrent prepares of one image never share a temp file. Its name
        # carries our pid, so the next conversion can tell (and remove) one that a killed run left.
        _remove_orphaned_work(out_dir)
        work = Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=out_dir))
    except OSError as exc:
        raise ConversionError(f"cannot use the conversion cache: {exc}", subject=name) from exc
    try:
        return _prepare_in(path, work, out_dir, sha512, accepted, max_size=max_size, name=name, declared=declared)
    except OSError as exc:
        raise ConversionError(f"conversion failed: {exc}", subject=name) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
