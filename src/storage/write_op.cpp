#include "storage/write_op.hpp"

namespace aipbx {

void write_op::complete() {
  std::visit(
      [](auto& op) {
        if (op.r) op.done(std::move(*op.r));
      },
      v);
}

void write_op::fail(const boost::system::error_code& failure) {
  std::visit([&](auto& op) { op.r.emplace(boost::system::in_place_error, failure); }, v);
}

}  // namespace aipbx
