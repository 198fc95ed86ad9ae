"""An image's format and virtual size read from its first bytes, without a qemu-img process, where they leave no doubt.

``qemu-img info`` costs a process per image (about 10 ms, most of a tiny image's add). Image lists carry qcow2 and raw
images almost only, and for those the header says everything ``qemu-img info`` would; for anything else, and
whenever in doubt, :func:`vouch` returns None and qemu-img answers, with every check of :mod:`imagesync.images.convert`.

- **qcow2**: only the plain layout ``qemu-img create``/``convert`` writes: version 2 or 3, no backing file, no
  encryption, no feature bit but lazy refcounts (so no external data file, no dirty, corrupt, zstd or extended-L2
  image), no snapshot, no header extension but the feature-name table, and every field within the bounds qemu
  checks when it opens the image (so a header qemu would refuse is never vouched for).
- **raw**: what qemu-img calls any bytes none of its probes recognises. Rather than mirror the probes exactly,
  this refuses to say raw for any file that comes near one: a magic at offset 0 of qcow, qcow2, qed, vmdk,
  luks, vhdx, vpc, parallels, bochs or cloop, the vdi signature or a vmdk descriptor's ``version=`` anywhere
  in the probe window, a VHD footer in the last sector or a name ending in ``.dmg`` or ``.vhd`` (dmg probes by
  name, fixed VHDs may be), or a size that is no whole number of sectors (qemu versions round those differently).
- the probes are qemu's as of the block drivers in :data:`KNOWN_DRIVERS`: a qemu-img with any other driver could
  probe bytes in a way this module does not know, so then nothing is vouched for.

The formats qemu-img reads and we never vouch for (vmdk, vdi, vhdx, vpc) need parsing beyond their header to be
trusted (a vmdk's descriptor names extents and parents, a streamOptimized one keeps its header at the end, a vpc's
size depends on its creator, a vhdx may have a log to replay); those images are rare and mostly converted anyway.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from imagesync.errors import ImagesyncError
from imagesync.images import qemu

log = logging.getLogger(__name__)

SECTOR = 512
_PROBE_WINDOW = 2048  # qemu's BLOCK_PROBE_BUF_SIZE: every probe sees at most this much of the file
_READ = 4096  # the probe window and a qcow2 header with its feature-name table
_STARTS = (b"QFI\xfb", b"QED\x00", b"KDMV", b"COWD", b"LUKS\xba\xbe", b"vhdxfile", b"conectix",
           b"WithoutFreeSpace", b"WithouFreSpacExt", b"Bochs Virtual HD Image", b"#!/bin/sh")
_ANYWHERE = (b"\x7f\x10\xda\xbe", b"version=")  # vdi's signature (at 64), a vmdk descriptor's first line
# dmg probes by name; a fixed VHD is only a footer at the end, which qemu 7.2 does not probe but others might.
_NAMES = (".dmg", ".vhd")
# Block drivers whose probes (or lack of one) the rules above account for. Protocols and filters do not probe.
KNOWN_DRIVERS = frozenset({
    "bochs", "cloop", "dmg", "luks", "parallels", "qcow", "qcow2", "qed", "raw", "vdi", "vhdx", "vmdk", "vpc",
    "blkdebug", "blklogwrites", "blkreplay", "blkverify", "compress", "copy-before-write", "copy-on-read",
    "preallocate", "quorum", "replication", "snapshot-access", "throttle", "null-aio", "null-co", "vvfat",
    "file", "host_cdrom", "host_device", "ftp", "ftps", "http", "https", "gluster", "iscsi", "iser", "nbd", "nfs",
    "nvme", "rbd", "ssh", "io_uring", "nvme-io_uring", "virtio-blk-vfio-pci", "virtio-blk-vhost-user",
    "virtio-blk-vhost-vdpa",
})

_QCOW2 = struct.Struct(">4sIQIIQIIQQIIQ")  # the version 2 header, 72 bytes
_QCOW2_V3 = struct.Struct(">QQQII")  # incompatible, compatible, autoclear features, refcount order, header length
_LAZY_REFCOUNTS = 1
_FEATURE_TABLE = 0x6803F857
_MiB = 1024 * 1024


@dataclass(frozen=True)
class Header:
    """What the header says: ``format`` is ``qcow2`` or ``raw``; ``virtual_size`` in bytes."""

    format: str
    virtual_size: int


def vouch(path: Path, expected: str | None = None) -> Header | None:
    """The format and virtual size of ``path`` when its header leaves no doubt (and it is ``expected``, if given);
    None when qemu-img must answer: another format, anything unusual, an unreadable file, a qemu-img that is missing
    or has block drivers we do not know. Never raises."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(_READ)
            f.seek(max(size - SECTOR, 0))
            last = f.read(SECTOR)
    except OSError:
        return None
    found = read(start, last, size=size, name=path.name)
    if found is None or expected not in (None, found.format) or not _drivers_known():
        return None
    return found


def read(start: bytes, last: bytes, *, size: int, name: str) -> Header | None:
    """The header's answer for a file of ``size`` bytes named ``name`` that begins with ``start`` (4 KiB or all of
    it) and ends with the sector ``last``, or None when qemu-img must answer (see the module docstring). Pure."""
    if start[:4] == b"QFI\xfb":
        return _qcow2(start)
    if size <= 0 or size % SECTOR or name.lower().endswith(_NAMES) or last.startswith(b"conectix"):
        return None
    window = start[:_PROBE_WINDOW]
    if window.startswith(_STARTS) or any(marker in window for marker in _ANYWHERE):
        return None
    return Header("raw", size)


def _qcow2(start: bytes) -> Header | None:
    if len(start) < _QCOW2.size:
        return None
    (_, version, backing, _, cluster_bits, virtual, crypt, l1_size, l1_offset, refcount_offset, refcount_clusters,
     snapshots, snapshots_offset) = _QCOW2.unpack_from(start)
    if version not in (2, 3) or backing or crypt or snapshots or not 9 <= cluster_bits <= 21:
        return None
    cluster = 1 << cluster_bits
    tables_fit = (_table_ok(refcount_offset, refcount_clusters, cluster, 8 * _MiB, cluster)
                  and _table_ok(l1_offset, l1_size, 8, 32 * _MiB, cluster)
                  and _table_ok(snapshots_offset, 0, 1, 1, cluster))
    if not tables_fit or refcount_clusters == 0 or virtual <= 0 or virtual % SECTOR:
        return None
    if l1_size < -(-virtual // (cluster * cluster // 8)):  # the L1 table must map the whole disk
        return None
    header_length = _QCOW2.size if version == 2 else _v3_header_length(start)
    if header_length is None or not _only_feature_table(start, header_length, cluster):
        return None
    return Header("qcow2", virtual)


def _table_ok(offset: int, entries: int, entry_size: int, max_bytes: int, cluster: int) -> bool:
    # What qemu's qcow2_validate_table checks: bounded size, cluster-aligned offset, end within a signed 64 bits.
    return entries <= max_bytes // entry_size and offset % cluster == 0 and offset + entries * entry_size < 2**63


def _v3_header_length(start: bytes) -> int | None:
    """The header length of a plain version 3 header, or None for anything else (feature bits, odd lengths)."""
    if len(start) < _QCOW2.size + _QCOW2_V3.size:
        return None
    incompatible, compatible, autoclear, refcount_order, length = _QCOW2_V3.unpack_from(start, _QCOW2.size)
    if incompatible or compatible & ~_LAZY_REFCOUNTS or autoclear or refcount_order > 6 or length not in (104, 112):
        return None
    if length == 112 and start[104] != 0:  # compression type: anything but zlib needs an incompatible bit
        return None
    return int(length)


def _only_feature_table(start: bytes, offset: int, cluster: int) -> bool:
    """True when the header extensions from ``offset`` are at most a feature-name table, then the end marker."""
    end = min(cluster, len(start))
    while offset + 8 <= end:
        magic, length = struct.unpack_from(">II", start, offset)
        if magic == 0:
            return True
        if magic != _FEATURE_TABLE or length > end - offset - 8:
            return False
        offset += 8 + (length + 7) // 8 * 8
    return False  # no end marker within what was read: let qemu read the rest


def _drivers_known() -> bool:
    try:
        drivers = qemu.formats()
    except ImagesyncError:
        return False  # no usable qemu-img: it must say so itself, image by image, as before
    return not _unknown(drivers)


@functools.lru_cache(maxsize=4)
def _unknown(drivers: frozenset[str]) -> frozenset[str]:
    unknown = drivers - KNOWN_DRIVERS
    if unknown:  # logged once per qemu-img, not per image
        log.info("qemu-img has block drivers imagesync does not know (%s): qemu-img inspects every image",
                 ", ".join(sorted(unknown)))
    return unknown
