"""``python -m imagesync``."""

from imagesync.cli.main import main

main()
