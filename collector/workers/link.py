"""The channel between the main process and one ingest worker: a Unix socket pair carrying length-prefixed
pickles (protocol 5), read straight into a buffer and unpickled from it, and the door state the main process
publishes in shared memory.

Messages are tuples whose first item says what they are:

- worker to main: ``("ready",)``, ``("submit", request_id, records, summaries)`` (``submission``: the rows of
  ``Records.without_spans``, not the spans, and the spans' summaries as plain tuples), ``("metrics", token,
  shipment)``;
- main to worker: ``("start", settings, index)``, ``("done", request_id, error)`` (error None: committed),
  ``("flush", token)`` (ship the counters now), ``("stop", seconds)`` (drain within ``seconds`` and exit).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import pickle
import socket
import struct
from collections import deque
from dataclasses import replace
from functools import partial
from typing import Any

from collector.model import Records, SpanSummary

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
_WORD = struct.Struct("<q")
NOT_SERVING = -1  # in a worker's count of connections: starting, or gone
_CHUNK = 1 << 16  # the receiving buffer's size, or a frame's if it is larger
_KEPT = 1 << 22  # a buffer grown past this for one large frame is not kept for the next

Message = tuple[Any, ...]


# A summary from its values, in C: a ``SpanSummary`` pickled as itself costs a Python call to pickle it
# (``__getnewargs__``) and another to unpickle it (the named tuple's ``__new__``), per span.
_summary = partial(tuple.__new__, SpanSummary)


def submission(request_id: int, records: Records) -> Message:
    """What a worker sends of a request's records: ``Records.without_spans``, its summaries as plain tuples."""
    shipped = records.without_spans()
    summaries = shipped.summaries
    if summaries is None:
        return ("submit", request_id, shipped, None)
    return ("submit", request_id, replace(shipped, summaries=None), list(map(tuple, summaries)))


def submitted(message: Message) -> Records:
    """The records of a ``submission``, summaries and all."""
    records: Records = message[2]
    if message[3] is not None:
        records.summaries = list(map(_summary, message[3]))
    return records


class _Frames(asyncio.BufferedProtocol):
    """The channel's socket on the event loop. Received bytes land straight in a buffer (``recv_into``) and each
    frame is unpickled from a view of it: asyncio's ``StreamReader`` copied every byte twice more on the way (into
    its buffer, then out into a bytes object per frame), and a request's frame is ~3 KB per span of rows, received
    by the main process, whose writer thread is the collector's one serial stage. Messages wait in a queue for
    ``Link.receive``; for sending, the transport's flow control as ``StreamWriter.drain`` reads it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.messages: deque[Message] = deque()
        self.closed = False  # the other end is gone (or sent what cannot be read): nothing more arrives
        self._buffer = bytearray(_CHUNK)
        self._start = 0  # where the first frame not yet read begins
        self._end = 0  # where the bytes received end
        self._arrived: asyncio.Future[None] | None = None
        self._paused = False
        self._resumed: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        buffer, start, end = self._buffer, self._start, self._end
        needed = _LENGTH.size  # bytes of the next frame, from ``start``, before it can be read
        with memoryview(buffer) as view:
            while end - start >= _LENGTH.size:
                needed = _LENGTH.size + _LENGTH.unpack_from(buffer, start)[0]
                if end - start < needed:
                    break
                try:
                    self.messages.append(pickle.loads(view[start + _LENGTH.size : start + needed]))
                except Exception:  # a frame that cannot be read: the other end is broken, and so is the channel
                    log.exception("unreadable message on an ingest worker's channel; closing it")
                    self._lost()
                    if self.transport is not None:
                        self.transport.close()
                    return
                start += needed
                needed = _LENGTH.size
        if start == end:  # everything read: the next frame starts at the front (a large buffer only if small)
            start = end = 0
            if len(buffer) > _KEPT:
                self._buffer = bytearray(_CHUNK)
        elif start + needed > len(buffer):  # the frame begun does not fit behind it: a buffer that holds it
            # (a new one: the transport still holds a view of this one, which cannot be resized meanwhile)
            self._buffer = bytearray(max(_CHUNK, needed))
            self._buffer[: end - start] = buffer[start:end]
            start, end = 0, end - start
        self._start, self._end = start, end
        self._wake()

    def eof_received(self) -> bool:
        self._lost()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        self._paused = False
        self._release_writers()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._release_writers()

    async def arrived(self) -> None:
        """Wait until a message arrives or the channel closes."""
        self._arrived = asyncio.get_running_loop().create_future()
        try:
            await self._arrived
        finally:
            self._arrived = None

    async def drained(self) -> None:
        """Wait while the transport holds more than its high-water mark of unsent bytes (``pause_writing``)."""
        if self._paused:
            resumed = asyncio.get_running_loop().create_future()
            self._resumed.append(resumed)
            await resumed

    def _lost(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def _release_writers(self) -> None:
        resumed, self._resumed = self._resumed, []
        for future in resumed:
            if not future.done():
                future.set_result(None)


class Link:
    """One end of the channel on an event loop. ``receive`` returns None once the other end is gone."""

    def __init__(self, transport: asyncio.Transport, frames: _Frames) -> None:
        self._transport = transport
        self._frames = frames

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        transport, frames = await asyncio.get_running_loop().create_unix_connection(_Frames, sock=sock)
        return cls(transport, frames)

    def send(self, message: Message) -> None:
        """Queue ``message`` for sending; dropped once the other end is gone (it waits for nothing more)."""
        if not self._transport.is_closing():
            payload = pickle.dumps(message, protocol=5)
            # Two writes rather than the length and the payload joined: joining copies the whole payload again.
            self._transport.write(_LENGTH.pack(len(payload)))
            self._transport.write(payload)

    async def flush(self) -> None:
        """Wait until what was queued is handed to the socket (a process may exit then without losing it)."""
        transport = self._transport
        if transport.is_closing():
            return
        transport.set_write_buffer_limits(high=0)  # paused until the transport's buffer is empty
        try:
            await self._frames.drained()
        finally:
            transport.set_write_buffer_limits()

    async def receive(self) -> Message | None:
        frames = self._frames
        while not frames.messages:
            if frames.closed:
                return None
            await frames.arrived()
        return frames.messages.popleft()

    def close(self) -> None:
        self._transport.close()


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
