#!/usr/bin/env python3
"""What a packet costs SQLite in each layout of the packets table, under the streaming load's shape.

N live calls, each commit adds one packet to `--per-commit` of them (a 20 ms frame per call, a commit every
15 ms or so), after `--warm` commits so that every call already has a long run of packets. Prints, per
layout, the CPU per packet of this process (SQLite's work plus a constant ~3 us of Python per row), the
WAL pages each commit writes (what the checkpointer then copies and the syncer flushes) and the longest
commit (a layout that moves packets in bulk makes that commit wait for the move).

Layouts:
  rowid     aipbx's: a rowid table and a UNIQUE (call_id, sequence) index
  intkey    the same with an integer call key instead of the text id
  worowid   WITHOUT ROWID, keyed by (call_key, sequence)
  staging   packets land in an unindexed append-only table, moved into the indexed one, ordered by call,
            every `--move-every` commits
  parts     packets land in one of `--move-every` small tables (a call's by a hash of its id), each with a
            UNIQUE (call_id, sequence) index; each commit moves one table's packets, ordered by call, into the
            main table and empties it, so each call's index leaf there is touched once every `--move-every`
            commits and every commit moves about as many packets as it takes (no commit moves them all)
  partsids  `parts`, the packets keeping the ids given at arrival as the indexed table's rowid
  partscol  `parts`, the packets keeping the ids given at arrival in a column of their own (the indexed
            table's rowid counting moves)

    python3 bench/sqlite_packet_layouts.py [--calls 1000 --per-commit 740 --warm 1500 --commits 200]
"""
import argparse
import os
import random
import sqlite3
import tempfile
import time
import zlib

INDEXED = ('CREATE TABLE packets(id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, sequence INTEGER NOT NULL, '
           'data TEXT NOT NULL, timestamp REAL, received_at REAL, late INTEGER NOT NULL DEFAULT 0, '
           'UNIQUE(call_id, sequence))')
LAYOUTS = {
    'rowid': ([INDEXED], 'packets(call_id', str),
    'intkey': ([INDEXED.replace('call_id TEXT', 'call_id INTEGER')], 'packets(call_id', int),
    'worowid': (['CREATE TABLE packets(call_id INTEGER NOT NULL, sequence INTEGER NOT NULL, data TEXT NOT NULL, '
                 'timestamp REAL, received_at REAL, late INTEGER NOT NULL DEFAULT 0, '
                 'PRIMARY KEY(call_id, sequence)) WITHOUT ROWID'], 'packets(call_id', int),
    'staging': ([INDEXED, 'CREATE TABLE recent(id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, sequence INTEGER '
                 'NOT NULL, data TEXT NOT NULL, timestamp REAL, received_at REAL)'], 'recent(call_id', str),
}
PART = ('CREATE TABLE recent{n}(id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, sequence INTEGER NOT NULL, data TEXT NOT NULL, '
        'timestamp REAL, received_at REAL, UNIQUE(call_id, sequence))')
MOVE = ('INSERT INTO packets(call_id, sequence, data, timestamp, received_at) SELECT call_id, sequence, data, '
        'timestamp, received_at FROM recent ORDER BY call_id, sequence; DELETE FROM recent;')


def run(layout, a, path):
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ('journal_mode=WAL', 'synchronous=OFF', 'wal_autocheckpoint=0', 'cache_size=-65536'):
        db.execute('PRAGMA ' + pragma)
    parts = layout.startswith('parts')
    if parts:
        main = INDEXED.replace('(id INTEGER PRIMARY KEY,', '(id INTEGER PRIMARY KEY, packet_id INTEGER,')
        schema, target, key_type = [main] + [PART.format(n=n) for n in range(a.move_every)], None, str
    else:
        schema, target, key_type = LAYOUTS[layout]
    for sql in schema:
        db.execute(sql)
    insert = f'INSERT INTO {target}, sequence, data, timestamp, received_at) VALUES (?, ?, ?, ?, ?)'
    inserts = [f'INSERT INTO recent{n}(id, call_id, sequence, data, timestamp, received_at) '
               f'VALUES (?, ?, ?, ?, ?, ?)' for n in range(a.move_every)]
    moved_id = {'parts': '', 'partsids': 'id, ', 'partscol': 'packet_id, '}.get(layout, '')
    next_id = 1
    keys = [key_type(f'call-{c:06d}') if key_type is str else c + 1 for c in range(a.calls)]
    sequence = [0] * a.calls
    data = 'A' * 428  # a 20 ms frame of 8 kHz 16-bit audio in base64
    rng = random.Random(1)
    commits = 0

    def commit():
        nonlocal commits, next_id
        rows = []
        for c in rng.sample(range(a.calls), a.per_commit):
            sequence[c] += 1
            rows.append((keys[c], sequence[c], data, 1.0, 2.0))
        db.execute('BEGIN')
        if parts:
            by_part = {}
            for row in rows:
                by_part.setdefault(zlib.crc32(row[0].encode()) % a.move_every, []).append((next_id,) + row)
                next_id += 1
            for part, part_rows in by_part.items():
                db.executemany(inserts[part], part_rows)
        else:
            db.executemany(insert, rows)
        commits += 1
        if parts:
            part = commits % a.move_every
            db.execute(f'INSERT INTO packets({moved_id}call_id, sequence, data, timestamp, received_at) SELECT '
                       f'{"id, " if moved_id else ""}call_id, sequence, data, timestamp, received_at FROM recent{part} '
                       f'ORDER BY call_id, sequence')
            db.execute(f'DELETE FROM recent{part}')
        if layout == 'staging' and commits % a.move_every == 0:
            for sql in MOVE.split(';')[:2]:
                db.execute(sql)
        db.execute('COMMIT')

    for _ in range(a.warm):
        commit()
    db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    started = time.process_time()
    longest = 0.0
    for _ in range(a.commits):
        t0 = time.perf_counter()
        commit()
        longest = max(longest, time.perf_counter() - t0)
    cpu = time.process_time() - started
    frame = 4096 + 24
    pages = os.path.getsize(path + '-wal') / frame / a.commits
    print(f'{layout:8s} CPU per packet {cpu / (a.commits * a.per_commit) * 1e6:6.2f} us   '
          f'WAL pages per commit {pages:6.0f}   longest commit {longest * 1e3:6.1f} ms   '
          f'({a.per_commit} packets per commit)')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--calls', type=int, default=1000)
    p.add_argument('--per-commit', type=int, default=740)
    p.add_argument('--warm', type=int, default=1500)
    p.add_argument('--commits', type=int, default=200)
    p.add_argument('--move-every', type=int, default=100)
    p.add_argument('--layouts', default='rowid,intkey,worowid,staging,parts,partsids,partscol')
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get('TMPDIR', '/var/tmp')) as d:
        for layout in a.layouts.split(','):
            run(layout, a, os.path.join(d, 'layout.db'))


if __name__ == '__main__':
    main()
