// A VFS that coalesces SQLite's writes to the write-ahead log.
//
// SQLite appends each WAL frame with two write(2) calls (the 24-byte frame header, then the page), so a
// transaction that changes 100 pages costs 200 system calls. This VFS wraps the default ("unix") VFS and,
// for WAL files only, collects consecutive appends in a buffer that goes to the file in one write:
//
//  - before the WAL's xSync, xRead of a buffered range, xTruncate, xFileSize, xClose and any file control;
//  - before a write that does not continue the buffered run (SQLite rewriting a frame, or restarting the
//    log at offset 0), and when the buffer is full;
//  - and, the point that keeps readers correct, when the connection publishes new frames in the wal-index:
//    SQLite calls the main database file's xShmBarrier between writing the frames and making the new
//    wal-index header visible, so the buffer is written out there, before any other connection can learn
//    that the frames exist.
//
// So nothing another connection (or a crash of this process) can observe changes: every byte reaches the
// file before it is published, in the order SQLite wrote it. Durability is unchanged too, since xSync
// writes the buffer first. Each sqlite3_file is used by one connection, hence one thread at a time, as
// SQLite requires of every VFS, so the buffer needs no lock.
//
// Hand-written because no packaged library provides it: it is the only VFS code in aipbx.
#pragma once

namespace aipbx::sqlite {

// Registers the VFS (once, thread-safe; not as the default) and returns its name, for sqlite3_open_v2.
const char* buffered_wal_vfs();

// Counters for tests and benchmarks: how many WAL writes SQLite asked for and how many reached the file.
struct buffered_wal_counts {
  unsigned long long requested = 0;
  unsigned long long written = 0;
};
buffered_wal_counts buffered_wal_stats();

}  // namespace aipbx::sqlite
