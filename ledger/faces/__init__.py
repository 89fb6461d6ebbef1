"""The ledger's faces: the command line, its reports and demo, output files, the HTTP service, the feeds."""
