"""Whatever a client sends, the API answers it (a problem document at worst), never with a 500.

Schemathesis generates requests from the service's own ``/openapi.json``, valid and invalid
(negative mode), for every operation; a bounded number of examples each keeps it in seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from starlette.testclient import TestClient

from ledger.faces.http import create_app

EXAMPLES_PER_OPERATION = 12


@pytest.mark.slow
@pytest.mark.sqlite_only("the HTTP layer's answers, not the store, are under test")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_request_gets_a_500(store_url: str) -> None:
    app = create_app(store_url)
    schema = schemathesis.openapi.from_dict(app.openapi())
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = app.state.service.keys
        _, secret = keys.create("fuzzer", "admin")
        client.post(
            "/v1/shops",
            json={"shop_id": "S1", "currency": "CNY", "required": "100.00"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 20
        strategy = st.one_of(
            *(
                operation.as_strategy(generation_mode=mode)
                for operation in operations
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            )
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION * len(operations),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=strategy)
        def answered(case: Any) -> None:
            sent = case.as_transport_kwargs(base_url="http://testserver")
            headers = {**(sent.pop("headers", None) or {}), "Authorization": f"Bearer {secret}"}
            response = client.request(**sent, headers=headers)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", response.text

        answered()
