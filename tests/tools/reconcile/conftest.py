"""The command-line fixtures (``run``, ``cli``) for the reconciliation tests."""

from tests.cli.conftest import cli, isolated_environment, run

__all__ = ["cli", "isolated_environment", "run"]
