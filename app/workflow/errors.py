"""Refusals: why a move was not made, in words the user's language can render."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class WorkflowError(Exception):
    """A refused move. `message` is a lazy translated string; nothing was changed."""

    status_code = 409

    def __init__(self, message: Any, status_code: int | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class InputRefused(WorkflowError):
    """Input that cannot be read or stored as sent (control characters, text longer than its
    column, a value its field cannot take). The whole request is refused with this 400, which
    names the field, even where other refusals are only flashed: nothing was changed."""

    status_code = 400


@dataclass
class Refusal:
    record_id: int
    label: str
    reason: Any


@dataclass
class BatchResult:
    """What a batch did: the ids moved and, for each refused row, why."""

    done: list[int] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def done_count(self) -> int:
        return len(self.done)

    def refuse(self, record_id: int, label: str, reason: Any) -> None:
        self.refused.append(Refusal(record_id, label, reason))
