// Awaitable adapters between the HTTP coroutines and the store, which runs on threads of its own.
//
// `async_ingest` queues a packet with the store's writer and resumes the coroutine, on its own executor,
// once the packet is durable (or refused). `run_blocking` runs a blocking call (a database read) on the
// blocking pool, so I/O threads never wait on the database. Both are safe from any coroutine.
#pragma once

#include "storage/call_store.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace aipbx::http {

inline boost::asio::awaitable<result<ingest_outcome>> async_ingest(call_store& store, packet p) {
  namespace asio = boost::asio;
  return asio::async_initiate<const asio::use_awaitable_t<>, void(result<ingest_outcome>)>(
      [&store](auto handler, packet pkt) {
        auto executor = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store.ingest(std::move(pkt), [shared, executor](result<ingest_outcome> r) {
          asio::post(executor, [shared, r = std::move(r)]() mutable { std::move (*shared)(std::move(r)); });
        });
      },
      asio::use_awaitable, std::move(p));
}

template <class F>
boost::asio::awaitable<std::invoke_result_t<F>> run_blocking(boost::asio::thread_pool& pool, F f) {
  namespace asio = boost::asio;
  using R = std::invoke_result_t<F>;
  return asio::async_initiate<const asio::use_awaitable_t<>, void(R)>(
      [&pool](auto handler, F fn) {
        auto executor = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        asio::post(pool, [fn = std::move(fn), handler = std::move(handler), executor]() mutable {
          R r = fn();
          asio::post(executor, [handler = std::move(handler), r = std::move(r)]() mutable {
            std::move(handler)(std::move(r));
          });
        });
      },
      asio::use_awaitable, std::move(f));
}

}  // namespace aipbx::http
