"""The building blocks every settings model shares: strict (unknown keys refused, frozen, no NaN
or infinity) and the constrained number types that YAML's loose booleans cannot sneak into.

Kept apart from leafbench.config so that settings defined elsewhere (the testbed's) use the
same rules without importing the whole experiment schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _no_bool(value: Any) -> Any:
    """YAML reads `yes`/`true` as booleans, which pydantic would quietly turn into 1."""
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    return value


Unit = Annotated[float, Field(ge=0.0, le=1.0), BeforeValidator(_no_bool)]
PositiveInt = Annotated[int, Field(gt=0), BeforeValidator(_no_bool)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
