"""OVA archives: refuse unsafe members, choose the disk (the one the OVF names), and copy out only its bytes.

Member names never reach the filesystem and the OVF is parsed by expat with DTDs refused, so a hostile archive
can neither write outside the work directory nor expand entities.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO
from xml.parsers import expat

from imagesync.images.qemu import ConversionError

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MAX_MEMBERS = 64
_MAX_OVF = 1024 * 1024
_DISK_SUFFIXES = (".vmdk", ".qcow2", ".img", ".raw", ".vhd", ".vhdx", ".vdi")


def copy_bounded(src: IO[bytes] | io.BufferedIOBase, dest: IO[bytes], limit: int, name: str) -> None:
    """Copy ``src`` to ``dest``. Raises ConversionError once more than ``limit`` bytes came; OSError."""
    total = 0
    while chunk := src.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise ConversionError(f"the unpacked image exceeds the size limit of {limit} bytes", subject=name)
        dest.write(chunk)


def _ova_error(problem: str, name: str) -> ConversionError:
    return ConversionError(f"refused OVA: {problem}", subject=name, hint="an OVA must hold plain files and one OVF")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    if not member.isreg():
        return "not a regular file (links, devices, fifos and directories are refused)"
    if member.name.startswith("/") or "\\" in member.name:
        return "absolute path"
    if ".." in PurePosixPath(member.name).parts:
        return "'..' in its path"
    return None


def _safe_members(tar: tarfile.TarFile, max_size: int, name: str) -> dict[str, tarfile.TarInfo]:
    """Read every header, refusing the whole archive at the first unsafe member or when it is too big."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    while (member := tar.next()) is not None:
        problem = _member_problem(member)
        if problem:
            raise _ova_error(f"member {member.name[:100]!r}: {problem}", name)
        key = member.name.removeprefix("./")
        if key in members:
            raise _ova_error(f"member {key[:100]!r} appears twice", name)
        members[key] = member
        total += member.size
        if len(members) > _MAX_MEMBERS or total > max_size:
            raise _ova_error(f"more than {_MAX_MEMBERS} members or {max_size} bytes", name)
    return members


class _DtdFound(Exception):
    pass


def _ovf_disk_href(data: bytes, name: str) -> str | None:
    """The file name of the OVF's first disk, or None if the descriptor is unusable."""
    files: dict[str, str] = {}
    refs: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        local = {key.rsplit("}", 1)[-1]: value for key, value in attrs.items()}
        kind = tag.rsplit("}", 1)[-1]
        if kind == "File" and "id" in local and "href" in local:
            files[local["id"]] = local["href"]
        elif kind == "Disk" and "fileRef" in local:
            refs.append(local["fileRef"])

    def refuse(*_: object) -> None:
        raise _DtdFound

    # expat itself, so a DTD is refused whatever the declared encoding (a byte search misses UTF-16 or EBCDIC):
    # no entity is ever declared, so no billion laughs and no external entity.
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except _DtdFound:
        raise _ova_error("the OVF declares a DTD or entities", name) from None
    except expat.ExpatError as exc:
        log.warning("image=%s ignoring unparsable OVF descriptor: %s", name, exc)
        return None
    return next((files[ref].removeprefix("./") for ref in refs if ref in files), None)


def _choose_disk(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> tarfile.TarInfo:
    descriptors = [m for key, m in members.items() if key.lower().endswith(".ovf")]
    if len(descriptors) > 1:
        raise _ova_error("several OVF descriptors", name)
    href = None
    if descriptors:
        if descriptors[0].size > _MAX_OVF:
            raise _ova_error(f"the OVF descriptor is larger than {_MAX_OVF} bytes", name)
        with tar.extractfile(descriptors[0]) as f:  # type: ignore[union-attr]  # a regular member always has data
            href = _ovf_disk_href(f.read(_MAX_OVF), name)
    if href is not None:
        if href not in members:
            raise _ova_error(f"the OVF names disk {href[:100]!r}, which the archive lacks", name)
        return members[href]
    disks = [m for key, m in members.items() if key.lower().endswith(_DISK_SUFFIXES)]
    if len(disks) != 1:
        raise _ova_error(f"{len(disks)} disk files and no OVF naming one", name)
    return disks[0]


def extract_ova(path: Path, work: Path, max_size: int, name: str) -> Path:
    """Copy the disk of OVA ``path`` to a file in ``work``; returns that file.

    Raises ConversionError if the archive is unreadable, holds an unsafe member, no single disk, or more than
    ``max_size`` bytes.
    """
    # Only the chosen disk's bytes are written, under our own name: no member name ever reaches the filesystem.
    dest = work / "ova-disk"
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = _choose_disk(tar, _safe_members(tar, max_size, name), name)
            with tar.extractfile(member) as src, dest.open("xb") as out:  # type: ignore[union-attr]
                copy_bounded(src, out, max_size, name)
    except (tarfile.TarError, OSError) as exc:
        raise ConversionError(f"cannot unpack the OVA: {exc}", subject=name) from exc
    return dest
