// hpa::Error: the one exception type of the engine. Its message says what failed and
// where: the op, the shapes, and for library calls the statement, file:line and the
// library's own error string. Apps catch it at the top and print one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hpa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Builds a message from any streamable pieces: detail::concat("conv2d: got ", shape).
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

}  // namespace hpa

// HPA_CHECK(cond, pieces...): throws hpa::Error with the streamed pieces when cond fails.
// The pieces should name the op and the offending shapes, e.g.
//   HPA_CHECK(a.dim() == 2, "linear: input must be 2-D, got ", a.shape());
#define HPA_CHECK(cond, ...)                                          \
  do {                                                                \
    if (!(cond)) throw ::hpa::Error(::hpa::detail::concat(__VA_ARGS__)); \
  } while (0)

#define HPA_FAIL(...) throw ::hpa::Error(::hpa::detail::concat(__VA_ARGS__))
