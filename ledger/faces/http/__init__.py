"""The ledger as an HTTP service: ``deposit-ledger serve`` (see docs/service.md)."""

from ledger.faces.http.app import create_app

__all__ = ["create_app"]
