// backend_metric: one figure a storage backend reports about itself beyond the writer_stats every backend
// has (the embedded store's WAL syncs and checkpoints, say), so that /metrics exports it without knowing
// the backend. A plain value; the backend names the Prometheus family, its help text and labels, and every
// figure of one family comes with the same help and type, one after the other.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace aipbx {

struct backend_metric {
  enum class kind { counter, gauge };
  std::string name;  // the family, e.g. aipbx_checkpoints_total
  std::string help;
  kind type = kind::counter;
  std::vector<std::pair<std::string, std::string>> labels;  // e.g. {"by", "writer"}
  double value = 0;
};

}  // namespace aipbx
