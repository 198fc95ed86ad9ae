"""OCI registries (Harbor or any distribution registry) as a source of VM images: client, cosign, artifacts."""
