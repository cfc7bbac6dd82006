"""The stores: memory, SQLite, Redis, PostgreSQL, tiered, each with its I/O-free SQL or
key module beside it, and `open_store(url)`. Uses `_core` only, and never the engine: a
store only moves records."""
