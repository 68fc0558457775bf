// The data library's exception. data/ depends on nothing of the engine, so it cannot use
// hpa::Error; DataError plays the same role: every message names the file (and the row or
// sample when there is one) so a bad dataset can be fixed without a debugger.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace hpa::data {

class DataError : public std::runtime_error {
 public:
  explicit DataError(const std::string& message) : std::runtime_error(message) {}
};

// Builds a message from any streamable parts: throw data_error("file ", path, ": row ", row, ...).
template <typename... Parts>
DataError data_error(Parts&&... parts) {
  std::ostringstream message;
  (message << ... << std::forward<Parts>(parts));
  return DataError(message.str());
}

}  // namespace hpa::data
