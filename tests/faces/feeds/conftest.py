"""The command-line and child-process fixtures, for the feed commands' tests."""

from tests.cli.conftest import cli, isolated_environment, run
from tests.ledger.conftest import children

__all__ = ["children", "cli", "isolated_environment", "run"]
