"""PostgreSQL's spelling of the engine-neutral statements (``storage/sql.py``): ``%(name)s`` parameters, ``jsonb``
operators, text arrays, and casts where PostgreSQL's ``sum`` of ``bigint`` is ``numeric``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from collector.storage.sql import Dialect

# A ``:name`` parameter; not the casts' ``::type``.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _json_values(value: Any) -> list[str]:
    """The stored JSON values a filter value matches, as SQLite's ``->>`` compares them: there booleans are
    the integers 0 and 1, so ``true`` and ``1`` match each other."""
    if isinstance(value, bool):
        return [json.dumps(value), json.dumps(int(value))]
    if isinstance(value, int) and value in (0, 1):
        return [json.dumps(value), json.dumps(bool(value))]
    return [json.dumps(value)]


class PostgresDialect(Dialect):
    null_text = "NULL::text"

    def statement(self, sql: str) -> str:
        return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))

    def flag(self, column: str, value: bool = True) -> str:
        return f"{column} <> 0" if value else f"{column} = 0"

    def contains(self, array: str, parameter: str) -> str:
        return f"{array} @> jsonb_build_array({parameter}::text)"

    def in_list(self, column: str, parameter: str) -> str:
        return f"{column} = ANY({parameter}::text[])"

    def list_value(self, values: Iterable[Any]) -> list[Any]:
        return list(values)

    def names(self, stored: Any) -> list[str]:
        return list(stored)  # jsonb arrives parsed

    def attribute_equals(self, column: str, index: int, key: str, value: Any) -> tuple[str, dict[str, Any]]:
        return f"{column} -> :attr_key{index} = ANY(:attr_value{index}::jsonb[])", {
            f"attr_key{index}": key,
            f"attr_value{index}": _json_values(value),
        }

    def int_sum(self, expression: str) -> str:
        return f"coalesce(sum({expression}), 0)::bigint"

    def grouped(self, sql: str) -> str:
        # SQLite's order: the NULL group first, names byte by byte
        return f'SELECT * FROM ({sql} GROUP BY 1, 2) figures ORDER BY grp COLLATE "C" ASC NULLS FIRST, bucket'


POSTGRES = PostgresDialect()
