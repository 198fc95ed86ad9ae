"""What a downloaded file's bytes are, beyond what qemu-img says, and whether that is what the list declared.

qemu-img calls anything it does not recognise a raw disk, so some files are refused before they reach a target:

- a file smaller than one 512-byte sector: no disk, partition table or file system fits (a real list carried a
  15-byte text file as an "OVA");
- a "raw" image whose first MiB (or whole file, if smaller) is text: valid UTF-8 without a single NUL byte. A real
  disk starts with a boot sector, a partition table or zeroed sectors; a text file is an error page, a token
  message or a mislabelled download;
- a mismatch between ``hv:format`` and the bytes. The declaration is normalised (case, blanks) and known aliases
  mapped (qcow -> qcow2, img -> raw, vhd -> vpc). ``ova`` must be an OVA (tar) archive, compressed or not; a disk
  format must be the format of the disk (inside the archive or the compression, if there is one); ``raw`` also
  accepts an ISO 9660 image (an ISO is raw bytes). An absent or empty ``hv:format`` means "detect only", and so
  does a value we do not know (logged at DEBUG), because lists write free text there too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagesync.images.qemu import ConversionError

log = logging.getLogger(__name__)

SECTOR = 512
ISO = "iso"
OVA = "ova"
_TEXT_PROBE = 1024 * 1024
_DECLARED = {"qcow2": "qcow2", "qcow": "qcow2", "raw": "raw", "img": "raw", "iso": ISO, "vmdk": "vmdk", "vdi": "vdi",
             "vhd": "vpc", "vpc": "vpc", "vhdx": "vhdx", "ova": OVA}
_MAGIC: tuple[tuple[str, bytes, int], ...] = (
    ("gzip", b"\x1f\x8b", 0), ("xz", b"\xfd7zXZ\x00", 0), ("bz2", b"1AY&SY", 4),
    ("zstd", b"\x28\xb5\x2f\xfd", 0), ("tar", b"ustar", 257),
)


def head(path: Path, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of ``path`` from ``offset``. Raises OSError."""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def is_iso(path: Path) -> bool:
    """True for an ISO 9660 image, which qemu calls raw: the primary volume descriptor at sector 16."""
    return head(path, 0x8001, 5) == b"CD001"


def sniff(path: Path) -> str | None:
    """``gzip``, ``xz``, ``bz2``, ``zstd`` or ``tar`` (qemu would call each of them raw), else None."""
    start = head(path, 0, SECTOR)
    for kind, magic, offset in _MAGIC:
        if start[offset : offset + len(magic)] == magic and (kind != "bz2" or start[:3] == b"BZh"):
            return kind
    return None


def no_disk(path: Path, size: int, fmt: str) -> str | None:
    """Why a file of ``size`` bytes that qemu-img reads as ``fmt`` cannot be a disk image, or None."""
    if size < SECTOR:
        return f"{size} bytes is smaller than one {SECTOR}-byte sector, so no disk image"
    if fmt == "raw" and _is_text(head(path, 0, _TEXT_PROBE)):
        return "the file is text, not a disk image (an error page or a mislabelled download?)"
    return None


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off by the probe's end is still text.
        return exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"
    return True


def expected_format(declared: str | None, name: str) -> str | None:
    """The format ``hv:format`` promises (see the module docstring), or None to detect only."""
    if declared is None or not declared.strip():
        return None
    known = _DECLARED.get(declared.strip().lower())
    if known is None:
        log.debug("image=%s hv:format %r is not a format we know: detecting only", name, declared)
    return known


def check_archive(declared: str | None, *, archive: bool, name: str) -> None:
    """Refuse a file declared an OVA that is no OVA (tar) archive, before qemu-img looks at it.

    Raises ConversionError naming the image and the declaration.
    """
    if not archive and expected_format(declared, name) == OVA:
        raise _mismatch(declared, "the file is not an OVA (tar) archive", name)


def check_disk(declared: str | None, *, archive: bool, disk: str, name: str) -> None:
    """Refuse a disk of another format than a declared disk format. ``archive``: it came out of an OVA.

    Raises ConversionError naming the image, the declaration and the format qemu-img found.
    """
    expected = expected_format(declared, name)
    if expected in (None, OVA, disk) or (expected == "raw" and disk == ISO):
        return
    raise _mismatch(declared, f"the {'disk in the OVA' if archive else 'image'} is {disk}", name)


def _mismatch(declared: str | None, problem: str, name: str) -> ConversionError:
    return ConversionError(f"hv:format is {declared!r} but {problem}", subject=name,
                           hint="the list describes other bytes than it points to; ask the publisher")
