"""Where images come from: one package per kind of source (HEPiX image lists, OCI registries)."""
