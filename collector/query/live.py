"""The live feed over WebSocket: settled traces, breaches as they are written, a cost tick every second.

The writer thread tells the feed what it settled (``notify_settled``, thread-safe, never blocking) and what
it committed (``observe_committed``, feeding the in-memory cost tracker); the feed reads the summaries and
the new breaches through the ``TraceReader`` on its own connections and fans them out. Each client has a
bounded queue and one sender task: the publisher never awaits a socket, drops a slow client's oldest
messages (telling it how many, and how many traces and breaches they held, with ``lagged``), and disconnects a
client that stays too far behind.

What settles within ``COALESCE_SECONDS`` is published together: the traces as ``traces`` messages and the
breaches as ``breaches`` messages of up to ``ITEMS_PER_MESSAGE`` each, so that a subscriber's cost is a few
frames a second whatever the rate. Each summary and breach is encoded once (orjson) and each message once per
distinct service filter, never once per subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson
from prometheus_client import CollectorRegistry
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from collector.model import CALL_CATEGORIES, SpanSummary
from collector.observability.metrics import LiveMetrics
from collector.query.params import decode_cursor, encode_cursor
from collector.storage.read import Breach, BreachQuery, Keyset, QueryTooBroad, ReadBusy, TraceReader, TraceSummary

log = logging.getLogger(__name__)

BREACH_CURSOR = "breaches:asc"
NS_PER_SECOND = 1_000_000_000
COALESCE_SECONDS = 0.1  # what settles this long after a first trace is published with it
ITEMS_PER_MESSAGE = 100  # traces (or breaches) in one message: bounds a message, and so a client's queue
READ_BATCH = 500  # trace ids per read of their summaries, breaches per page


def _figures() -> list[float]:
    return [0.0, 0, 0, 0, 0]  # cost, input tokens, output tokens, llm requests, priced calls


class CostTracker:
    """Spend and tokens by model, in the last minute and since the start of the UTC day, by commit time.

    Fed on the writer thread after each commit; read once a second by the feed. Nothing here touches storage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: deque[tuple[int, dict[str, list[float]]]] = deque()
        self._today: dict[str, list[float]] = {}
        self._day = self._day_of(time.time_ns())

    @staticmethod
    def _day_of(now_ns: int) -> int:
        return now_ns // (86_400 * NS_PER_SECOND)

    def seed_today(self, by_model: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for row in by_model:
                figures = self._today.setdefault(row["model"], _figures())
                figures[0] += row["cost_usd"] or 0.0
                figures[1] += row["input_tokens"]
                figures[2] += row["output_tokens"]
                figures[3] += row["llm_requests"]
                figures[4] += 1 if row["cost_usd"] is not None else 0

    def observe(
        self,
        spans: Iterable[SpanSummary],
        repeated_calls: Set[tuple[str, str]] = frozenset(),
        now_ns: int | None = None,
    ) -> None:
        """The summaries of spans just stored for the first time (a span sent again is not counted again), each
        model call once: ``repeated_calls`` are the (trace id, span id) of spans whose call another span counts."""
        now_ns = now_ns or time.time_ns()
        second = now_ns // NS_PER_SECOND
        with self._lock:
            self._roll_day(now_ns)
            if not self._seconds or self._seconds[-1][0] != second:
                self._seconds.append((second, {}))
            current = self._seconds[-1][1]
            for span in spans:
                if span.category not in CALL_CATEGORIES:
                    continue
                if repeated_calls and (span.trace_id, span.span_id) in repeated_calls:
                    continue
                model = span.response_model or span.request_model or "unknown"
                for figures in (current.setdefault(model, _figures()), self._today.setdefault(model, _figures())):
                    figures[0] += span.cost_usd or 0.0
                    figures[1] += span.input_tokens or 0
                    figures[2] += span.output_tokens or 0
                    figures[3] += span.category == "llm"
                    figures[4] += span.cost_usd is not None

    def _roll_day(self, now_ns: int) -> None:
        day = self._day_of(now_ns)
        if day != self._day:
            self._day = day
            self._today = {}

    def tick(self, now_ns: int | None = None) -> dict[str, Any]:
        now_ns = now_ns or time.time_ns()
        since = now_ns // NS_PER_SECOND - 60
        with self._lock:
            self._roll_day(now_ns)
            while self._seconds and self._seconds[0][0] <= since:
                self._seconds.popleft()
            minute: dict[str, list[float]] = {}
            for _, by_model in self._seconds:
                for model, figures in by_model.items():
                    total = minute.setdefault(model, _figures())
                    for index, value in enumerate(figures):
                        total[index] += value
            today = {model: list(figures) for model, figures in self._today.items()}
        return {
            "type": "cost_tick",
            "time_unix_nano": now_ns,
            "last_minute": _spend(minute),
            "today": _spend(today),
        }


def _spend(by_model: dict[str, list[float]]) -> dict[str, Any]:
    rows = [
        {
            "model": model,
            "cost_usd": figures[0] if figures[4] else None,
            "input_tokens": int(figures[1]),
            "output_tokens": int(figures[2]),
            "llm_requests": int(figures[3]),
        }
        for model, figures in sorted(by_model.items(), key=lambda item: -item[1][0])
    ]
    return {
        "cost_usd": sum(row["cost_usd"] or 0.0 for row in rows),
        "input_tokens": sum(row["input_tokens"] for row in rows),
        "output_tokens": sum(row["output_tokens"] for row in rows),
        "llm_requests": sum(row["llm_requests"] for row in rows),
        "by_model": rows,
    }


class Message(NamedTuple):
    """One encoded server message, and what a client that loses it loses."""

    text: str
    traces: int = 0
    breaches: int = 0


def encode(message: dict[str, Any]) -> Message:
    return Message(orjson.dumps(message).decode())


class Item(NamedTuple):
    """A trace summary or a breach, encoded once for every message that carries it."""

    service: str | None
    encoded: orjson.Fragment
    position: Keyset = (0, 0)  # a breach's place in the feed: a message's resume cursor, the replay's end


def trace_item(summary: TraceSummary) -> Item:
    return Item(summary["service_name"], orjson.Fragment(orjson.dumps(summary)))


def breach_item(breach: Breach) -> Item:
    position = (breach["computed_at_unix_nano"], breach["id"])
    return Item(breach["service_name"], orjson.Fragment(orjson.dumps(breach)), position)


def messages_of(kind: Literal["traces", "breaches"], items: Sequence[Item]) -> list[Message]:
    """``items`` (all traces or all breaches) as messages of up to ``ITEMS_PER_MESSAGE``. A ``breaches`` message
    carries the cursor of its last breach: a client that reconnects with it misses none after it."""
    messages = []
    for start in range(0, len(items), ITEMS_PER_MESSAGE):
        chunk = items[start : start + ITEMS_PER_MESSAGE]
        body: dict[str, Any] = {"type": kind, kind: [item.encoded for item in chunk]}
        if kind == "breaches":
            body["cursor"] = encode_cursor(BREACH_CURSOR, chunk[-1].position)
        traces, breaches = (len(chunk), 0) if kind == "traces" else (0, len(chunk))
        messages.append(Message(orjson.dumps(body).decode(), traces, breaches))
    return messages


@dataclass
class Lost:
    """What a client lost since it was last told (``lagged``): messages, and the traces and breaches they held."""

    messages: int = 0
    traces: int = 0
    breaches: int = 0


class LiveClient:
    """One subscriber: a bounded queue of encoded messages and the sender task that drains it."""

    def __init__(self, websocket: WebSocket, *, limit: int, metrics: LiveMetrics) -> None:
        self.websocket = websocket
        self.services: frozenset[str] | None = None
        self._queue: deque[Message] = deque()
        self._limit = limit
        self._max_lag = 4 * limit
        self._ready = asyncio.Event()
        self._lost = Lost()
        self._metrics = metrics
        self.kicked: str | None = None
        self.sender: asyncio.Task[None] | None = None

    def wants(self, service: str | None) -> bool:
        return self.services is None or service in self.services

    def offer(self, message: Message) -> None:
        """Queue a message without waiting; when full, drop the oldest and count it."""
        if self.kicked:
            return
        if len(self._queue) >= self._limit:
            dropped = self._queue.popleft()
            lost = self._lost
            lost.messages += 1
            lost.traces += dropped.traces
            lost.breaches += dropped.breaches
            self._metrics.dropped.inc()
            if dropped.traces:
                self._metrics.dropped_traces.inc(dropped.traces)
            if lost.messages > self._max_lag:
                self.kick("too far behind")
        self._queue.append(message)
        self._ready.set()

    def kick(self, reason: str) -> None:
        """Stop sending to this client, even in the middle of a send that does not complete."""
        self.kicked = reason
        self._queue.clear()
        self._ready.set()
        if self.sender is not None and self.sender is not asyncio.current_task():
            self.sender.cancel()

    async def send_loop(self, send_timeout: float) -> None:
        websocket = self.websocket
        while True:
            await self._ready.wait()
            if self.kicked:
                return
            if not self._queue:
                self._ready.clear()
                continue
            if self._lost.messages:
                lost, self._lost = self._lost, Lost()
                lagged = {"type": "lagged", "dropped": lost.messages, "traces": lost.traces, "breaches": lost.breaches}
                text = encode(lagged).text
            else:
                text = self._queue.popleft().text
            try:
                await asyncio.wait_for(websocket.send_text(text), send_timeout)
            except TimeoutError:
                self.kick("send timed out")
                return


class LiveFeed:
    """Fans out settled traces, breaches and cost ticks to WebSocket clients."""

    def __init__(
        self,
        reader: TraceReader,
        registry: CollectorRegistry,
        *,
        queue_limit: int = 256,
        send_timeout: float = 10.0,
        heartbeat: float = 15.0,
    ) -> None:
        self.reader = reader
        self.metrics = LiveMetrics(registry)
        self.costs = CostTracker()
        self.queue_limit = queue_limit
        self.send_timeout = send_timeout
        self.heartbeat = heartbeat
        self._clients: set[LiveClient] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settled: list[str] = []
        self._wake = asyncio.Event()
        self._breach_after: tuple[Any, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_listening: Callable[[], None] | None = None

    # -- called from the writer thread --

    def observe_committed(self, stored: Sequence[SpanSummary], repeated_calls: Set[tuple[str, str]]) -> None:
        self.costs.observe(stored, repeated_calls)

    def notify_settled(self, trace_ids: Sequence[str]) -> None:
        """The traces this replica settled; ignored when the store tells every replica itself (below)."""
        if self._stop_listening is None:
            self._hand_over(trace_ids)

    def _hand_over(self, trace_ids: Sequence[str]) -> None:
        loop = self._loop
        if loop is None or not trace_ids:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._on_settled, list(trace_ids))

    def _on_settled(self, trace_ids: list[str]) -> None:
        self._settled.extend(trace_ids)
        self._wake.set()

    # -- lifecycle --

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # A store shared by several replicas (PostgreSQL) tells each of them what any of them settled.
        listen_settled = getattr(self.reader, "listen_settled", None)
        if listen_settled is not None:
            self._stop_listening = listen_settled(self._hand_over)
        latest = await self.reader.breaches(BreachQuery(order="desc", limit=1))
        if latest["data"]:
            newest = latest["data"][0]
            self._breach_after = (newest["computed_at_unix_nano"], newest["id"])
        else:
            self._breach_after = (0, 0)
        start_of_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            self.costs.seed_today(await self.reader.spend_by_model(int(start_of_day.timestamp()) * NS_PER_SECOND))
        except (QueryTooBroad, ReadBusy) as error:
            log.warning("live cost tracker starts from zero for today: %s", error)
        self._tasks = [
            asyncio.create_task(self._publish_settled(), name="live-settled"),
            asyncio.create_task(self._tick(), name="live-tick"),
        ]

    async def stop(self) -> None:
        """Stop publishing and disconnect every client; safe to call twice."""
        self._loop = None
        if self._stop_listening is not None:
            await asyncio.to_thread(self._stop_listening)
            self._stop_listening = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for client in list(self._clients):
            client.kick("shutting down")

    # -- publishing --

    def _publish(self, message: dict[str, Any]) -> None:
        """A message for every client (cost ticks, heartbeats)."""
        if self._clients:
            encoded = encode(message)
            for client in self._clients:
                client.offer(encoded)

    def _publish_items(self, kind: Literal["traces", "breaches"], items: Sequence[Item]) -> None:
        """Traces or breaches, in messages built once per distinct service filter among the clients."""
        built: dict[frozenset[str] | None, list[Message]] = {}
        for client in self._clients:
            messages = built.get(client.services)
            if messages is None:
                wanted = items if client.services is None else [item for item in items if client.wants(item.service)]
                messages = built[client.services] = messages_of(kind, wanted)
            for message in messages:
                client.offer(message)

    async def _publish_settled(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # the rest of a settling round, which commits in chunks
            self._wake.clear()
            trace_ids, self._settled = self._settled, []
            try:
                while trace_ids and self._clients:
                    summaries = await self.reader.trace_summaries(trace_ids[:READ_BATCH])
                    del trace_ids[:READ_BATCH]
                    if self._clients:
                        self._publish_items("traces", [trace_item(summary) for summary in summaries])
                await self._publish_breaches()
            except (QueryTooBroad, ReadBusy) as error:
                log.warning("live feed could not read what settled: %s", error)
                self._settled[:0] = trace_ids  # the traces not read yet go out with the next round
                self._wake.set()
                await asyncio.sleep(1)
            except Exception:
                log.exception("live feed failed to publish settled traces")
                await asyncio.sleep(1)

    async def _publish_breaches(self) -> None:
        while True:
            page = await self.reader.breaches(BreachQuery(order="asc", limit=READ_BATCH, after=self._breach_after))
            if page["data"]:
                items = [breach_item(breach) for breach in page["data"]]
                self._breach_after = items[-1].position
                self._publish_items("breaches", items)
            if page["after"] is None:
                return

    async def _tick(self) -> None:
        next_heartbeat = time.monotonic() + self.heartbeat
        while True:
            await asyncio.sleep(1.0 - (time.time() % 1.0))
            if not self._clients:
                continue
            self._publish(self.costs.tick())
            if time.monotonic() >= next_heartbeat:
                next_heartbeat = time.monotonic() + self.heartbeat
                self._publish({"type": "heartbeat", "time_unix_nano": time.time_ns()})

    # -- one client --

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        client = LiveClient(websocket, limit=self.queue_limit, metrics=self.metrics)
        self._clients.add(client)
        self.metrics.clients.inc()
        sender = client.sender = asyncio.create_task(client.send_loop(self.send_timeout), name="live-sender")
        receiver = asyncio.create_task(self._receive(client), name="live-receiver")
        try:
            initial = {
                "services": websocket.query_params.getlist("service") or None,
                "breaches_after": websocket.query_params.get("breaches_after"),
            }
            try:
                await self._subscribe(client, initial)
            except ValueError as error:
                client.offer(encode({"type": "error", "message": str(error)}))
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._clients.discard(client)
            self.metrics.clients.dec()
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            if client.kicked and client.kicked != "shutting down":
                self.metrics.disconnected.inc()
                log.info("live feed client disconnected: %s", client.kicked)
            if websocket.application_state == WebSocketState.CONNECTED:
                code = 1008 if client.kicked == "too far behind" else 1011 if client.kicked else 1000
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(code=code, reason=client.kicked or ""), 1.0)

    async def _receive(self, client: LiveClient) -> None:
        websocket = client.websocket
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await websocket.receive_text()
                try:
                    try:
                        message = orjson.loads(text)
                    except orjson.JSONDecodeError as error:
                        raise ValueError(f"not JSON: {error}") from None
                    if not isinstance(message, dict) or message.get("type") != "subscribe":
                        raise ValueError('expected {"type": "subscribe", ...}')
                    await self._subscribe(client, message)
                except ValueError as error:
                    client.offer(encode({"type": "error", "message": str(error)}))

    async def _subscribe(self, client: LiveClient, message: dict[str, Any]) -> None:
        services = message.get("services")
        if services is not None and (
            not isinstance(services, list) or not all(isinstance(service, str) for service in services)
        ):
            raise ValueError("services must be a list of service names")
        cursor = message.get("breaches_after")
        after = None
        if cursor is not None:
            try:
                after = decode_cursor(BREACH_CURSOR, str(cursor))
            except Exception as error:
                raise ValueError(str(error)) from None
        client.services = frozenset(services) if services else None
        client.offer(
            encode(
                {
                    "type": "subscribed",
                    "services": sorted(client.services) if client.services else None,
                    "heartbeat_seconds": self.heartbeat,
                    "queue_limit": self.queue_limit,
                }
            )
        )
        if after is not None:
            await self._replay_breaches(client, after)

    async def _replay_breaches(self, client: LiveClient, after: tuple[Any, Any]) -> None:
        """The breaches a reconnecting client missed, up to what the feed has already published."""
        services = tuple(client.services) if client.services else None
        position: tuple[Any, Any] | None = after
        while position is not None:
            page = await self.reader.breaches(
                BreachQuery(order="asc", limit=READ_BATCH, after=position, services=services)
            )
            published = self._breach_after or (0, 0)
            items = [breach_item(breach) for breach in page["data"]]
            missed = [item for item in items if item.position <= published]
            for message in messages_of("breaches", missed):
                client.offer(message)
            if len(missed) < len(items):
                return  # the live publisher sends the rest
            position = page["after"]
