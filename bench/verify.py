"""Time to verify a 1 MB signed list: imagesync in-process vs an `openssl cms -verify` subprocess per list.

Prints the ratio openssl/imagesync measured in this same invocation (target: >= 5x). Both sides do the full job:
parse the S/MIME message, check the signature, build and validate the chain against the CA directory with CRLs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.sources.hepix import dn, smime
from imagesync.sources.hepix.castore import CAStore

TARGET = 5.0


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_list(signer: pki.Credential, size: int) -> bytes:
    now = datetime.now(UTC)
    image = {"hv:image": {"dc:identifier": "x", "hv:uri": "https://h/x", "hv:version": "1", "hv:size": "1",
                          "sl:checksum:sha512": "0" * 128, "dc:description": "y" * 900}}
    count = size // 1100
    body = {"hv:imagelist": {
        "dc:identifier": "bench", "dc:date:created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dc:date:expires": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hv:endorser": {"hv:x509": {"hv:dn": dn.render(signer.cert.subject), "hv:ca": dn.render(signer.cert.issuer)}},
        "hv:images": [image] * count}}
    return json.dumps(body, indent=1).encode()


def _ours(blob: bytes, store: CAStore) -> None:
    smime.verify(blob, store, now=datetime.now(UTC))


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = pki.make_ca(_name("Bench CA"))
        signer = pki.make_leaf(ca, _name("bench signer"))
        ca_dir = pki.write_ca_dir(root / "certs", [ca], [pki.make_crl(ca, [])])
        cert, key = signer.write(root, "signer")
        content = make_list(signer, args.size)
        (root / "list.json").write_bytes(content)
        results = {}
        for form, extra in (("detached", []), ("opaque", ["-nodetach"])):
            signed = root / f"{form}.smime"
            subprocess.run(["openssl", "smime", "-sign", "-in", str(root / "list.json"), "-signer", str(cert),
                            "-inkey", str(key), "-out", str(signed), *extra], check=True)
            blob = signed.read_bytes()
            store = CAStore.load(ca_dir, "require")
            ours = best(partial(_ours, blob, store), args.repeat)
            cmd = ["openssl", "cms", "-verify", "-purpose", "any", "-crl_check_all", "-CApath", str(ca_dir),
                   "-in", str(signed), "-out", str(root / "out")]
            theirs = best(partial(subprocess.run, cmd, check=True, capture_output=True), args.repeat)
            results[form] = theirs / ours
            print(f"{form:9s} size={len(blob)} imagesync={ours * 1000:.1f}ms openssl-subprocess={theirs * 1000:.1f}ms "
                  f"ratio={theirs / ours:.1f}x")
    worst = min(results.values())
    print(f"result: worst ratio {worst:.1f}x (target >= {TARGET:.0f}x): {'MET' if worst >= TARGET else 'NOT MET'}")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
