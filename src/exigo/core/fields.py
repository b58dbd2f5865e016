"""The number types of params.yaml and of every registry entry's settings: strict, finite."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def _not_a_bool(value: Any) -> Any:
    # pydantic takes true as 1 where a number is expected; in params.yaml it is a mistake
    if isinstance(value, bool):
        raise PydanticCustomError("not_a_number", "Input should be a number, not true/false")
    return value


Int = Annotated[int, BeforeValidator(_not_a_bool)]  # a whole number; true/false refused
Float = Annotated[float, BeforeValidator(_not_a_bool), Field(allow_inf_nan=False)]  # finite
PositiveInt = Annotated[Int, Field(ge=1)]
