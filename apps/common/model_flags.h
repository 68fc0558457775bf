// The model flags shared by hpa_model and hpa_bench: --model, --head, --buffering,
// --classes, --dtype. They are checked here, before anything is built, so that a typo is a
// usage error (exit 2) whose one line lists what is accepted, instead of an error from
// deep inside a constructor. Flag parsing itself is apps/common/args.h.
#pragma once

#include <string>

#include "apps/common/args.h"
#include "models/classifier.h"
#include "tensor/dtype.h"

namespace hpa::cli {

inline std::string known_models() {
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  return known;
}

struct ModelFlags {
  std::string name;
  ModelOptions options;
};

// Reads --model (required), --head (gap|acp), --buffering ("1024:0.5,..."; "none") and
// --classes. An empty `default_head` makes --head required, `default_classes` 0 --classes.
inline ModelFlags read_model_flags(Args& args, const std::string& default_head, int default_classes) {
  ModelFlags f;
  f.name = args.required("model");
  bool known = false;
  for (const auto& n : model_names()) known = known || n == f.name;
  if (!known) throw usage_error("unknown model '", f.name, "' (known: ", known_models(), ")");

  f.options.head = default_head.empty() ? args.required("head") : args.str("head", default_head);
  if (f.options.head != "gap" && f.options.head != "acp")
    throw usage_error("--head '", f.options.head, "' is unknown (known: gap, acp)");
  const std::string buffering = args.str("buffering", "none");
  try {
    f.options.buffering = parse_buffering(buffering);
  } catch (const std::exception& e) {
    throw usage_error("--buffering: ", e.what());
  }
  if (f.options.head == "gap" && !f.options.buffering.empty())
    throw usage_error("--buffering '", buffering, "' needs --head acp (the gap head is one linear layer)");

  if (default_classes <= 0 && !args.has("classes")) throw usage_error("--classes is required");
  const int64_t classes = args.integer("classes", default_classes);
  if (classes <= 0 || classes > (1 << 20))
    throw usage_error("--classes must be in [1, 1048576], got ", classes);
  f.options.classes = static_cast<int>(classes);
  return f;
}

// --dtype f32|f64.
inline DType read_dtype_flag(Args& args, const std::string& fallback) {
  const std::string s = args.str("dtype", fallback);
  if (s == "f32") return DType::f32;
  if (s == "f64") return DType::f64;
  throw usage_error("--dtype '", s, "' is unknown (known: f32, f64)");
}

}  // namespace hpa::cli
