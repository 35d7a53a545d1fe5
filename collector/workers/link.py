"""The channel between the main process and one ingest worker: a Unix socket pair carrying length-prefixed
pickles (protocol 5), and the door state the main process publishes in shared memory.

Messages are tuples whose first item says what they are:

- worker to main: ``("ready",)``, ``("submit", request_id, records)`` (``Records.without_spans``: the rows
  and the spans' summaries, not the spans), ``("metrics", token, shipment)``;
- main to worker: ``("start", settings, index)``, ``("done", request_id, error)`` (error None: committed),
  ``("flush", token)`` (ship the counters now), ``("stop", seconds)`` (drain within ``seconds`` and exit).
"""

from __future__ import annotations

import asyncio
import mmap
import os
import pickle
import socket
import struct
from typing import Any

_LENGTH = struct.Struct("!I")
_DOOR = struct.Struct("<q")


def frame(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=5)
    return _LENGTH.pack(len(payload)) + payload


class Link:
    """One end of the channel on an event loop. ``receive`` returns None once the other end is gone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue ``message`` for sending; dropped once the other end is gone (it waits for nothing more)."""
        if not self._writer.is_closing():
            self._writer.write(frame(message))

    async def flush(self) -> None:
        """Wait until what was queued is handed to the socket."""
        if not self._writer.is_closing():
            await self._writer.drain()

    async def receive(self) -> tuple[Any, ...] | None:
        try:
            length = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))[0]
            message: tuple[Any, ...] = pickle.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return message

    def close(self) -> None:
        self._writer.close()


class Door:
    """The spans the main process's queue holds, in shared memory: workers read it to refuse requests at the
    door without asking (the main process still refuses what does not fit when the records arrive)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._memory = mmap.mmap(fd, _DOOR.size)

    @classmethod
    def create(cls) -> Door:
        fd = os.memfd_create("genai-collector-door")  # close-on-exec: only pass_fds hands it down
        os.ftruncate(fd, _DOOR.size)
        return cls(fd)

    def publish(self, held_spans: int) -> None:
        _DOOR.pack_into(self._memory, 0, held_spans)

    @property
    def held_spans(self) -> int:
        held: int = _DOOR.unpack_from(self._memory, 0)[0]
        return held

    def close(self) -> None:
        self._memory.close()
        os.close(self.fd)
