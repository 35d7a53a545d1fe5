"""Live-feed micro-benchmark: what the WebSocket feed costs the collector's process per settled trace.

    .venv/bin/python bench/live.py                          # prefill a small database, then the figures
    .venv/bin/python bench/live.py --db /var/tmp/live.db    # keep the database for the next run
    .venv/bin/python bench/live.py --quick                  # a few rounds: does it work

The real query server (``QueryServer``: the live feed, its reader on its own read connections, uvicorn) runs in
this process on a prefilled database; a thread plays the writer's settling job, telling the feed every
``--interval`` that ``--per-round`` traces settled (in chunks of 500, as the job settles them). The subscribers:

- ``none``;
- ``reading``: a client in another process (its CPU is not counted) that reads and parses everything and, like a
  browser, offers permessage-deflate, which the server accepts (compression is per subscriber);
- ``stalled``: a socket that completes the handshake and never reads, with a 4 KiB receive buffer;
- ``reading x4``: four reading clients;
- ``reading, no deflate``: a reading client that does not offer compression.

Each configuration runs for the same wall time; the figure is this process's CPU time per settled trace, best of
``--repeats`` (configurations alternated in each repeat), which the load of other processes disturbs little. The
cost of a subscriber is its configuration's figure minus ``none``'s. The reading clients count the traces they
receive and those ``lagged`` says they lost.

To compare with other code, put its package first: ``PYTHONPATH=/tmp/old .venv/bin/python bench/live.py --db ...``
imports ``collector`` from ``/tmp/old/collector`` (the database's schema must be the same).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import apsw

import collector
from bench.daemon import CLOCK_TICKS, host_cpu_ticks
from bench.query import live_websocket
from collector.auth.listeners import ListenerSecurity
from collector.config import load_settings
from collector.query.server import QueryServer

SETTLE_CHUNK = 2000  # traces per settling transaction (collector.maintenance.settle.SETTLE_CHUNK)
CONFIGURATIONS = {"none": 0, "reading": 1, "stalled": 0, "reading x4": 4, "reading, no deflate": 1}


def traces_in(message: dict[str, Any]) -> tuple[int, int]:
    """How many trace summaries a message carries and how many it says were lost, in the feed's message shape
    of any version (one ``trace`` per message and ``lagged`` counting messages, or ``traces`` in batches)."""
    kind = message.get("type")
    if kind == "trace":
        return 1, 0
    if kind == "traces":
        return len(message["traces"]), 0
    if kind == "lagged":
        return 0, message.get("traces", message["dropped"])
    return 0, 0


def reading_client(url: str, counts: Any, ready: Any, deflate: bool) -> None:
    """A subscriber in its own process: reads and parses every message, counting traces, messages and bytes.
    Like a browser, it offers permessage-deflate (which the server accepts) unless ``deflate`` is false."""
    from websockets.sync.client import connect

    with connect(url, max_size=None, compression="deflate" if deflate else None) as websocket:
        ready.set()
        try:
            for text in websocket:
                received, lost = traces_in(json.loads(text))
                with counts.get_lock():
                    counts[0] += received
                    counts[1] += 1
                    counts[2] += len(text)
                    counts[3] += lost
        except Exception:  # the connection closed: the run is over
            return


def settling(live: Any, rounds: list[list[str]], interval: float) -> threading.Thread:
    """The writer's settling job: every ``interval``, one round of traces told in chunks of SETTLE_CHUNK."""

    def run() -> None:
        next_round = time.monotonic()
        for trace_ids in rounds:
            for start in range(0, len(trace_ids), SETTLE_CHUNK):
                live.notify_settled(trace_ids[start : start + SETTLE_CHUNK])
            next_round += interval
            time.sleep(max(0.0, next_round - time.monotonic()))

    thread = threading.Thread(target=run, name="settling", daemon=True)
    thread.start()
    return thread


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3_000):  # 30 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise SystemExit("bench: the live feed's clients did not come or go in time")


async def one_run(server: QueryServer, name: str, trace_ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/api/v1/live"
    context = multiprocessing.get_context("spawn")
    counts = context.Array("q", 4)  # traces, messages, bytes received by all reading clients; traces lost
    readers = []
    for _ in range(CONFIGURATIONS[name]):
        ready = context.Event()
        deflate = "no deflate" not in name
        process = context.Process(target=reading_client, args=(url, counts, ready, deflate), daemon=True)
        process.start()
        await asyncio.to_thread(ready.wait, 30)
        readers.append(process)
    stalled = live_websocket(server.port, stalled=True) if name == "stalled" else None
    live = server.live
    assert live is not None
    await until(lambda: len(live._clients) == CONFIGURATIONS[name] + (stalled is not None))
    await asyncio.sleep(0.3)  # the subscribed messages are out
    rounds = [trace_ids[start : start + args.per_round] for start in range(0, len(trace_ids), args.per_round)]
    window = len(rounds) * args.interval + args.tail
    print(f"bench: measuring {name} for {window:.1f} s", file=sys.stderr, flush=True)
    host_before = host_cpu_ticks()
    started_cpu, started = time.process_time(), time.monotonic()
    settling(live, rounds, args.interval)
    await asyncio.sleep(window)
    cpu = time.process_time() - started_cpu
    wall = time.monotonic() - started
    host_after = host_cpu_ticks()
    host_busy = (host_after[0] - host_before[0]) / CLOCK_TICKS
    load = round(max(0.0, host_busy - cpu) / (wall * (os.cpu_count() or 1)), 2)  # others' share of the machine
    if stalled is not None:
        stalled.close()
    for process in readers:
        process.kill()
        process.join()
    await until(lambda: not live._clients)
    expected = len(trace_ids) * len(readers)
    return {
        "cpu_s": cpu,
        "wall_s": round(wall, 2),
        "traces": len(trace_ids),
        "received_traces": counts[0],
        "received_complete": counts[0] == expected,
        "lost_traces": counts[3],
        "messages_per_subscriber": counts[1] / max(1, len(readers)),
        "bytes_per_subscriber": counts[2] / max(1, len(readers)),
        "others_cpu_share": load,
    }


def prefill_database(db: Path, spans: int) -> None:
    from bench.prefill import prefill

    prefill(db, spans, 100, 20_000, spread_s=3_600)


async def measure(db: Path, args: argparse.Namespace) -> dict[str, Any]:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    needed = args.rounds * args.per_round
    trace_ids = [row[0] for row in connection.execute("SELECT trace_id FROM traces LIMIT ?", (needed,))]
    connection.close()
    if len(trace_ids) < needed:
        raise SystemExit(f"bench: {db} holds {len(trace_ids)} traces, {needed} needed")
    settings = load_settings({"query": {"endpoint": "127.0.0.1:0"}})
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    security = ListenerSecurity(settings, registry)
    server = QueryServer(db, settings.query, settings.servers["query"], security, registry, (), shutdown_timeout=1)
    await server.start()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.configurations}
    try:
        for repeat in range(args.repeats):
            order = args.configurations if repeat % 2 == 0 else list(reversed(args.configurations))
            for name in order:
                run = await one_run(server, name, trace_ids, args)
                runs[name].append(run)
                print(
                    f"bench: {name:<11} {run['cpu_s'] * 1e6 / run['traces']:7.1f} µs per trace, "
                    f"{run['messages_per_subscriber']:6.0f} messages per subscriber, "
                    f"{run['lost_traces'] / max(1, CONFIGURATIONS[name]):5.0f} traces lost, "
                    f"others {run['others_cpu_share']:.0%}",
                    file=sys.stderr,
                )
    finally:
        from collector.component import Deadline

        await server.stop(Deadline.after(5))
    figures: dict[str, Any] = {}
    for name, measured in runs.items():
        best = min(measured, key=lambda run: run["cpu_s"])
        figures[name] = {
            "cpu_us_per_trace": round(best["cpu_s"] * 1e6 / best["traces"], 1),
            "cpu_us_per_trace_all": [round(run["cpu_s"] * 1e6 / run["traces"], 1) for run in measured],
            "messages_per_subscriber": round(best["messages_per_subscriber"]),
            "kib_per_subscriber": round(best["bytes_per_subscriber"] / 1024),
            "every_trace_received": all(run["received_complete"] for run in measured),
            "lost_traces_per_subscriber": [run["lost_traces"] / max(1, CONFIGURATIONS[name]) for run in measured],
            "others_cpu_share": [run["others_cpu_share"] for run in measured],
        }
    if "none" in figures:
        for figure in figures.values():
            figure["extra_us_per_trace"] = round(figure["cpu_us_per_trace"] - figures["none"]["cpu_us_per_trace"], 1)
    return {
        "collector": str(Path(collector.__file__).parent),
        "traces_per_run": args.rounds * args.per_round,
        "per_round": args.per_round,
        "interval_s": args.interval,
        "repeats": args.repeats,
        "figures": figures,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a prefilled database to use (created if missing)")
    parser.add_argument("--prefill", type=int, default=60_000, help="spans to prefill a new database with")
    parser.add_argument("--rounds", type=int, default=8, help="settling rounds per run (default 8)")
    parser.add_argument("--per-round", type=int, default=650, help="traces settled per round (default 650)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
    parser.add_argument("--tail", type=float, default=1.5, help="seconds measured after the last round")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration; the best counts")
    parser.add_argument(
        "--configurations", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS), metavar="NAME"
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 repeat, 3 configurations, a small database")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats, args.prefill, args.tail = 2, 1, 20_000, 2.0
        args.configurations = ["none", "reading", "stalled"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as scratch:
        db = args.db or Path(scratch) / "live.db"
        if not db.exists():
            prefill_database(db, args.prefill)
        report = asyncio.run(measure(db, args))
    width = max(map(len, report["figures"]))
    print(f"{'subscribers':<{width}}  CPU µs/trace  extra  messages  KiB  (per subscriber; best of {args.repeats})")
    for name, figure in report["figures"].items():
        print(
            f"{name:<{width}}  {figure['cpu_us_per_trace']:12.1f}  {figure.get('extra_us_per_trace', 0):5.1f}"
            f"  {figure['messages_per_subscriber']:8}  {figure['kib_per_subscriber']:4}"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
