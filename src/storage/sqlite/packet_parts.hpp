// Where the embedded store keeps a call's packets (migration 11).
//
// A packet lands in one of `packet_parts` small tables, `packets_recent_N`, N a hash of its call id, and
// each commit moves one of those tables, ordered by call, into `packets_settled` and empties it. A live
// call then touches its leaf of the settled table's (call_id, sequence) index once every `packet_parts`
// commits, with that many commits' packets at once, instead of once in every commit: a commit writes about
// half the pages, and no commit moves more than about what it takes (docs/performance.md, "What is left
// for the 1,000-call target"). Both kinds of table are keyed by (call_id, sequence); a call's packets are
// the union of the settled table and its part's table, which is what the view `packets` shows for readers
// of the file.
//
// A packet's `id` is given by the writer when it arrives and kept through the move; the settled table's
// rowid counts moves, so moved packets are appended to it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace aipbx::sqlite {

// Fixed by migration 11: a different number would need the parts' rows moved first.
inline constexpr std::uint32_t packet_parts = 16;

// FNV-1a over the id's bytes: fixed for the same reason.
inline std::uint32_t packet_part_of(std::string_view call_id) {
  std::uint32_t h = 2166136261u;
  for (const char c : call_id) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h % packet_parts;
}

inline std::string packet_part_table(std::uint32_t part) { return "packets_recent_" + std::to_string(part); }

// `select` (naming its table `{packets}`) over the settled table and `call_id`'s part, joined by UNION ALL:
// one statement, so one snapshot, in which a packet is in exactly one of the two.
inline std::string over_call_packets(std::string_view call_id, std::string_view select) {
  std::string sql;
  for (const std::string& table : {std::string("packets_settled"), packet_part_table(packet_part_of(call_id))}) {
    if (!sql.empty()) sql += " UNION ALL ";
    const auto at = select.find("{packets}");
    sql.append(select.substr(0, at)).append(table).append(select.substr(at + 9));
  }
  return sql;
}

}  // namespace aipbx::sqlite
