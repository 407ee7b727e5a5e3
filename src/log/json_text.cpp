#include "log/json_text.hpp"

#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace aipbx {

void append_json(std::string& out, const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += boost::json::serialize(boost::json::value(key));
        out += ':';
        append_json(out, value);
      }
      out += '}';
      break;
    }
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& value : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append_json(out, value);
      }
      out += ']';
      break;
    }
    case boost::json::kind::double_: {
      const double d = v.get_double();
      if (!std::isfinite(d)) {
        out += "null";  // JSON has no infinities
        break;
      }
      char buf[32];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
      std::string_view text(buf, static_cast<std::size_t>(end - buf));
      out += text;
      // Keep it a JSON number that reads back as a float: "5" -> "5.0".
      if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
      break;
    }
    default: out += boost::json::serialize(v); break;
  }
}

std::string to_json_text(const boost::json::value& v) {
  std::string out;
  append_json(out, v);
  return out;
}

}  // namespace aipbx
