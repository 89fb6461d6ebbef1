"""The ledger's faces: the command line's output files, the HTTP service, the feeds (webhooks, bus relay)."""
