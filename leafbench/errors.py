"""The one error a user is shown for a bad definition or argument (exit status 2).

It lives apart from `config` so that core modules which check definitions against the world
(`vocabulary`) can raise it without importing the schema, and the schema can call them.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A definition is invalid. `str()` is the one message a user sees (exit status 2)."""

    def __init__(self, source: str, field: str, value: Any, accepted: str):
        self.source, self.field, self.value, self.accepted = source, field, value, accepted
        super().__init__(f"{source}: field '{field}': got {value!r}; {accepted}")
