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
_WORD = struct.Struct("<q")
NOT_SERVING = -1  # in a worker's count of connections: starting, or gone


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
    """Shared memory (a memfd) the main process and its workers map: the spans the main process's queue holds,
    which workers read to refuse requests at the door without asking (the main process still refuses what does
    not fit when the records arrive), and each worker's open OTLP/HTTP connections, which workers read to share
    the connections evenly (``collector.workers.balance``; ``NOT_SERVING``: a worker that is starting or gone)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._memory = mmap.mmap(fd, 0)  # the whole file: the main process sized it for its workers
        self.workers = len(self._memory) // _WORD.size - 1

    @classmethod
    def create(cls, workers: int) -> Door:
        fd = os.memfd_create("genai-collector-door")  # close-on-exec: only pass_fds hands it down
        os.ftruncate(fd, _WORD.size * (1 + workers))
        door = cls(fd)
        for index in range(workers):
            door.set_connections(index, NOT_SERVING)
        return door

    def publish(self, held_spans: int) -> None:
        _WORD.pack_into(self._memory, 0, held_spans)

    @property
    def held_spans(self) -> int:
        held: int = _WORD.unpack_from(self._memory, 0)[0]
        return held

    def set_connections(self, index: int, count: int) -> None:
        _WORD.pack_into(self._memory, _WORD.size * (1 + index), count)

    def connections(self) -> list[int]:
        """Each worker's open OTLP/HTTP connections, by index."""
        return [count for (count,) in _WORD.iter_unpack(self._memory[_WORD.size :])]

    def close(self) -> None:
        self._memory.close()
        os.close(self.fd)
