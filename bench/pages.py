"""The pages one batch dirties, by B-tree: what the SQLite writer's insert modifies and its COMMIT writes.

    .venv/bin/python bench/pages.py --db /var/tmp/copy-of-a-big.db   # writes into it: give it a copy
    .venv/bin/python bench/pages.py --quick                          # a fresh database in a temporary folder

Each measured batch (the writer benchmark's corpus, ``bench/writer.py``) is written by ``SpanWriter.write`` after a
``wal_checkpoint(TRUNCATE)``, so the ``-wal`` file then holds exactly the frames of that batch's transaction. Their
headers (the WAL format: a 32-byte file header, then per frame a 24-byte header whose first field is the page
number, and the page) give the pages the transaction wrote; the ``dbstat`` virtual table, read before the next
checkpoint, says which table or index each page belongs to and whether it is an interior, leaf or overflow page.
A page past the file's size before the batch is ``new`` (a split, or the table's growth); every page written here
is written a second time, into the database file, by the checkpoint. ``fill`` is how full the B-tree's leaves are
after the batches (a random-keyed index whose leaves split in half sits near 70%).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import apsw

from bench.writer import prepared_batches
from collector.storage.sqlite import writer

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_pages(path: Path, page_size: int) -> list[int]:
    """The page number of every frame of the ``-wal`` file, in order."""
    data = path.read_bytes()
    step = FRAME_HEADER + page_size
    return [struct.unpack_from(">I", data, at)[0] for at in range(WAL_HEADER, len(data) - step + 1, step)]


def owners(connection: apsw.Connection, pages: set[int]) -> dict[int, tuple[str, str]]:
    """The B-tree (its label) and page type (``internal``, ``leaf``, ``overflow``) of each of ``pages``."""
    labels = {
        name: name if name == table else f"{table}.{name}"
        for name, table in connection.execute("SELECT name, tbl_name FROM sqlite_schema WHERE rootpage > 0")
    }
    labels["sqlite_schema"] = "sqlite_schema"
    found: dict[int, tuple[str, str]] = {}
    for name, label in labels.items():
        for pageno, pagetype in connection.execute("SELECT pageno, pagetype FROM dbstat WHERE name = ?", (name,)):
            if pageno in pages:
                found[pageno] = (label, pagetype)
    return found


def leaf_fill(connection: apsw.Connection) -> dict[str, float]:
    """How full each B-tree's leaf pages are (payload and cell pointers over the page size)."""
    rows = connection.execute(
        "SELECT name, sum(pgsize - unused), sum(pgsize) FROM dbstat WHERE pagetype = 'leaf' GROUP BY name"
    )
    return {name: used / size for name, used, size in rows if size}


def measure(db: Path, batches: int, requests_per_batch: int, spans_per_request: int) -> dict[str, object]:
    """Pages written per batch and per span, by B-tree and page type, averaged over ``batches`` batches."""
    prepared = prepared_batches(batches + 1, requests_per_batch, spans_per_request, os.getpid())
    store = writer.SpanWriter(db)
    connection = store.connection
    page_size: int = connection.pragma("page_size")
    written: list[tuple[set[int], int]] = []  # each batch's pages, and the file's size in pages before it
    frames = spans = 0
    try:
        store.write(prepared[0])  # warm: the migrations a copy may still need, the statement cache
        store.flush()
        for batch in prepared[1:]:
            ((busy, _, _),) = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert not busy, "another connection holds the WAL: the batch's frames cannot be told apart"
            size_before: int = connection.pragma("page_count")
            store.write(batch)
            spans += sum(len(records.spans) for records in batch)
            numbers = wal_pages(Path(f"{db}-wal"), page_size)
            frames += len(numbers)
            written.append((set(numbers), size_before))
        # a page stays in its B-tree from one batch to the next (no vacuum runs between them): one dbstat pass
        found = owners(connection, set().union(*(pages for pages, _ in written)))
        fill = leaf_fill(connection)
    finally:
        store.close()
    by_tree: dict[str, Counter[str]] = defaultdict(Counter)
    for pages, size_before in written:
        for page in pages:
            label, pagetype = found.get(page, ("(freelist, pointer map, header)", "other"))
            by_tree[label][pagetype] += 1
            by_tree[label]["new" if page > size_before else "old"] += 1
    trees = {}
    for label, counts in sorted(by_tree.items(), key=lambda item: -(item[1]["new"] + item[1]["old"])):
        total = counts["new"] + counts["old"]
        name = label.split(".")[-1]
        trees[label] = {
            "per batch": round(total / batches, 1),
            "per span": round(total / spans, 3),
            "new": round(counts["new"] / batches, 1),
            "internal": round(counts["internal"] / batches, 1),
            "leaf": round(counts["leaf"] / batches, 1),
            "overflow": round(counts["overflow"] / batches, 1),
            "fill": round(fill.get(name, 0.0), 2),
        }
    pages_written = sum(counts["new"] + counts["old"] for counts in by_tree.values())
    return {
        "page size": page_size,
        "spans per batch": spans // batches,
        "pages per span": round(pages_written / spans, 3),
        "frames per span": round(frames / spans, 3),
        "WAL bytes per span": round(frames * (FRAME_HEADER + page_size) / spans),
        "trees": trees,
    }


def report(figures: dict[str, object]) -> None:
    print(
        f"pages one batch dirties, by B-tree ({figures['spans per batch']} spans a batch, page size "
        f"{figures['page size']}): {figures['pages per span']} pages per span, "
        f"{figures['WAL bytes per span']} WAL bytes per span"
    )
    print(f"  {'B-tree':48} {'/batch':>7} {'/span':>6} {'new':>6} {'intern':>6} {'leaf':>6} {'overfl':>6} {'fill':>5}")
    trees = figures["trees"]
    assert isinstance(trees, dict)
    for label, row in trees.items():
        print(
            f"  {label:48} {row['per batch']:7.1f} {row['per span']:6.3f} {row['new']:6.1f} {row['internal']:6.1f} "
            f"{row['leaf']:6.1f} {row['overflow']:6.1f} {row['fill']:5.2f}"
        )
    print(json.dumps({**figures, "loadavg": os.getloadavg()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a database to write into (a copy: it grows); default a new one")
    parser.add_argument("--batches", type=int, default=5, help="measured batches, after one that warms up")
    parser.add_argument("--requests-per-batch", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 batches")
    args = parser.parse_args()
    if args.quick:
        args.batches = 2
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "pages.db"
        report(measure(db, args.batches, args.requests_per_batch, args.spans_per_request))


if __name__ == "__main__":
    main()
