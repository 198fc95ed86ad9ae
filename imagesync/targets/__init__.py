"""Targets. Drivers are entry points in the group ``imagesync.drivers``; see :mod:`imagesync.targets.base`."""
