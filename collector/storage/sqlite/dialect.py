"""SQLite's spelling of the engine-neutral statements (``storage/sql.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from collector.storage.sql import Dialect


class SqliteDialect(Dialect):
    null_text = "NULL"

    def flag(self, column: str, value: bool = True) -> str:
        return column if value else f"NOT {column}"

    def contains(self, array: str, parameter: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({array}) WHERE value = {parameter})"

    def in_list(self, column: str, parameter: str) -> str:
        return f"{column} IN (SELECT value FROM json_each({parameter}))"

    def list_value(self, values: Iterable[Any]) -> str:
        return json.dumps(list(values))

    def names(self, stored: Any) -> list[str]:
        return list(json.loads(stored))

    def attribute_equals(self, column: str, index: int, key: str, value: Any) -> tuple[str, dict[str, Any]]:
        path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'  # $."gen_ai.request.model"
        return f"{column} ->> :attr_key{index} = :attr_value{index}", {
            f"attr_key{index}": path,
            f"attr_value{index}": int(value) if isinstance(value, bool) else value,  # as ->> gives booleans
        }

    def int_sum(self, expression: str) -> str:
        return f"coalesce(sum({expression}), 0)"

    def grouped(self, sql: str) -> str:
        return f"{sql} GROUP BY bucket, grp ORDER BY grp, bucket"


SQLITE = SqliteDialect()
