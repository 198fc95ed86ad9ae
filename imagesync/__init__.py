"""imagesync: keep an OpenStack image catalogue in step with signed HEPiX image lists."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml is the one place the version is written; `imagesync --version` reads it the same way.
    __version__ = version("imagesync")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
