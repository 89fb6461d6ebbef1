"""Read models derived from the deposit events: balances and the audit trail."""
