"""Tools that work on a whole store: reconciliation with the payment channels' bills."""
