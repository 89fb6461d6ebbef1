"""Tools that work on a whole store: journal import and export, audit (verify, checkpoint, export), reconciliation."""
