"""``deposit-ledger webhooks ...`` and ``relay`` as people type them: tables, JSON, one-line errors, exit codes."""

from __future__ import annotations

from tests.cli.conftest import Run
from tests.faces.feeds.receiver import SECRET, running_receiver


def test_subscribe_relay_and_look_at_the_deliveries(cli: Run) -> None:
    with running_receiver() as receiver:
        added = cli(f"webhooks add {receiver.url} --events Opened,Paid --secret {SECRET} --json")
        assert added.code == 0, added.err
        hook = added.json()
        assert hook["events"] == ["Opened", "Paid"] and hook["duplicate"] is False
        assert cli(f"webhooks add {receiver.url} --events Opened,Paid --secret {SECRET}").out.startswith("duplicate")
        assert hook["id"] in cli("webhooks list").out

        cli("open tea-house --currency CNY --required 1000 --site CN")
        cli("pay tea-house 100 --channel alipay --ref t-1")
        relayed = cli("relay")
        assert relayed.code == 0 and relayed.out.strip() == "queued 2 messages, delivered 2"
        assert [seen.body["type"] for seen in receiver.successes()] == ["Opened", "Paid"]

        deliveries = cli("webhooks deliveries --json").json()
        assert [entry["status"] for entry in deliveries] == ["delivered", "delivered"]
        assert cli("webhooks deliveries --failed --json").json() == []
        retried = cli(f"webhooks retry {deliveries[0]['id']}")
        assert retried.code == 0 and retried.out.startswith("delivered")
        assert len(receiver.successes()) == 3
        assert receiver.successes()[-1].webhook_id == deliveries[0]["webhook_id"]

        assert cli(f"webhooks remove {hook['id']}").code == 0
        assert cli("webhooks list --json").json() == []


def test_refusals_and_malformed_input_are_one_line(cli: Run) -> None:
    other = "whsec_" + "QUJD" * 8
    assert cli(f"webhooks add http://127.0.0.1:9/x --events Paid --secret {SECRET}").code == 0
    conflict = cli(f"webhooks add http://127.0.0.1:9/x --events Paid --secret {other}")
    assert conflict.code == 1 and len(conflict.err_lines) == 1 and "remove it first" in conflict.err
    for line in (
        f"webhooks add http://127.0.0.1:9/y --events Nope --secret {SECRET}",
        "webhooks add http://127.0.0.1:9/y --events Paid --secret plain",
        f"webhooks add nowhere --events Paid --secret {SECRET}",
        "relay --nats nats://127.0.0.1:4222",
    ):
        outcome = cli(line)
        assert outcome.code == 2 and len(outcome.err_lines) == 1, (line, outcome)
    for line in ("webhooks remove wh_000000000000", "webhooks retry dlv_nothing"):
        outcome = cli(line)
        assert outcome.code == 1 and len(outcome.err_lines) == 1, (line, outcome)
