"""``python -m ledger``: the ``deposit-ledger`` command line, without the installed entry point."""

from ledger.faces.cli import main

main()
