"""The local demo: an ephemeral PKI, a signed list served over HTTPS, and a real sync."""
