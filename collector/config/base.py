"""What every section is made of: the frozen ``Section`` model, durations (``250ms``, ``5m``, ``7d``), and the
fields whose defaults are parsed (``parsed``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``250ms``, ``10s``, ``5m``, ``1h``, ``7d`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 10s or 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write it as 250ms, 10s, 5m, 1h or 7d")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def parsed(default: str, description: str) -> Any:
    """A field whose default is written as a user would write it (``"30s"``, ``"20MiB"``, ``"127.0.0.1:4317"``)
    and parsed as a given value is: ``validate_default`` tells pydantic's mypy plugin so (the models validate
    their defaults anyway)."""
    return Field(default, validate_default=True, description=description)


class Section(BaseModel):
    """A nested group of options (a mapping in the file; GENAI_COLLECTOR_<SECTION>__<OPTION> in the environment)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
