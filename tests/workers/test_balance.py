"""How a worker decides to leave a waiting OTLP/HTTP connection to a sibling: the counts in a real door."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from collector.workers import balance
from collector.workers.balance import Balance, BalancedListener
from collector.workers.link import NOT_SERVING, Door


@pytest.fixture
def door() -> Iterator[Door]:
    door = Door.create(3)
    yield door
    door.close()


def test_a_worker_holding_more_connections_than_a_running_sibling_leaves_the_next_to_it(door: Door) -> None:
    first, second = Balance(door, 0), Balance(door, 1)  # the third worker is not serving
    assert door.connections() == [0, 0, NOT_SERVING]
    assert not first.ahead()
    first.opened()
    assert first.ahead() and not second.ahead()
    second.opened()
    assert not first.ahead() and not second.ahead()
    second.opened()
    second.closed()
    first.closed()
    assert door.connections() == [0, 1, NOT_SERVING]
    assert second.ahead() and not first.ahead()


def test_a_sibling_that_is_not_serving_is_not_waited_for(door: Door) -> None:
    alone = Balance(door, 2)
    for _ in range(3):
        alone.opened()
    assert not alone.ahead()
    sibling = Balance(door, 0)
    assert alone.ahead()
    door.set_connections(0, NOT_SERVING)  # what the main process writes once a worker is gone
    assert not alone.ahead() and sibling.open == 0


def test_a_sibling_that_does_not_take_the_connection_is_waited_for_max_defer_at_most(
    door: Door, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead, _ = Balance(door, 0), Balance(door, 1)
    ahead.opened()
    monkeypatch.setattr(balance, "MAX_DEFER", 0.0)
    assert not ahead.ahead()


def test_the_listener_counts_the_connections_it_accepts_until_they_close(door: Door) -> None:
    worker, sibling = Balance(door, 0), Balance(door, 1)
    listener = BalancedListener.of(socket.create_server(("127.0.0.1", 0)), worker)
    port = listener.getsockname()[1]
    with listener, socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)):
        connection, _ = listener.accept()
        assert door.connections()[:2] == [1, 0]
        with pytest.raises(BlockingIOError):  # the sibling holds fewer: the second connection waits for it
            listener.accept()
        sibling.opened()
        second, _ = listener.accept()
        assert door.connections()[:2] == [2, 1]
        connection.close()
        connection.close()  # closed once, counted once
        second.close()
        assert door.connections()[:2] == [0, 1]
