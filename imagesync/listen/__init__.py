"""imagesync listen: syncs started by change events (registry notifications, Harbor webhooks, POST /v1/sync)."""
