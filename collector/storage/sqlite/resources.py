"""Resources stored once: a resource's attributes with the instrumentation scope that reported under it.

Spans, events and evaluations hold a ``resource_id``; the row it names is keyed by a hash of its
content, so a resource sent with every request (and every span of it) is stored a single time.
"""

from __future__ import annotations

import hashlib
import json
from typing import cast

import apsw

FIND = "SELECT id FROM resources WHERE hash = ?"
ADD = "INSERT INTO resources (hash, resource_attributes, scope_name, scope_version) VALUES (?, ?, ?, ?) RETURNING id"


def resource_key(resource_attributes: str, scope_name: str | None, scope_version: str | None) -> bytes:
    """The 16-byte content hash of a resource row: its attributes (as stored JSON text) and the scope.

    Also registered as the SQL function ``resource_key`` for the migration that moved resources out of
    ``spans``, so that rows it converted and rows written since share their keys.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([scope_name, scope_version]).encode())
    digest.update(b"\n")
    digest.update(resource_attributes.encode())
    return digest.digest()


def register_functions(connection: apsw.Connection) -> None:
    # apsw types a scalar function as taking any SQLite values; the migration calls it with the three columns
    scalar = cast("apsw.ScalarProtocol", resource_key)
    connection.create_scalar_function("resource_key", scalar, 3, deterministic=True)


def resource_id(
    connection: apsw.Connection, resource_attributes: str, scope_name: str | None, scope_version: str | None
) -> int:
    """The id of the resource row with this content, added if it is new; call inside the write transaction."""
    key = resource_key(resource_attributes, scope_name, scope_version)
    for (found,) in connection.execute(FIND, (key,)):
        return int(found)
    for (added,) in connection.execute(ADD, (key, resource_attributes, scope_name, scope_version)):
        return int(added)
    raise AssertionError("INSERT ... RETURNING returned no row")
