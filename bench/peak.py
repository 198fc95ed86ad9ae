"""Run as ``python bench/peak.py OUT.json IMAGESYNC-ARGS...``: the `imagesync` command line, in this process, then its
own peak RSS written to OUT.json when it exits.

A wrapper rather than ``ru_maxrss`` of the child: the kernel carries that over from the parent through fork and exec
(see tests/support/bulk_sync.py), so a benchmark holding a few hundred MiB of test data would report its own peak.
``VmHWM`` belongs to the address space exec made new. Only the standard library is imported before imagesync, so
the figure is the command's own (plus an interpreter that `imagesync` needs anyway).
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
from pathlib import Path


def vmhwm_kib() -> int:
    """This process's peak resident set size in KiB. Raises RuntimeError where /proc has no VmHWM."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _write(out: Path) -> None:
    out.write_text(json.dumps({"vmhwm_kib": vmhwm_kib()}))


def main() -> None:
    out = Path(sys.argv[1])
    atexit.register(_write, out)  # click ends with sys.exit: atexit still runs
    sys.argv = ["imagesync", *sys.argv[2:]]
    # bench/ is sys.path[0]: its modules (glance, sync, ...) must not shadow anything imagesync imports.
    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    runpy.run_module("imagesync", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
