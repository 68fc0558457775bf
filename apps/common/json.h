// A minimal JSON writer for the --json output of hpa_model and hpa_bench: one object per
// run, built field by field in insertion order. Strings are escaped per RFC 8259 (quote,
// backslash and every control character); numbers use the shortest form that reads back
// to the same double (std::to_chars), and a non-finite number is written as null, since
// JSON has no NaN or Infinity.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace hpa::cli {

inline std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "null";
}

inline std::string json_array(const std::vector<std::string>& json_items) {
  std::string out = "[";
  for (size_t i = 0; i < json_items.size(); ++i) out += (i ? ", " : "") + json_items[i];
  return out + "]";
}

inline std::string json_int_array(const std::vector<int64_t>& values) {
  std::vector<std::string> items;
  for (const int64_t v : values) items.push_back(std::to_string(v));
  return json_array(items);
}

// {"key": value, ...} in the order the fields were added.
class JsonObject {
 public:
  JsonObject& str(const std::string& key, const std::string& value) { return raw(key, json_quote(value)); }
  JsonObject& num(const std::string& key, double value) { return raw(key, json_number(value)); }
  JsonObject& integer(const std::string& key, int64_t value) { return raw(key, std::to_string(value)); }
  JsonObject& boolean(const std::string& key, bool value) { return raw(key, value ? "true" : "false"); }
  // `json` must already be valid JSON (an array, a nested object).
  JsonObject& raw(const std::string& key, const std::string& json) {
    body_ += (body_.empty() ? "" : ", ") + json_quote(key) + ": " + json;
    return *this;
  }
  std::string dump() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

}  // namespace hpa::cli
