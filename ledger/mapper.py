"""Turns deposit events into stored bytes and back, keeping ``class_version`` upcasting.

Stored state is the event's JSON without the two fields the store keeps in
columns of their own (``originator_id``, ``originator_version``). An event class
with ``class_version`` above 1 writes that number into its JSON; reading an
older record runs the class's ``upcast_vN_vM`` static methods in turn before
pydantic validates the result, as the library's own mapper does.
"""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from pydantic import BaseModel, ValidationError

from domain import STORED_TYPES

_IN_COLUMNS = {"originator_id", "originator_version"}


class DepositMapper(Mapper[UUID]):
    """Maps the ledger's pydantic events (and snapshots) to stored events by stable topic."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """Encode one event as compact UTF-8 JSON under its stable topic."""
        model = cast(BaseModel, domain_event)
        cls = type(model)
        state = model.model_dump(mode="json", exclude=_IN_COLUMNS)
        class_version: int = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored_state = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=cls.TOPIC,  # type: ignore[attr-defined]
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """Decode a stored event, upcasting an older class version first."""
        try:
            cls = STORED_TYPES[stored_event.topic]
        except KeyError:
            raise MapperDeserialisationError(f"unknown event topic {stored_event.topic!r}") from None
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            state: dict[str, Any] = json.loads(stored_state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"cannot decode {stored_event.topic} version {stored_event.originator_version} "
                f"of {stored_event.originator_id}: {error}"
            ) from error
        from_version = state.pop("class_version", 1)
        class_version: int = getattr(cls, "class_version", 1)
        where = f"{stored_event.topic} version {stored_event.originator_version} of {stored_event.originator_id}"
        if from_version > class_version:
            raise MapperDeserialisationError(
                f"{where} was written as class version {from_version}, newer than this code ({class_version})"
            )
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        try:
            return cast(DomainEventProtocol[UUID], cls.model_validate(state))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise MapperDeserialisationError(f"{where} does not hold a valid event: {field}: {first['msg']}") from None
