"""Persistence: store URLs and SQL dialects, the recorders, the mapper, the hash chain and its keys, trade numbers."""
