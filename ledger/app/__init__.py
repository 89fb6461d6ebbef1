"""The application's edges: the ledger's settings, and the parsers that turn text into domain values."""
