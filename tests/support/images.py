"""Tiny real disk images, OVAs and hostile archives for tests, made with the real qemu-img.

Every disk starts from a raw file carrying a recognisable pattern, so a conversion can be checked byte-wise with
``qemu-img compare`` against :func:`make_image` (fmt="raw") of the same pattern.
"""

from __future__ import annotations

import functools
import hashlib
import io
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

MiB = 1024 * 1024
DEFAULT_PATTERN = b"imagesync test pattern\n"
SUFFIX = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vpc": "vhd", "vhdx": "vhdx", "vdi": "vdi", "iso": "iso"}

MaliciousKind = Literal[
    "absolute", "dotdot", "symlink", "hardlink", "device", "fifo", "directory", "huge", "too_many",
    "xxe", "billion_laughs", "utf16_doctype", "external_dtd",
]
MALICIOUS_KINDS: tuple[MaliciousKind, ...] = (
    "absolute", "dotdot", "symlink", "hardlink", "device", "fifo", "directory", "huge", "too_many",
    "xxe", "billion_laughs", "utf16_doctype", "external_dtd",
)


def qemu_img(*args: str) -> str:
    """Run the real qemu-img; fail the test loudly if it fails."""
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"qemu-img {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def same_content(a: Path, b: Path) -> bool:
    """True if the guest-visible contents of two images are identical (qemu-img compare, formats probed)."""
    done = subprocess.run(["qemu-img", "compare", "-q", str(a), str(b)], capture_output=True, check=False)
    return done.returncode == 0


def _write_pattern_raw(path: Path, size_mb: int, pattern: bytes) -> None:
    # Pattern at the start and in the last MiB, zeros (sparse) between: data and holes both get converted.
    with path.open("wb") as f:
        f.write((pattern * (64 * 1024 // len(pattern) + 1))[: 64 * 1024])
        f.seek(size_mb * MiB - 4096)
        f.write((pattern * (4096 // len(pattern) + 1))[:4096])


def _write_iso(path: Path, size_mb: int, pattern: bytes) -> None:
    # A minimal ISO 9660 layout: primary volume descriptor at sector 16, terminator at 17 (no genisoimage needed).
    with path.open("wb") as f:
        f.write(pattern[:2048].ljust(2048, b"\0"))
        f.seek(16 * 2048)
        f.write(b"\x01CD001\x01\x00" + b"IMAGESYNC TEST".ljust(32) + b"TESTISO".ljust(32))
        f.seek(17 * 2048)
        f.write(b"\xffCD001\x01")
        f.truncate(size_mb * MiB)


def make_image(directory: Path, fmt: str, size_mb: int = 1, pattern: bytes = DEFAULT_PATTERN,
               name: str | None = None) -> Path:
    """Create a real ``fmt`` image (raw, qcow2, vmdk, vpc, vhdx, vdi or iso) holding ``pattern``; return its path.

    ``name`` overrides the file name (tests use misleading names such as a qcow2 called image.raw).
    """
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / (name or f"disk-{fmt}-{size_mb}m.{SUFFIX[fmt]}")
    if fmt == "iso":
        _write_iso(out, size_mb, pattern)
        return out
    raw = directory / f".pattern-{hashlib.sha256(pattern).hexdigest()[:8]}-{size_mb}m.source"
    _write_pattern_raw(raw, size_mb, pattern)
    if fmt == "raw":
        raw.replace(out)
    else:
        qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(out))
        raw.unlink()
    return out


def sha512_of(path: Path) -> str:
    """Hex sha512 of a file, as the list would carry it."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def ovf_descriptor(disk_name: str, *, doctype: str = "") -> bytes:
    """A small OVF 1.x envelope whose first DiskSection disk is ``disk_name``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>{doctype}
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="{disk_name}"/></References>
  <DiskSection><Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20"/>
  </DiskSection>
  <VirtualSystem ovf:id="test"><Info>imagesync test appliance</Info></VirtualSystem>
</Envelope>
""".encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_ova(out: Path, members: Sequence[tuple[str, bytes]], special: Sequence[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member_name, data in members:
            _add_bytes(tar, member_name, data)
        for info in special:
            tar.addfile(info)
    return out


def make_ova(directory: Path, disk_fmt: str = "vmdk", with_ovf: bool = True,
             extra_members: Sequence[tuple[str, bytes]] = (), pattern: bytes = DEFAULT_PATTERN,
             name: str = "appliance.ova", ovf_disk: str | None = None) -> Path:
    """An OVA (ustar) holding an .ovf (optional), a real ``disk_fmt`` disk named disk.<suffix>, an .mf and extras.

    ``ovf_disk`` makes the OVF name another member as its disk (e.g. one of ``extra_members``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    disk = make_image(directory / ".ova-parts", disk_fmt, pattern=pattern)
    disk_name = f"disk.{SUFFIX[disk_fmt]}"
    members = [(disk_name, disk.read_bytes()), *extra_members]
    if with_ovf:
        members.insert(0, ("appliance.ovf", ovf_descriptor(ovf_disk or disk_name)))
    manifest = "".join(f"SHA256({n})= {hashlib.sha256(d).hexdigest()}\n" for n, d in members)
    members.append(("appliance.mf", manifest.encode()))
    return _write_ova(directory / name, members)


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers: no real device is created
    return info


BILLION_LAUGHS = (
    '<!DOCTYPE Envelope [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)
EXTERNAL_DTD = '<!DOCTYPE Envelope SYSTEM "http://127.0.0.1:9/ovf.dtd">'
XXE = '<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def malicious_ova(directory: Path, kind: MaliciousKind) -> Path:
    """An OVA with a legitimate vmdk disk plus one hostile element of ``kind``.

    Escaping members aim at ``directory/ESCAPED`` (absolute) or ``../ESCAPED`` so tests can check nothing lands.
    """
    directory.mkdir(parents=True, exist_ok=True)
    disk = make_image(directory / ".ova-parts", "vmdk").read_bytes()
    out = directory / f"evil-{kind}.ova"
    base = [("disk.vmdk", disk)]
    ovf = ("appliance.ovf", ovf_descriptor("disk.vmdk"))
    if kind == "huge":
        return _huge_member_ova(out, base)
    special = {
        "absolute": [_special(str((directory / "ESCAPED").absolute()), tarfile.REGTYPE)],
        "symlink": [_special("link.vmdk", tarfile.SYMTYPE, "/etc/passwd")],
        "hardlink": [_special("hard.vmdk", tarfile.LNKTYPE, "/etc/passwd")],
        "device": [_special("null", tarfile.CHRTYPE)],
        "fifo": [_special("fifo", tarfile.FIFOTYPE)],
        "directory": [_special("sub", tarfile.DIRTYPE)],
    }
    members: dict[str, list[tuple[str, bytes]]] = {
        "dotdot": [*base, ("../ESCAPED", b"escaped\n")],
        "too_many": [*base, *((f"filler-{i}.txt", b"") for i in range(200))],
        "xxe": [("appliance.ovf", ovf_descriptor("disk.vmdk", doctype=XXE)), *base],
        "billion_laughs": [("appliance.ovf", ovf_descriptor("disk.vmdk", doctype=BILLION_LAUGHS)), *base],
        "utf16_doctype": [("appliance.ovf", _utf16_doctype()), *base],
        "external_dtd": [("appliance.ovf", ovf_descriptor("disk.vmdk", doctype=EXTERNAL_DTD)), *base],
    }
    return _write_ova(out, members.get(kind, [ovf, *base]), special.get(kind, []))


def _utf16_doctype() -> bytes:
    # A DTD hidden from byte searches by the encoding: only a real XML parser sees it.
    text = ovf_descriptor("disk.vmdk", doctype=XXE).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    return text.encode("utf-16")


def _huge_member_ova(out: Path, base: Sequence[tuple[str, bytes]]) -> Path:
    """A valid tar whose last member declares 300 GiB, written sparse (a few KiB on disk)."""
    with out.open("wb") as f:
        for member_name, data in base:
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            f.write(info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512))
        huge = tarfile.TarInfo("huge.img")
        huge.size = 300 * 1024**3
        f.write(huge.tobuf(format=tarfile.GNU_FORMAT))  # ustar cannot say 300 GiB
        f.seek(huge.size, io.SEEK_CUR)
        f.write(b"\0" * 1024)
    return out


def qcow2_with_backing(directory: Path, backing: str = "/etc/passwd") -> Path:
    """A qcow2 whose backing file is a host file: reading it through qemu would leak that file."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "backed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", str(out))
    return out


def qcow2_with_data_file(directory: Path, data_file: Path) -> Path:
    """A qcow2 whose guest data lives in ``data_file`` (an external data file)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "external.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={data_file},data_file_raw=on", str(out), "1M")
    return out


def vmdk_with_flat_extent(directory: Path, extent: str = "/etc/passwd") -> Path:
    """A VMDK descriptor (text) whose flat extent is a host file."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "descriptor.vmdk"
    out.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        f'RW 2 FLAT "{extent}" 0\nddb.virtualHWVersion = "4"\n'
    )
    return out


_LUKS_TRIES = 15


@functools.cache
def _encrypted_qcow2_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "encrypted.qcow2"
        # qemu times its key derivation with CPU-usage samples and gives up now and then ("Unable to get
        # accurate CPU usage": its thread's CPU clock moved 0 ms over one sample), more often on a loaded machine
        # (a CI run beside a benchmark failed 5 tries in a row): qemu's flake, not ours, so try again, spread out.
        for attempt in range(1, _LUKS_TRIES + 1):
            try:
                qemu_img("create", "-q", "--object", "secret,id=s0,data=not-a-secret", "-f", "qcow2",
                         "-o", "encrypt.format=luks,encrypt.key-secret=s0", str(out), "1M")
                return out.read_bytes()
            except AssertionError as exc:
                if "accurate CPU usage" not in str(exc) or attempt == _LUKS_TRIES:
                    raise
                out.unlink(missing_ok=True)
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")


def encrypted_qcow2(directory: Path) -> Path:
    """A LUKS-encrypted qcow2; made once per process (key derivation takes seconds) and copied."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "encrypted.qcow2"
    out.write_bytes(_encrypted_qcow2_bytes())
    return out


def qcow2_with_unaligned_cluster(qcow2: bytes) -> bytes:
    """``qcow2`` with its first data cluster pointer off a cluster boundary: ``qemu-img info`` still reads the image,
    every read of the guest data (a conversion) fails with an I/O error. Raises ValueError if the first guest cluster
    is not allocated."""
    corrupt = bytearray(qcow2)
    l1_offset = int.from_bytes(corrupt[40:48], "big")
    l2_offset = int.from_bytes(corrupt[l1_offset : l1_offset + 8], "big") & 0x00FFFFFFFFFFFE00
    entry = int.from_bytes(corrupt[l2_offset : l2_offset + 8], "big")
    if not l2_offset or not entry:
        raise ValueError("the first guest cluster of this qcow2 is not allocated")
    flags = entry & 0xFF00000000000000  # keep the "copied" flag, move the offset off its alignment
    corrupt[l2_offset : l2_offset + 8] = (flags | 0x12345).to_bytes(8, "big")
    return bytes(corrupt)
