"""Which modules a real ``imagesync`` command imports: the CLI run in a fresh interpreter that reports, as it exits,
every module it loaded (``sys.modules``). Nothing is replaced; the report is written after the command is done."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

# Run as `python -c`: registers the report first, so it is written however the command exits (sys.exit included).
_REPORTING = textwrap.dedent("""
    import atexit, json, sys
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
    from imagesync.cli.main import main
    main(sys.argv[1:])
""")


@dataclass(frozen=True)
class Imported:
    """The exit code and output of one command, and every module it had imported when it exited."""

    returncode: int
    stdout: str
    stderr: str
    modules: frozenset[str]

    def packages(self) -> set[str]:
        """The top-level packages among the modules."""
        return {name.partition(".")[0] for name in self.modules}


def imported_by(*args: str, report: Path, timeout: float = 120) -> Imported:
    """Run ``imagesync ARGS...`` with this interpreter; ``report`` is the scratch file the module list goes to."""
    done = subprocess.run([sys.executable, "-c", _REPORTING, str(report), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    modules = frozenset(json.loads(report.read_text())) if report.exists() else frozenset()
    return Imported(done.returncode, done.stdout, done.stderr, modules)
