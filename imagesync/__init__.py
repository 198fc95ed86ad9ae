"""imagesync: keep an OpenStack image catalogue in step with signed HEPiX image lists."""

__version__ = "0.1.0"
