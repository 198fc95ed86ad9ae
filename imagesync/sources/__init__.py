"""Where images come from: signed HEPiX image lists and OCI registries."""
