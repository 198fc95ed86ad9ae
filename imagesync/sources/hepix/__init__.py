"""The HEPiX image list source: fetch, unwrap, verify (S/MIME, GPG), parse and check signed lists."""
