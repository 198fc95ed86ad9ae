"""`imagesync --version` and shell completion, as an operator runs them (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

import imagesync


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagesync", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def test_version_is_the_package_metadata() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"imagesync {version('imagesync')}\n", "")
    assert imagesync.__version__ == version("imagesync")  # also the User-Agent of every request


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nosort -F _imagesync_completion imagesync"),
                                               ("zsh", "compdef _imagesync_completion imagesync"),
                                               ("fish", "complete --no-files --command imagesync")])
def test_completion_script_for_each_shell(shell: str, marker: str) -> None:
    result = run(env={"_IMAGESYNC_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_completion_answers_with_the_commands() -> None:
    result = run(env={"_IMAGESYNC_COMPLETE": "bash_complete", "COMP_WORDS": "imagesync pl", "COMP_CWORD": "1"})
    assert result.returncode == 0 and result.stdout.split() == ["plain,plan"]
