"""HTTP plumbing shared by sources and downloads: TLS trust, the address guard, failure classification."""
