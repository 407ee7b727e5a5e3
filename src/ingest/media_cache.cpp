#include "ingest/media_cache.hpp"

#include <algorithm>

namespace aipbx::ingest {

media_cache::media_cache(std::size_t capacity) : per_shard_(std::max<std::size_t>(1, capacity / 16)) {}

media_cache::shard& media_cache::shard_of(std::string_view call_id) const {
  return shards_[hash{}(call_id) % shards_.size()];
}

std::optional<call_media_view> media_cache::find(std::string_view call_id) const {
  shard& s = shard_of(call_id);
  aipbx::lock_guard lock(s.mutex);
  auto it = s.entries.find(call_id);
  if (it == s.entries.end()) return std::nullopt;
  return it->second;
}

void media_cache::put(std::string_view call_id, call_media_view view) {
  shard& s = shard_of(call_id);
  aipbx::lock_guard lock(s.mutex);
  auto it = s.entries.find(call_id);
  if (it != s.entries.end()) {
    it->second = std::move(view);
    return;
  }
  if (s.entries.size() >= per_shard_) s.entries.clear();
  s.entries.emplace(std::string(call_id), std::move(view));
}

}  // namespace aipbx::ingest
