"""Reproducible measurements of the ledger, each beside the bare storage floor."""
