// backend_metric: one figure a storage backend reports about itself beyond the writer_stats every backend
// has (the embedded store's WAL syncs and checkpoints, say), so that /metrics exports it without knowing
// the backend. A plain value or a histogram; the backend names the Prometheus family, its help text and
// labels, and every figure of one family comes with the same help and type, one after the other.
#pragma once

#include "domain/histogram.hpp"

#include <string>
#include <utility>
#include <vector>

namespace aipbx {

struct backend_metric {
  using labels_type = std::vector<std::pair<std::string, std::string>>;
  enum class kind { counter, gauge, histogram };

  static backend_metric counter(std::string name, std::string help, double value, labels_type labels = {}) {
    return {std::move(name), std::move(help), kind::counter, std::move(labels), value, {}};
  }
  static backend_metric histogram(std::string name, std::string help, histogram_snapshot buckets,
                                  labels_type labels = {}) {
    return {std::move(name), std::move(help), kind::histogram, std::move(labels), 0, std::move(buckets)};
  }

  std::string name;  // the family, e.g. aipbx_checkpoints_total
  std::string help;
  kind type = kind::counter;
  labels_type labels;  // e.g. {"by", "writer"}
  double value = 0;             // counter, gauge
  histogram_snapshot buckets;   // histogram
};

}  // namespace aipbx
