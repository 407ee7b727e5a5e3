// Awaitable adapters between coroutines and the store, which runs on threads of its own.
//
// `async_call` turns any callback-taking store write (ingest, claim, renew, finish...) into an awaitable
// that resumes the coroutine on its own executor once the write is committed (or refused). `run_blocking`
// runs a blocking call (a database read) on a thread pool, so I/O threads never wait on the database.
// Safe from any coroutine; the coroutine must outlive the operation (it does: it is suspended on it).
#pragma once

#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace aipbx {

// `start(callback)` must call the callback exactly once, from any thread, with an R.
template <class R, class Start>
boost::asio::awaitable<R> async_call(Start start) {
  namespace asio = boost::asio;
  return asio::async_initiate<const asio::use_awaitable_t<>, void(R)>(
      [](auto handler, Start begin) {
        auto executor =
            asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        begin([shared, executor](R r) {
          asio::post(executor, [shared, r = std::move(r)]() mutable { std::move (*shared)(std::move(r)); });
        });
      },
      asio::use_awaitable, std::move(start));
}

inline boost::asio::awaitable<result<ingest_outcome>> async_ingest(call_store& store, packet p) {
  return async_call<result<ingest_outcome>>(
      [&store, p = std::move(p)](call_store::ingest_handler done) mutable { store.ingest(std::move(p), std::move(done)); });
}

template <class F>
boost::asio::awaitable<std::invoke_result_t<F>> run_blocking(boost::asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F>;
  return async_call<R>([&pool, f = std::move(f)](std::function<void(R)> done) mutable {
    boost::asio::post(pool, [f = std::move(f), done = std::move(done)]() mutable { done(f()); });
  });
}

}  // namespace aipbx
