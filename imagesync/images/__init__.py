"""Image bytes: download (streamed, resumable, checksummed, cached), format detection and conversion."""
