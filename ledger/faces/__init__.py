"""The ledger's faces beyond the command line: the HTTP service."""
