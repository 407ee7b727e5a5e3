#include "storage/sqlite/buffered_wal_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>

namespace aipbx::sqlite {
namespace {

constexpr const char* vfs_name = "aipbx-buffered-wal";
constexpr std::size_t buffer_capacity = 1 << 20;
// The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the length with 0x1ffff).
constexpr std::size_t max_write = 120 * 1024;

std::atomic<unsigned long long> writes_requested{0};
std::atomic<unsigned long long> writes_done{0};

sqlite3_vfs* real_vfs = nullptr;

struct wal_buffer {
  char* data = nullptr;
  sqlite3_int64 offset = 0;  // file offset of data[0]
  std::size_t size = 0;
  bool commit_frame_next = false;  // the last write was the header of a commit frame
};

// WAL frame headers are the only 24-byte writes SQLite makes to a WAL (its own header is 32 bytes, pages at
// least 512); bytes 4-7 of a frame header hold, big-endian, the database size after a commit, or 0 for a
// frame that does not end a transaction (https://www.sqlite.org/fileformat2.html#walformat).
bool is_commit_frame_header(const void* in, int amount) {
  if (amount != 24) return false;
  const auto* p = static_cast<const unsigned char*>(in);
  return (p[4] | p[5] | p[6] | p[7]) != 0;
}

// Our file object; the wrapped VFS's file object follows it in the same allocation (szOsFile).
struct shim_file {
  sqlite3_file base;
  sqlite3_file* real;
  wal_buffer* wal_buf;     // set for WAL files: their appends are buffered
  shim_file* wal;          // set for a main database file: its connection's WAL file, while open
  shim_file* main;         // set for a WAL file: its connection's main database file
};

sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<shim_file*>(f)->real; }

int flush(shim_file* f) {
  wal_buffer* b = f->wal_buf;
  if (!b || b->size == 0) return SQLITE_OK;
  int rc = SQLITE_OK;
  for (std::size_t done = 0; done < b->size && rc == SQLITE_OK; done += max_write) {
    const std::size_t n = std::min(max_write, b->size - done);
    rc = f->real->pMethods->xWrite(f->real, b->data + done, static_cast<int>(n),
                                   b->offset + static_cast<sqlite3_int64>(done));
    writes_done.fetch_add(1, std::memory_order_relaxed);
  }
  b->size = 0;
  return rc;
}

int flush_file(sqlite3_file* f) { return flush(reinterpret_cast<shim_file*>(f)); }

int x_close(sqlite3_file* f) {
  auto* s = reinterpret_cast<shim_file*>(f);
  int rc = flush(s);
  if (s->main) s->main->wal = nullptr;
  if (s->wal) s->wal->main = nullptr;
  const int rc2 = s->real->pMethods ? s->real->pMethods->xClose(s->real) : SQLITE_OK;
  if (s->wal_buf) {
    delete[] s->wal_buf->data;
    delete s->wal_buf;
    s->wal_buf = nullptr;
  }
  return rc != SQLITE_OK ? rc : rc2;
}

int x_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  auto* s = reinterpret_cast<shim_file*>(f);
  if (s->wal_buf && s->wal_buf->size > 0 && offset < s->wal_buf->offset + static_cast<sqlite3_int64>(s->wal_buf->size) &&
      offset + amount > s->wal_buf->offset) {
    if (const int rc = flush(s); rc != SQLITE_OK) return rc;
  }
  return s->real->pMethods->xRead(s->real, out, amount, offset);
}

int x_write(sqlite3_file* f, const void* in, int amount, sqlite3_int64 offset) {
  auto* s = reinterpret_cast<shim_file*>(f);
  wal_buffer* b = s->wal_buf;
  if (!b) return s->real->pMethods->xWrite(s->real, in, amount, offset);
  writes_requested.fetch_add(1, std::memory_order_relaxed);
  // A transaction's last frame is written out at once, so a failure reaches SQLite here and rolls the
  // transaction back, instead of surfacing in xShmBarrier, which cannot report it.
  const bool ends_transaction = b->commit_frame_next;
  b->commit_frame_next = is_commit_frame_header(in, amount);
  const auto n = static_cast<std::size_t>(amount);
  const bool continues = b->size > 0 && offset == b->offset + static_cast<sqlite3_int64>(b->size);
  if (!continues || b->size + n > buffer_capacity) {
    if (const int rc = flush(s); rc != SQLITE_OK) return rc;
  }
  if (n > max_write) {  // larger than any page: not a frame; passed on as it came
    writes_done.fetch_add(1, std::memory_order_relaxed);
    return s->real->pMethods->xWrite(s->real, in, amount, offset);
  }
  if (b->size == 0) b->offset = offset;
  std::memcpy(b->data + b->size, in, n);
  b->size += n;
  return ends_transaction ? flush(s) : SQLITE_OK;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (const int rc = flush_file(f); rc != SQLITE_OK) return rc;
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

int x_sync(sqlite3_file* f, int flags) {
  if (const int rc = flush_file(f); rc != SQLITE_OK) return rc;
  return real_of(f)->pMethods->xSync(real_of(f), flags);
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  if (const int rc = flush_file(f); rc != SQLITE_OK) return rc;
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

int x_lock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
int x_unlock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xUnlock(real_of(f), level); }
int x_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

int x_file_control(sqlite3_file* f, int op, void* arg) {
  if (const int rc = flush_file(f); rc != SQLITE_OK) return rc;
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

int x_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device_characteristics(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

int x_shm_map(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, page_size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  // The connection may be about to publish frames it appended: they must be in the file first. The
  // commit frame already flushed them, so this only writes if SQLite ever publishes without one. A
  // barrier cannot report an error, and publishing frames that are not in the file would let readers
  // read garbage: stopping the process is the safe answer (recovery on restart drops the unwritten
  // transaction, which was never acknowledged).
  auto* s = reinterpret_cast<shim_file*>(f);
  if (s->wal && flush(s->wal) != SQLITE_OK) {
    std::fputs("aipbx: fatal: cannot write the SQLite WAL before publishing it\n", stderr);
    std::abort();
  }
  s->real->pMethods->xShmBarrier(s->real);
}
int x_shm_unmap(sqlite3_file* f, int delete_flag) { return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag); }
int x_fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  if (const int rc = flush_file(f); rc != SQLITE_OK) return rc;
  return real_of(f)->pMethods->xFetch(real_of(f), offset, amount, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return real_of(f)->pMethods->xUnfetch(real_of(f), offset, p);
}

const sqlite3_io_methods shim_methods = {
    3,           x_close,     x_read,         x_write,         x_truncate,       x_sync,
    x_file_size, x_lock,      x_unlock,       x_check_reserved, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map,      x_shm_lock,      x_shm_barrier,   x_shm_unmap,
    x_fetch,     x_unfetch,
};

int v_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* s = reinterpret_cast<shim_file*>(f);
  s->base.pMethods = nullptr;
  s->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(shim_file));
  s->wal_buf = nullptr;
  s->wal = nullptr;
  s->main = nullptr;
  const int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
  if (!s->real->pMethods) return rc;
  // From here xClose must be called even on failure, and ours closes the real file.
  s->base.pMethods = &shim_methods;
  if (rc != SQLITE_OK) return rc;
  if ((flags & SQLITE_OPEN_WAL) && name && s->real->pMethods->iVersion >= 3) {
    // The main file of the same connection was opened through this VFS, so it is a shim_file.
    auto* main = reinterpret_cast<shim_file*>(sqlite3_database_file_object(name));
    if (main && main->base.pMethods == &shim_methods && !main->wal) {
      s->wal_buf = new (std::nothrow) wal_buffer;
      if (s->wal_buf) {
        s->wal_buf->data = new (std::nothrow) char[buffer_capacity];
        if (!s->wal_buf->data) {
          delete s->wal_buf;
          s->wal_buf = nullptr;
        }
      }
      if (s->wal_buf) {
        s->main = main;
        main->wal = s;
      }
    }
  }
  return SQLITE_OK;
}

int v_delete(sqlite3_vfs*, const char* name, int sync_dir) { return real_vfs->xDelete(real_vfs, name, sync_dir); }
int v_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return real_vfs->xAccess(real_vfs, name, flags, out);
}
int v_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return real_vfs->xFullPathname(real_vfs, name, n, out);
}
void* v_dl_open(sqlite3_vfs*, const char* path) { return real_vfs->xDlOpen(real_vfs, path); }
void v_dl_error(sqlite3_vfs*, int n, char* out) { real_vfs->xDlError(real_vfs, n, out); }
void (*v_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) { return real_vfs->xDlSym(real_vfs, h, sym); }
void v_dl_close(sqlite3_vfs*, void* h) { real_vfs->xDlClose(real_vfs, h); }
int v_randomness(sqlite3_vfs*, int n, char* out) { return real_vfs->xRandomness(real_vfs, n, out); }
int v_sleep(sqlite3_vfs*, int us) { return real_vfs->xSleep(real_vfs, us); }
int v_current_time(sqlite3_vfs*, double* out) { return real_vfs->xCurrentTime(real_vfs, out); }
int v_get_last_error(sqlite3_vfs*, int n, char* out) { return real_vfs->xGetLastError(real_vfs, n, out); }
int v_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

sqlite3_vfs shim_vfs;

}  // namespace

const char* buffered_wal_vfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    real_vfs = sqlite3_vfs_find(nullptr);
    if (!real_vfs || real_vfs->iVersion < 2) throw std::runtime_error("no usable default SQLite VFS");
    shim_vfs = sqlite3_vfs{};
    shim_vfs.iVersion = 2;
    shim_vfs.szOsFile = static_cast<int>(sizeof(shim_file)) + real_vfs->szOsFile;
    shim_vfs.mxPathname = real_vfs->mxPathname;
    shim_vfs.zName = vfs_name;
    shim_vfs.xOpen = v_open;
    shim_vfs.xDelete = v_delete;
    shim_vfs.xAccess = v_access;
    shim_vfs.xFullPathname = v_full_pathname;
    shim_vfs.xDlOpen = v_dl_open;
    shim_vfs.xDlError = v_dl_error;
    shim_vfs.xDlSym = v_dl_sym;
    shim_vfs.xDlClose = v_dl_close;
    shim_vfs.xRandomness = v_randomness;
    shim_vfs.xSleep = v_sleep;
    shim_vfs.xCurrentTime = v_current_time;
    shim_vfs.xGetLastError = v_get_last_error;
    shim_vfs.xCurrentTimeInt64 = v_current_time_int64;
    if (sqlite3_vfs_register(&shim_vfs, 0) != SQLITE_OK) throw std::runtime_error("cannot register the SQLite VFS");
  });
  return vfs_name;
}

buffered_wal_counts buffered_wal_stats() {
  return {writes_requested.load(std::memory_order_relaxed), writes_done.load(std::memory_order_relaxed)};
}

}  // namespace aipbx::sqlite
