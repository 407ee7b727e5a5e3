#include "http/json_codec.hpp"

#include "domain/call_id.hpp"
#include "log/json_text.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

namespace aipbx::http {
namespace json = boost::json;

// Echoed input must stay valid JSON text: bytes that are not UTF-8 become U+FFFD, as Starlette does.
json::string sanitized(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= in.size();
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 0x2;
    if (ok && len > 1) {
      // Reject overlong forms, surrogates and code points above U+10FFFF.
      std::uint32_t cp = c & (0xff >> (len + 1));
      for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(in[i + k]) & 0x3f);
      ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
             (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff);
    }
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return json::string(out);
}

namespace {

validation_error body_error(std::string_view field, std::string type, std::string msg, json::value input,
                            json::object ctx = {}) {
  json::array loc{"body"};
  if (!field.empty()) loc.emplace_back(json::string_view(field.data(), field.size()));
  return {std::move(type), std::move(loc), std::move(msg), std::move(input), std::move(ctx)};
}

void check_sequence(const json::object& obj, packet_body& out, validation_errors& errors) {
  const json::value* v = obj.if_contains("sequence");
  if (!v) {
    errors.push_back(body_error("sequence", "missing", "Field required", obj));
    return;
  }
  // Read as a whole number, or say why not.
  std::optional<long double> whole;
  if (v->is_int64()) {
    whole = static_cast<long double>(v->get_int64());
  } else if (v->is_uint64()) {
    whole = static_cast<long double>(v->get_uint64());
  } else if (v->is_double()) {
    const double d = v->get_double();
    if (!std::isfinite(d)) {
      errors.push_back(body_error("sequence", "finite_number", "Input should be a finite number", *v));
      return;
    }
    if (d != std::floor(d)) {
      errors.push_back(body_error("sequence", "int_from_float",
                                  "Input should be a valid integer, got a number with a fractional part", *v));
      return;
    }
    whole = static_cast<long double>(d);
  } else {
    errors.push_back(body_error("sequence", "int_type", "Input should be a valid integer", *v));
    return;
  }
  if (*whole < 0) {
    errors.push_back(body_error("sequence", "greater_than_equal", "Input should be greater than or equal to 0",
                                *v, {{"ge", 0}}));
    return;
  }
  if (*whole > static_cast<long double>(max_sequence)) {
    errors.push_back(body_error("sequence", "less_than_equal",
                                "Input should be less than or equal to " + std::to_string(max_sequence), *v,
                                {{"le", max_sequence}}));
    return;
  }
  out.sequence = static_cast<std::int64_t>(*whole);
}

void check_data(const json::object& obj, packet_body& out, validation_errors& errors) {
  const json::value* v = obj.if_contains("data");
  if (!v) {
    errors.push_back(body_error("data", "missing", "Field required", obj));
  } else if (!v->is_string()) {
    errors.push_back(body_error("data", "string_type", "Input should be a valid string", *v));
  } else {
    out.data.assign(v->get_string().data(), v->get_string().size());
  }
}

// A JSON number's text as the nearest double: what is too small for a double is ±0 and what is too large
// ±infinity (which the callers refuse), as in IEEE arithmetic. std::from_chars converts exactly but reports
// both as out of range without a value; strtod (exact in glibc, and a JSON number has nothing that
// depends on the locale) gives them. nullopt if the text is not all one number.
std::optional<double> number_value(const std::string& text) {
  double d = 0;
  const char* end = text.data() + text.size();
  const auto [stop, err] = std::from_chars(text.data(), end, d);
  if (stop != end) return std::nullopt;
  if (err == std::errc::result_out_of_range) return std::strtod(text.c_str(), nullptr);
  if (err != std::errc()) return std::nullopt;
  return d;
}

// Boost.JSON 1.81 converts some 17-significant-digit numbers to the neighbouring double (its exact mode
// came in 1.83): 1702102422.8416727 became ...8416729, and a zero with a large exponent (0e999) became
// NaN. This handler of a second, light pass over the body keeps the text of the top-level "timestamp"
// number, which number_value converts exactly.
class timestamp_text {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::optional<std::string> text;

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) { return enter(); }
  bool on_object_end(std::size_t, boost::system::error_code&) { return leave(); }
  bool on_array_begin(boost::system::error_code&) { return enter(); }
  bool on_array_end(std::size_t, boost::system::error_code&) { return leave(); }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    wanted_ = depth_ == 1 && key_ == "timestamp";
    key_.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return value_done(); }
  bool on_number_part(json::string_view s, boost::system::error_code&) {
    if (wanted_) number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t, json::string_view s, boost::system::error_code&) { return number_done(s); }
  bool on_uint64(std::uint64_t, json::string_view s, boost::system::error_code&) { return number_done(s); }
  bool on_double(double, json::string_view s, boost::system::error_code&) { return number_done(s); }
  bool on_bool(bool, boost::system::error_code&) { return value_done(); }
  bool on_null(boost::system::error_code&) { return value_done(); }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  bool enter() {
    ++depth_;
    wanted_ = false;
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }
  bool value_done() {
    wanted_ = false;
    return true;
  }
  bool number_done(json::string_view s) {
    if (wanted_) {
      number_.append(s.data(), s.size());
      text = std::move(number_);  // a repeated key: the last one counts, as in the parsed document
    }
    number_.clear();
    return value_done();
  }

  int depth_ = 0;
  bool wanted_ = false;
  std::string key_, number_;
};

// The timestamp's exact value, when the body's top-level "timestamp" is a number.
std::optional<double> exact_timestamp(std::string_view body) {
  json::basic_parser<timestamp_text> p{json::parse_options{}};
  boost::system::error_code ec;
  p.write_some(false, body.data(), body.size(), ec);
  if (ec || !p.handler().text) return std::nullopt;
  return number_value(*p.handler().text);
}

void check_timestamp(const json::object& obj, std::string_view body, packet_body& out, validation_errors& errors) {
  const json::value* v = obj.if_contains("timestamp");
  if (!v) {
    errors.push_back(body_error("timestamp", "missing", "Field required", obj));
    return;
  }
  if (!v->is_number()) {
    errors.push_back(body_error("timestamp", "float_type", "Input should be a valid number", *v));
    return;
  }
  // A double's value is taken from its text (exact_timestamp), Boost.JSON's being off at times.
  const auto exact = v->is_double() ? exact_timestamp(body) : std::nullopt;
  const double d = exact ? *exact : v->to_number<double>();
  if (!std::isfinite(d)) {
    errors.push_back(body_error("timestamp", "finite_number", "Input should be a finite number", nullptr));
    return;
  }
  out.timestamp = d;
}

}  // namespace

std::variant<packet_body, validation_errors> parse_packet_body_checked(std::string_view body) {
  json::stream_parser parser;
  boost::system::error_code ec;
  const std::size_t used = parser.write(body.data(), body.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return validation_errors{{"json_invalid",
                              json::array{"body", static_cast<std::uint64_t>(used)},
                              "JSON decode error",
                              json::object{},
                              {{"error", ec.message()}}}};
  }
  json::value doc = parser.release();
  if (!doc.is_object()) {
    return validation_errors{body_error(
        "", "model_attributes_type", "Input should be a valid dictionary or object to extract fields from", doc)};
  }
  const json::object& obj = doc.get_object();
  packet_body out;
  validation_errors errors;
  check_sequence(obj, out, errors);
  check_data(obj, out, errors);
  check_timestamp(obj, body, out, errors);
  if (!errors.empty()) return errors;
  return out;
}

namespace {

// The common case in one pass and no document: a top-level object whose values are all scalars, with
// "sequence" a non-negative int64 within max_sequence, "data" a string and "timestamp" a number that
// converts to a finite double, each once. Anything else (an error to report, a float sequence, a nested
// value, a repeated key) makes the handler give up, and parse_packet_body takes the checked path, which
// gives the same packet or the errors. The fuzz target packet_json checks that both paths agree.
class packet_fields {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  packet_body packet;
  bool complete() const { return seen_ == all_; }

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) { return !started_ && (started_ = true); }
  bool on_object_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code&) { return false; }
  bool on_array_end(std::size_t, boost::system::error_code&) { return false; }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    field_ = key_ == "sequence" ? sequence_bit : key_ == "data" ? data_bit : key_ == "timestamp" ? timestamp_bit : 0;
    key_.clear();
    if (seen_ & field_) return false;  // a repeated field
    seen_ |= field_;
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, boost::system::error_code&) {
    if (field_ == data_bit) packet.data.append(s.data(), s.size());
    return field_ == 0 || field_ == data_bit;
  }
  bool on_string(json::string_view s, std::size_t, boost::system::error_code&) {
    if (field_ == data_bit) packet.data.append(s.data(), s.size());
    return field_ == 0 || field_ == data_bit;
  }
  bool on_number_part(json::string_view s, boost::system::error_code&) {
    if (field_ == timestamp_bit) number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t v, json::string_view, boost::system::error_code&) {
    if (field_ == sequence_bit) {
      packet.sequence = v;
      return v >= 0 && v <= max_sequence;
    }
    if (field_ == timestamp_bit) packet.timestamp = static_cast<double>(v);  // as the checked path converts
    return field_ != data_bit;
  }
  bool on_uint64(std::uint64_t v, json::string_view, boost::system::error_code&) {
    if (field_ == timestamp_bit) packet.timestamp = static_cast<double>(v);
    return field_ == 0 || field_ == timestamp_bit;
  }
  bool on_double(double, json::string_view s, boost::system::error_code&) {
    return field_ == 0 || (field_ == timestamp_bit && timestamp(s));
  }
  bool on_bool(bool, boost::system::error_code&) { return field_ == 0; }
  bool on_null(boost::system::error_code&) { return field_ == 0; }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return false; }
  bool on_comment(json::string_view, boost::system::error_code&) { return false; }

 private:
  static constexpr unsigned sequence_bit = 1, data_bit = 2, timestamp_bit = 4, all_ = 7;

  // The number's text converted exactly (Boost.JSON 1.81 may be off; see timestamp_text).
  bool timestamp(json::string_view last) {
    number_.append(last.data(), last.size());
    const auto value = number_value(number_);
    if (!value || !std::isfinite(*value)) return false;
    packet.timestamp = *value;
    return true;
  }

  bool started_ = false;
  unsigned seen_ = 0;
  unsigned field_ = 0;
  std::string key_, number_;
};

}  // namespace

std::variant<packet_body, validation_errors> parse_packet_body(std::string_view body) {
  json::basic_parser<packet_fields> p{json::parse_options{}};
  boost::system::error_code ec;
  const std::size_t used = p.write_some(false, body.data(), body.size(), ec);
  if (!ec && used == body.size() && p.done() && p.handler().complete()) return std::move(p.handler().packet);
  return parse_packet_body_checked(body);
}

std::variant<media_declaration, validation_errors> parse_declaration_body(std::string_view body) {
  boost::system::error_code ec;
  json::stream_parser parser;
  const std::size_t used = parser.write(body.data(), body.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return validation_errors{{"json_invalid", json::array{"body", static_cast<std::uint64_t>(used)},
                              "JSON decode error", json::object{}, {{"error", ec.message()}}}};
  }
  json::value doc = parser.release();
  if (!doc.is_object())
    return validation_errors{body_error("", "model_attributes_type",
                                        "Input should be a valid dictionary or object to extract fields from", doc)};
  const json::value* media = doc.get_object().if_contains("media");
  if (!media) return validation_errors{body_error("media", "missing", "Field required", doc)};
  if (!media->is_object())
    return validation_errors{
        {"model_attributes_type", json::array{"body", "media"},
         "Input should be a valid dictionary or object to extract fields from", *media, {}}};
  const json::object& m = media->get_object();
  validation_errors errors;
  media_declaration out;
  const auto field_error = [&](std::string_view field, std::string type, std::string msg, json::value input,
                               json::object ctx = {}) {
    errors.push_back({std::move(type), json::array{"body", "media", json::string_view(field.data(), field.size())},
                      std::move(msg), std::move(input), std::move(ctx)});
  };
  constexpr std::string_view formats =
      "'pcmu/8000', 'pcma/8000', 'l16/<rate>' (8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000) or "
      "'none'";
  if (const json::value* f = m.if_contains("format"); !f) {
    field_error("format", "missing", "Field required", m);
  } else if (!f->is_string()) {
    field_error("format", "string_type", "Input should be a valid string", *f);
  } else if (auto parsed = media::parse_media_format(std::string_view(f->get_string()))) {
    out.format = media::to_string(*parsed);
  } else {
    field_error("format", "enum", "Input should be " + std::string(formats), *f,
                {{"expected", json::string_view(formats.data(), formats.size())}});
  }
  if (const json::value* ms = m.if_contains("packet_ms")) {
    const bool whole = ms->is_int64() || ms->is_uint64() ||
                       (ms->is_double() && std::isfinite(ms->get_double()) &&
                        ms->get_double() == std::floor(ms->get_double()));
    const double value = ms->is_number() ? ms->to_number<double>() : 0;
    if (!ms->is_number() || !whole) {
      field_error("packet_ms", "int_type", "Input should be a valid integer", *ms);
    } else if (value < 1) {
      field_error("packet_ms", "greater_than_equal", "Input should be greater than or equal to 1", *ms, {{"ge", 1}});
    } else if (value > static_cast<double>(media::max_packet_ms)) {
      field_error("packet_ms", "less_than_equal",
                  "Input should be less than or equal to " + std::to_string(media::max_packet_ms), *ms,
                  {{"le", media::max_packet_ms}});
    } else {
      out.packet_ms = static_cast<std::int64_t>(value);
    }
  }
  if (!errors.empty()) return errors;
  return out;
}

validation_error undecodable_data(media::media_format format, std::string_view data,
                                  const boost::system::error_code& why) {
  const std::string name = media::to_string(format);
  return {"value_error",
          json::array{"body", "data"},
          "Value error, data is not " + name + " audio: " + why.message(),
          sanitized(data),
          {{"media", name}, {"error", why.message()}}};
}

std::optional<validation_error> check_call_id(std::string_view call_id) {
  if (is_valid_call_id(call_id)) return std::nullopt;
  const json::string_view pattern(call_id_pattern.data(), call_id_pattern.size());
  return validation_error{"string_pattern_mismatch",
                          {"path", "call_id"},
                          "String should match pattern '" + std::string(call_id_pattern) + "'",
                          sanitized(call_id),
                          {{"pattern", pattern}}};
}

validation_error invalid_query(std::string_view name, std::string_view type, std::string_view msg,
                               std::string_view input, json::object ctx) {
  return {std::string(type), json::array{"query", json::string_view(name.data(), name.size())},
          std::string(msg), sanitized(input), std::move(ctx)};
}

std::string validation_body(const validation_errors& errors) {
  json::array detail;
  for (const auto& e : errors) {
    json::object item{{"type", e.type}, {"loc", e.loc}, {"msg", e.msg}, {"input", e.input}};
    if (!e.ctx.empty()) item["ctx"] = e.ctx;
    detail.push_back(std::move(item));
  }
  return to_json_text(json::object{{"detail", std::move(detail)}});
}

std::string error_body(std::string_view detail, std::string_view code) {
  return to_json_text(json::object{{"detail", json::string_view(detail.data(), detail.size())},
                                      {"error", json::string_view(code.data(), code.size())}});
}

namespace {
json::value optional_number(const std::optional<double>& v) { return v ? json::value(*v) : json::value(nullptr); }
}  // namespace

json::object to_json(const call_summary& c, media::media_format default_media) {
  json::value duration = nullptr;
  // Sender timestamps are doubles: round the difference to microseconds, not to float noise.
  if (c.first_timestamp && c.last_timestamp)
    duration = std::round((*c.last_timestamp - *c.first_timestamp) * 1e6) / 1e6;
  json::object out{
      {"id", c.id},
      {"state", to_string(c.state)},
      {"last_sequence", c.last_sequence},
      {"expected_sequence", c.expected_sequence},
      {"packets_received", c.packets_received},
      {"duplicate_packets", c.duplicate_packets},
      {"out_of_order_packets", c.out_of_order_packets},
      {"gaps_opened", c.gaps_opened},
      {"missing_packets", c.missing_packets},
      {"missing_ranges", c.missing_ranges},
      {"first_timestamp", optional_number(c.first_timestamp)},
      {"last_timestamp", optional_number(c.last_timestamp)},
      {"duration", duration},
      {"created_at", c.created_at},
      {"updated_at", c.updated_at},
      {"state_changed_at", c.state_changed_at},
      {"last_packet_at", optional_number(c.last_packet_at)},
      {"late_packets", c.late_packets},
      {"lost_packets", c.lost_packets},
      {"lost_ranges", c.lost_ranges},
      {"ended_at", optional_number(c.ended_at)},
      {"end_reason", c.end_reason ? json::value(*c.end_reason) : json::value(nullptr)},
      {"track", c.track ? json::value(*c.track) : json::value(nullptr)},
      {"primary_call", c.primary_call ? json::value(*c.primary_call) : json::value(nullptr)},
      {"ai",
       {{"status", ai_status(c)},
        {"next_segment", c.next_segment},
        {"jobs",
         {{"total", c.jobs_total},
          {"outstanding", c.jobs_total - c.jobs_succeeded - c.jobs_dead},
          {"succeeded", c.jobs_succeeded},
          {"dead", c.jobs_dead}}}}},
  };
  const call_media_format media = effective_media(c.media, default_media);
  out["media"] = {{"format", media::to_string(media.format)},
                  {"packet_ms", media.packet_ms},
                  {"declared", media.declared}};
  if (!c.transitions.empty()) {
    json::array transitions;
    for (const auto& t : c.transitions)
      transitions.push_back({{"from", t.from ? json::value(to_string(*t.from)) : json::value(nullptr)},
                             {"to", to_string(t.to)},
                             {"reason", t.reason},
                             {"at", t.at}});
    out["transitions"] = std::move(transitions);
  }
  return out;
}

std::optional<json::object> tracks_json(const call_summary& c) {
  if (!c.track && c.tracks.empty()) return std::nullopt;
  json::object out;
  if (c.track) out[*c.track] = c.id;
  for (const auto& [name, id] : c.tracks) out[name] = id;
  return out;
}

namespace {
// The event's data as stored, parsed; nullopt when it is not JSON.
std::optional<json::value> event_data(const call_event& e) {
  boost::system::error_code ec;
  json::value v = json::parse(e.data, ec);
  if (ec) return std::nullopt;
  return v;
}
}  // namespace

json::object to_json(const call_event& e) {
  auto data = event_data(e);
  json::value shown;
  if (data && data->is_object())
    shown = std::move(*data);
  else
    shown = json::object{{"value", data ? std::move(*data) : json::value(sanitized(e.data))}};
  return {{"id", e.id},
          {"kind", e.kind},
          {"at", e.at},
          {"sequence", e.sequence ? json::value(*e.sequence) : json::value(nullptr)},
          {"data", std::move(shown)}};
}

std::optional<std::string> dtmf_digit(const call_event& e) {
  if (e.kind != "dtmf") return std::nullopt;
  auto data = event_data(e);
  if (!data || !data->is_object()) return std::nullopt;
  const json::value* digit = data->get_object().if_contains("digit");
  if (!digit || !digit->is_string()) return std::nullopt;
  return std::string(digit->get_string());
}

std::string_view ai_status(const call_summary& c) {
  if (c.jobs_dead > 0) return "failed";
  if (c.jobs_total - c.jobs_succeeded - c.jobs_dead > 0) return "processing";
  if (c.next_segment <= c.last_sequence) return "pending";
  if (c.jobs_succeeded > 0) return "completed";
  return "none";
}

json::object to_json(const job& j) {
  return {
      {"id", j.id},
      {"call_id", j.call_id},
      {"first_sequence", j.first_sequence},
      {"last_sequence", j.last_sequence},
      {"state", to_string(j.state)},
      {"attempts", j.attempts},
      {"max_attempts", j.max_attempts},
      {"run_at", j.run_at},
      {"lease_owner", j.lease_owner ? json::value(*j.lease_owner) : json::value(nullptr)},
      {"lease_expires_at", optional_number(j.lease_expires_at)},
      {"last_error", j.last_error ? json::value(*j.last_error) : json::value(nullptr)},
      {"created_at", j.created_at},
      {"updated_at", j.updated_at},
      {"started_at", optional_number(j.started_at)},
      {"finished_at", optional_number(j.finished_at)},
  };
}

namespace {

// Where sequences first..last lie in the call's audio, in seconds (null for a call without audio).
std::pair<json::value, json::value> audio_span(std::int64_t first, std::int64_t last, const call_media_format& media) {
  if (!media.format.carries_audio()) return {nullptr, nullptr};
  return {static_cast<double>((first - 1) * media.packet_ms) / 1000.0,
          static_cast<double>(last * media.packet_ms) / 1000.0};
}

// What a final and a partial segment both show: its job, its packets, their span of audio, its text.
json::object segment_object(std::int64_t job_id, std::int64_t first, std::int64_t last, const std::string& text,
                            bool partial, const call_media_format& media) {
  auto [start, end] = audio_span(first, last, media);
  return {{"job_id", job_id}, {"first_sequence", first}, {"last_sequence", last}, {"start", start},
          {"end", end},       {"text", text},            {"partial", partial}};
}

}  // namespace

json::object to_json(const transcript_segment& s, const call_media_format& media) {
  auto o = segment_object(s.job_id, s.first_sequence, s.last_sequence, s.text, false, media);
  o.emplace("engine", s.engine);
  o.emplace("latency_ms", s.latency_ms);
  o.emplace("created_at", s.created_at);
  return o;
}

json::object to_json(const partial_segment& s, const call_media_format& media) {
  auto o = segment_object(s.job_id, s.first_sequence, s.last_sequence, s.text, true, media);
  o.emplace("heard_s", static_cast<double>(s.heard_ms) / 1000.0);
  o.emplace("updated_at", s.updated_at);
  return o;
}

json::object transcript_json(const call_summary& call, const std::vector<transcript_segment>& segments,
                             const std::vector<partial_segment>& partials, const call_media_format& media) {
  const auto join = [](std::string& text, const std::string& words) {
    if (words.empty()) return;
    if (!text.empty()) text += ' ';
    text += words;
  };
  json::array finals, heard;
  std::string text, current;
  // `current_text`: results and partials in sequence order, what a live view shows.
  auto p = partials.begin();
  for (const auto& seg : segments) {
    for (; p != partials.end() && p->first_sequence < seg.first_sequence; ++p) join(current, p->text);
    join(text, seg.text);
    join(current, seg.text);
    finals.push_back(to_json(seg, media));
  }
  for (; p != partials.end(); ++p) join(current, p->text);
  for (const auto& part : partials) heard.push_back(to_json(part, media));
  return {{"call_id", call.id},
          {"ai_status", ai_status(call)},
          {"text", text},
          {"segments", std::move(finals)},
          {"partials", std::move(heard)},
          {"current_text", current}};
}

json::object to_json(const stored_packet& p) {
  return {{"id", p.id},
          {"sequence", p.sequence},
          {"data", p.data},
          {"timestamp", p.timestamp},
          {"received_at", p.received_at}};
}

json::object to_json(const seq_range& r) {
  return {{"first", r.first}, {"last", r.last}, {"count", r.size()}};
}

json::object to_json(const ingest_outcome& o, std::string_view call_id, std::int64_t sequence) {
  return {
      {"message", "Packet accepted"},
      {"call_id", json::string_view(call_id.data(), call_id.size())},
      {"sequence", sequence},
      {"status", o.duplicate ? "duplicate" : "stored"},
      {"duplicate", o.duplicate},
      {"arrival", to_string(o.kind)},
      {"expected_sequence", o.expected},
      {"last_sequence", o.last_sequence},
      {"missing_packets", o.missing},
  };
}

std::string ingest_body(const ingest_outcome& o, std::string_view call_id, std::int64_t sequence) {
  std::string out;
  out.reserve(256);
  const auto number = [&out](const char* key, std::int64_t n) {
    out += key;
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, static_cast<std::size_t>(end - buf));
  };
  out += R"({"message":"Packet accepted","call_id":)";
  append_json_string(out, call_id);
  number(R"(,"sequence":)", sequence);
  out += o.duplicate ? R"(,"status":"duplicate","duplicate":true,"arrival":)" : R"(,"status":"stored","duplicate":false,"arrival":)";
  append_json_string(out, to_string(o.kind));
  number(R"(,"expected_sequence":)", o.expected);
  number(R"(,"last_sequence":)", o.last_sequence);
  number(R"(,"missing_packets":)", o.missing);
  out += '}';
  return out;
}

json::object to_json(const job_counts& c, double now) {
  return {{"ready", c.queued - c.retrying},
          {"retrying", c.retrying},
          {"queued", c.queued},
          {"running", c.running},
          {"succeeded", c.succeeded},
          {"dead", c.dead},
          {"oldest_due_s", c.oldest_due_at ? json::value(std::max(0.0, now - *c.oldest_due_at)) : json::value(nullptr)}};
}

json::object to_json(const node_presence& n, bool self) {
  return {{"name", n.name},
          {"self", self},
          {"connected", n.connected_since.has_value()},
          {"connected_since", n.connected_since ? json::value(*n.connected_since) : json::value(nullptr)},
          {"address", n.address ? json::value(*n.address) : json::value(nullptr)},
          {"running_jobs", n.running_jobs}};
}

}  // namespace aipbx::http
