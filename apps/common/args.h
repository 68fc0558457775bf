// A small flag parser for the apps (hpa_data, hpa_model, hpa_bench): `--name value`,
// `--name=value` and boolean `--name`. Unknown flags, missing values and malformed numbers
// throw UsageError, which main() reports with the subcommand's usage and exit code 2.
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace hpa::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Joins message parts with a stream (not `"literal" + string`, on which GCC 12 warns falsely).
template <typename... Parts>
UsageError usage_error(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  return UsageError(message.str());
}

class Args {
 public:
  // argv[0] is the subcommand's name. `boolean_flags` take no value.
  Args(int argc, char** argv, std::set<std::string> boolean_flags = {})
      : booleans_(std::move(boolean_flags)) {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        help_ = true;
        continue;
      }
      if (arg.substr(0, 2) != "--" || arg.size() == 2) throw usage_error("unexpected argument '", arg, "'");
      arg.remove_prefix(2);
      const size_t eq = arg.find('=');
      std::string name(arg.substr(0, eq));
      if (booleans_.count(name)) {
        if (eq != std::string_view::npos) throw usage_error("--", name, " takes no value");
        values_[name].assign(1, '1');  // not = "1": GCC 12 warns falsely (-Wrestrict) on that
      } else if (eq != std::string_view::npos) {
        values_[name] = std::string(arg.substr(eq + 1));
      } else {
        if (i + 1 >= argc) throw usage_error("--", name, " needs a value");
        values_[name] = argv[++i];
      }
    }
  }

  bool help() const { return help_; }
  bool has(const std::string& name) { return take(name) != nullptr; }
  bool flag(const std::string& name) { return take(name) != nullptr; }

  std::string str(const std::string& name, const std::string& fallback) {
    const std::string* v = take(name);
    return v ? *v : fallback;
  }
  std::string required(const std::string& name) {
    const std::string* v = take(name);
    if (!v || v->empty()) throw usage_error("--", name, " is required");
    return *v;
  }
  int64_t integer(const std::string& name, int64_t fallback) {
    const std::string* v = take(name);
    if (!v) return fallback;
    int64_t out = 0;
    const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || ptr != v->data() + v->size())
      throw usage_error("--", name, " expects an integer, got '", *v, "'");
    return out;
  }
  uint64_t unsigned_integer(const std::string& name, uint64_t fallback) {
    const std::string* v = take(name);
    if (!v) return fallback;
    uint64_t out = 0;
    const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || ptr != v->data() + v->size())
      throw usage_error("--", name, " expects a non-negative integer, got '", *v, "'");
    return out;
  }
  double number(const std::string& name, double fallback) {
    const std::string* v = take(name);
    if (!v) return fallback;
    size_t used = 0;
    double out = 0;
    try {
      out = std::stod(*v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v->size() || v->empty()) throw usage_error("--", name, " expects a number, got '", *v, "'");
    return out;
  }

  // Call after reading every flag: any flag left unread is unknown to the subcommand.
  void finish() const {
    for (const auto& [name, value] : values_)
      if (!used_.count(name)) throw usage_error("unknown flag --", name);
  }

 private:
  const std::string* take(const std::string& name) {
    used_.insert(name);
    const auto it = values_.find(name);
    return it == values_.end() ? nullptr : &it->second;
  }

  std::set<std::string> booleans_;
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
  bool help_ = false;
};

}  // namespace hpa::cli
