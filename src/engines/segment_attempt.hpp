// Builds the workers' attempt function for an engine: read the job's packets from the store (on the
// blocking pool), hand them to the engine, time the call. A segment whose packets cannot be read is a
// retryable failure. Thread-safe.
#pragma once

#include "engines/ai_engine.hpp"
#include "jobs/worker_pool.hpp"
#include "storage/job_store.hpp"

#include <boost/asio/thread_pool.hpp>

namespace aipbx::engines {

jobs::attempt_fn make_segment_attempt(job_store& store, ai_engine& engine, boost::asio::thread_pool& blocking);

}  // namespace aipbx::engines
