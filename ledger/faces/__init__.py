"""The ledger's faces beyond the command line: the HTTP service, the feeds (webhooks, bus relay)."""
