// media_cache: what this node knows of calls' media declarations, so that ingest checks a packet's `data`
// against its call's format without a database read per packet.
//
// The store's declaration is the truth; an entry is this node's view of it. An entry is `settled` when it
// can no longer change: the call declared a format (declarations never change), or it has packets (then it
// can never declare one). An unsettled entry (the call was unknown, or had no packet yet) may be outdated
// by a declaration made since, on this node or another; the store catches that (ingest answers
// `media_changed` when a packet was checked against another declaration than the call's), and the caller
// reads the declaration again. The cache is bounded: a shard that reaches its share of `capacity` is
// emptied, which only costs a read per call on its next packet. Thread-safe.
#pragma once

#include "domain/thread_annotations.hpp"
#include "media/media_format.hpp"
#include "storage/call_store.hpp"

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace aipbx::ingest {

struct call_media_view {
  std::optional<media_declaration> declared;  // empty: the call declared nothing (the default applies)
  bool settled = false;
};

class media_cache {
 public:
  explicit media_cache(std::size_t capacity = 200'000);

  std::optional<call_media_view> find(std::string_view call_id) const;
  void put(std::string_view call_id, call_media_view view);

 private:
  struct hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct shard {
    mutable aipbx::mutex mutex;
    std::unordered_map<std::string, call_media_view, hash, std::equal_to<>> entries GUARDED_BY(mutex);
  };
  shard& shard_of(std::string_view call_id) const;

  std::size_t per_shard_;
  mutable std::array<shard, 16> shards_;
};

}  // namespace aipbx::ingest
