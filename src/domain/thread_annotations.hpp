// Clang's thread-safety annotations, and a mutex that carries them.
//
// A member marked GUARDED_BY(m) is read and written only with `m` held; a function marked REQUIRES(m) is
// called only with `m` held, EXCLUDES(m) only without it. Clang's analysis checks each access when
// scripts/tidy.sh runs clang-tidy with -Wthread-safety; under GCC, which builds aipbx, the macros expand to
// nothing and the types below cost what std's do.
//
// libstdc++'s std::mutex and std::lock_guard carry no annotations, so the analysis could not see them lock:
// `aipbx::mutex` is a std::mutex that says it is a capability, `aipbx::lock_guard` holds one for a scope,
// and `aipbx::unique_lock` does too while lending std::condition_variable the std::unique_lock it waits
// with. A condition's predicate is a lambda, analysed apart from the scope that waits: mark it
// `REQUIRES(m)`, which it is (the wait calls it with the mutex held).
//
// Thread-safety and failures: those of std::mutex (lock throws std::system_error when the system refuses).
#pragma once

#include <mutex>

#if defined(__clang__)
#define AIPBX_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define AIPBX_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) AIPBX_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY AIPBX_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) AIPBX_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) AIPBX_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) AIPBX_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) AIPBX_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) AIPBX_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) AIPBX_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) AIPBX_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS AIPBX_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace aipbx {

class CAPABILITY("mutex") mutex {
 public:
  void lock() ACQUIRE() { m_.lock(); }
  void unlock() RELEASE() { m_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return m_.try_lock(); }

 private:
  friend class unique_lock;
  std::mutex m_;
};

class SCOPED_CAPABILITY lock_guard {
 public:
  explicit lock_guard(mutex& m) ACQUIRE(m) : m_(m) { m_.lock(); }
  ~lock_guard() RELEASE() { m_.unlock(); }
  lock_guard(const lock_guard&) = delete;
  lock_guard& operator=(const lock_guard&) = delete;

 private:
  mutex& m_;
};

class SCOPED_CAPABILITY unique_lock {
 public:
  explicit unique_lock(mutex& m) ACQUIRE(m) : lock_(m.m_) {}
  ~unique_lock() RELEASE() {}
  unique_lock(const unique_lock&) = delete;
  unique_lock& operator=(const unique_lock&) = delete;

  void lock() ACQUIRE() { lock_.lock(); }
  void unlock() RELEASE() { lock_.unlock(); }
  // What std::condition_variable's waits take.
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace aipbx
