"""The local state: SQLite store, schema migrations, records and the lifecycle of an image in a target."""
