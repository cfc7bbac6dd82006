"""The core layer: standard library only. Errors, the data model, codecs, the hot cache,
the store contract, the commit queue and the engine. Imports nothing from the layers
above it (`_stores`, `_runtime`, the public packages)."""
