"""How running work reports progress and learns it was cancelled, without knowing who listens.

The training loop and the job runner call `ctx.emit(event)` and `ctx.check()`; the CLI prints the
events, the worker writes them to the job table, tests collect them.
"""
from __future__ import annotations


class Cancelled(Exception):
    """The user cancelled the job; raised between steps."""


class DivergenceError(RuntimeError):
    """A loss became NaN or infinite."""


class JobContext:
    """Default context: no listener, never cancelled. Subclasses override emit / cancelled."""

    def emit(self, event: dict) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled by the user")


class CollectingContext(JobContext):
    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)
