// Builds the workers' attempt function for an engine: read the job's packets and the call's media
// declaration from the store (on the blocking pool), hand them to the engine, time the call. A call that
// declared no format is taken to be in `default_media` (--media). A segment whose packets cannot be read
// is a retryable failure. The hypotheses an engine reports on the way are recorded as the attempt's
// partial result (job_store::record_partial), at most one every `partial_interval` and one at a time: the
// store keeps only the latest, and the result replaces it. Thread-safe.
#pragma once

#include "engines/ai_engine.hpp"
#include "jobs/worker_pool.hpp"
#include "media/media_format.hpp"
#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

#include <boost/asio/thread_pool.hpp>

#include <chrono>

namespace aipbx::engines {

jobs::attempt_fn make_segment_attempt(job_store& jobs, call_store& calls, ai_engine& engine,
                                      boost::asio::thread_pool& blocking, media::media_format default_media,
                                      std::chrono::milliseconds partial_interval = std::chrono::milliseconds(250));

}  // namespace aipbx::engines
