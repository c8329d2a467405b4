"""``lifecycle ledger check|repair``: what to do when ``lifecycle serve`` (or a running service's
``/readyz``) reports the feedback ledger damaged.

``check`` runs the start-up check (SQLite ``quick_check`` and the tables; a PostgreSQL ledger
reachable) and prints each table's rows, and how many decisions are marked undelivered (their
caller left before the answer: kept, but neither contacts nor exposures). Opening a ledger of
an earlier version adds the columns it lacks, as the service does. ``repair`` (SQLite, with
the service stopped) moves the damaged file aside, creates an empty ledger in its place and
copies every row it can still read into it, table by table in rowid order, skipping the
stretches it cannot read; it says how many rows each table kept. Nothing is deleted: the
damaged file stays beside it for a closer look.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated

import typer

from training.cli_common import console, fail

app = typer.Typer(help="Check or repair the feedback ledger.", no_args_is_help=True)
Ledger = Annotated[str, typer.Argument(help="The ledger: a SQLite file or postgresql://...")]
CHUNK = 1000  # rows read per statement
TABLES = ("decisions", "feedback", "feedback_rejected")


@app.command()
def check(ledger: Ledger) -> None:
    """Check the ledger as `lifecycle serve` does; exit 1 naming what is wrong."""
    from serving.ledger import open_ledger
    from serving.ledger_common import parse_location
    from serving.preflight import ledger_problem

    kind, target = parse_location(ledger)
    if kind != "postgresql" and not Path(target).exists():
        raise fail(f"there is no ledger at {target} (the service creates it when it starts)")
    problem = ledger_problem(ledger)
    if problem:
        raise fail(problem)
    opened = open_ledger(ledger)
    try:
        counts, undelivered = opened.counts(), opened.undelivered()
    finally:
        opened.close()
    rows = ", ".join(f"{table} {n:,}" for table, n in counts.items())
    console.print(f"the feedback ledger {target} is sound: {rows} rows; {undelivered:,} "
                  "decision(s) marked undelivered (their caller left before the answer: "
                  "not contacts, not learnt from)", highlight=False)  # fmt: skip


@app.command()
def repair(ledger: Ledger) -> None:
    """Stop the service first. Move the damaged SQLite ledger aside (LEDGER.damaged-TIME),
    create an empty one in its place and copy every readable row into it."""
    from serving.ledger import FeedbackLedger
    from serving.ledger_common import parse_location

    kind, target = parse_location(ledger)
    if kind == "postgresql":
        raise fail("repair is for SQLite ledgers; a PostgreSQL ledger is repaired with the "
                   "server's own tools (restore a backup, pg_dump/pg_restore)")  # fmt: skip
    path = Path(target)
    if not path.exists():
        raise fail(f"there is no ledger at {path}: nothing to repair")
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):  # its log may hold committed rows: it goes along
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    FeedbackLedger(path).close()
    kept = copy_readable(aside, path)
    rows = ", ".join(f"{table} {n:,}" for table, (n, _) in kept.items())
    console.print(f"moved the damaged ledger to {aside}; {path} is a new ledger with the rows "
                  f"that could be read: {rows}", highlight=False)  # fmt: skip
    for table, (_, skipped) in kept.items():
        if skipped:
            console.print(f"[yellow]{table}: {skipped} unreadable stretch(es) skipped[/]")


def copy_readable(damaged: Path, into: Path) -> dict[str, tuple[int, int]]:
    """Copy what can be read of each ledger table of ``damaged`` into the ledger ``into``;
    per table (rows copied, unreadable stretches skipped). A ledger of an earlier version
    lacks newer columns: those take their defaults (``policy`` 'model', delivered)."""
    out = {}
    src = sqlite3.connect(damaged)
    dst = sqlite3.connect(into)
    try:
        for table in TABLES:
            columns = [row[1] for row in dst.execute(f"PRAGMA table_info({table})")]
            columns = [c for c in columns if c in _readable_columns(src, table, columns)]
            with dst:
                out[table] = _copy_table(src, dst, table, columns)
    finally:
        src.close()
        dst.close()
    return out


def _readable_columns(src, table: str, wanted: list[str]) -> set[str]:
    """The columns ``table`` of the damaged file has (all of ``wanted`` when its schema
    cannot be read: the copy then finds out what it can read)."""
    try:
        found = {row[1] for row in src.execute(f"PRAGMA table_info({table})")}
    except sqlite3.Error:
        return set(wanted)
    return found or set(wanted)


def _copy_table(src, dst, table: str, columns: list[str]) -> tuple[int, int]:
    """Rows of ``table`` in rowid order, a chunk at a time; an unreadable stretch is jumped
    over by doubling steps (a damaged page holds a run of rowids). A table that cannot be
    read at all (a foreign or garbage file) gives (0, 1)."""
    names = ", ".join(columns)
    select = f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}"
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    last, step, copied, skipped, failing = 0, 1, 0, 0, False
    while last < 2**62:
        rows, error = [], None
        try:
            for row in src.execute(select, (last,)):
                rows.append(row)
        except sqlite3.Error as err:
            error = err
        if rows:
            dst.executemany(insert, [row[1:] for row in rows])
            copied, last, step, failing = copied + len(rows), rows[-1][0], 1, False
        if error is None and len(rows) < CHUNK:
            break
        if error is not None and not rows:
            skipped += not failing
            last, step, failing = last + step, step * 2, True
            if isinstance(error, sqlite3.OperationalError) and "no such" in str(error):
                break  # a file of something else: nothing of this table to read
    return copied, skipped
