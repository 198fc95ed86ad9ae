"""``python -m imagesync``."""

from imagesync.cli import main

main()
