"""Feeds: telling the rest of the back office what happened, at least once and in order per shop.

- :mod:`.subscriptions`: who wants which events (webhook URLs, event types, signing secrets).
- :mod:`.messages`: one event or notice as it is sent: its stable id and its body.
- :mod:`.notices`: the notices derived from events and the clock (``DepositShort``, ...).
- :mod:`.outbox`: the relay's bookkeeping in the store: positions, deliveries, deadlines.
- :mod:`.signing` and :mod:`.sender`: Standard Webhooks signatures; HTTP delivery with backoff.
- :mod:`.bus` and :mod:`.nats_bus`: the message-bus interface and its NATS JetStream publisher.
- :mod:`.relay`: the worker that reads the store's log in commit order and feeds both.
- :mod:`.commands`: ``deposit-ledger webhooks ...`` and ``deposit-ledger relay``.
"""
