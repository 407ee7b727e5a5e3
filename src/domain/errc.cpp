#include "domain/errc.hpp"

#include <string>

namespace aipbx {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "aipbx"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::ok: return "success";
      case errc::invalid_input: return "invalid input";
      case errc::not_found: return "not found";
      case errc::sequence_conflict: return "sequence already stored with different data";
      case errc::call_ended: return "call has ended";
      case errc::job_not_dead: return "job is not dead";
      case errc::invalid_transition: return "invalid call state transition";
      case errc::overloaded: return "store overloaded";
      case errc::unavailable: return "store unavailable";
      case errc::store_failure: return "store failure";
      case errc::media_conflict: return "call declared another media format";
      case errc::media_too_late: return "call already has packets; its media can no longer be declared";
      case errc::media_changed: return "call's media declaration changed";
    }
    return "unknown aipbx error";
  }
};

}  // namespace

const boost::system::error_category& aipbx_category() noexcept {
  static const category instance;
  return instance;
}

std::string describe(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception of unknown type";
  }
}

}  // namespace aipbx
