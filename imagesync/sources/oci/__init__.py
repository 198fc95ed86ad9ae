"""OCI registries as a source of VM images: the registry client and cosign signature verification."""
