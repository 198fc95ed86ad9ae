"""Run as ``python -m tests.support.bulk_sync ROOT COUNT``: one in-process sync of COUNT tiny images from the demo
world into a directory target, in a process of its own so that its peak RSS is the sync's alone. Prints one JSON
line: the exit code, how many actions were done, the seconds the sync took and the peak RSS in KiB."""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from pathlib import Path

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, build
from imagesync.run.pipeline import sync


def tiny_images(count: int) -> list[DemoImage]:
    """``count`` distinct raw disks of 4 KiB of binary data each."""
    return [DemoImage(identifier=f"bulk-{i:05d}", version="1", title=f"Bulk {i}",
                      data=hashlib.sha512(f"bulk-{i}".encode()).digest() * 64) for i in range(count)]


def main(root: Path, count: int) -> dict[str, object]:
    with build(root) as world:
        world.publish(tiny_images(count))
        path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(root / "archive")}}})
        started = time.monotonic()
        result = sync(config.load(path), dry_run=False)
        seconds = time.monotonic() - started
    return {"exit_code": result.exit_code, "done": sum(1 for r in result.results if r.status == "done"),
            "seconds": round(seconds, 1), "peak_kib": peak_kib()}


def peak_kib() -> int:
    """This process's own peak RSS. Not ``ru_maxrss``: the kernel carries that over from the parent through fork
    and exec, so a child of a big pytest worker reported the worker's peak (258 MiB in CI for a 93 MiB sync);
    ``VmHWM`` belongs to the address space that exec made new."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
