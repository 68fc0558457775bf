// safetensors reading and writing (see safetensors.h for the format and the rules).
//
// Reading is two steps: the header is parsed into a small JSON tree by our own parser
// (hostile input: every byte is bounds-checked, strings are validated as UTF-8, nesting
// is limited, numbers are kept as text until a field needs one), then interpreted and
// validated against the real size of the data section. Only then is anything allocated,
// so no header can make us allocate more than the file holds. Files are read with
// positioned reads straight into each tensor's storage (no second copy of the file).
#include "tensor/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_set>

#include "kernels/cast.h"
#include "tensor/file_io.h"

namespace hpa {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O copies raw bytes and assumes a little-endian host");

namespace {

constexpr const char* kLoadOp = "load_safetensors";
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr int kMaxDepth = 32;
// No field of the format needs a longer array (shape has at most a few dimensions,
// data_offsets two); the cap bounds the memory a hostile header can make the tree take.
constexpr size_t kMaxArrayItems = 64;
constexpr const char* kMetadataKey = "__metadata__";

template <class... Parts>
[[noreturn]] void fail(const char* op, const std::string& name, const Parts&... parts) {
  HPA_FAIL(op, ": ", name, ": ", parts...);
}

// Printable, bounded form of a string taken from the file, for messages.
std::string printable(std::string_view s, size_t limit = 80) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > limit) out += "...";
  return out;
}

// ---- UTF-8 ----------------------------------------------------------------------------------

// Length of the UTF-8 sequence starting at s[i] (a lead byte >= 0x80), or 0 with `why` set
// when it is invalid: a bad lead or continuation byte, a truncated sequence, an overlong
// form, a surrogate or a code point above U+10FFFF.
size_t utf8_sequence_length(std::string_view s, size_t i, const char** why) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  uint32_t cp = 0, min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    *why = "invalid UTF-8 lead byte";
    return 0;
  }
  if (s.size() - i < len) {
    *why = "truncated UTF-8 sequence";
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      *why = "invalid UTF-8 continuation byte";
      return 0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *why = "invalid UTF-8 sequence (overlong, surrogate or above U+10FFFF)";
    return 0;
  }
  return len;
}

// ---- JSON -----------------------------------------------------------------------------------

struct Json {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  std::string text;               // a string's value, or a number's literal
  std::vector<Json> items;        // an array's elements, or an object's values
  std::vector<std::string> keys;  // an object's keys (keys[i] names items[i]), in file order
  size_t pos = 0;                 // byte offset in the header, for messages
};

const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::null:
      return "null";
    case Json::Kind::boolean:
      return "a boolean";
    case Json::Kind::number:
      return "a number";
    case Json::Kind::string:
      return "a string";
    case Json::Kind::array:
      return "an array";
    case Json::Kind::object:
      return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  Json parse_document() {
    skip_space();
    Json v = parse_value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the top-level value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail(kLoadOp, name_, "header JSON error at byte ", pos_, " of ", s_.size(), ": ", what);
  }

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return s_[pos_]; }

  void expect_literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) error("invalid literal (expected " + std::string(word) + ")");
    pos_ += word.size();
  }

  Json parse_value(int depth) {
    if (depth >= kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (at_end()) error("unexpected end of the header, expected a value");
    Json v;
    v.pos = pos_;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Kind::object;
      parse_object(v, depth);
    } else if (c == '[') {
      v.kind = Json::Kind::array;
      parse_array(v, depth);
    } else if (c == '"') {
      v.kind = Json::Kind::string;
      v.text = parse_string();
    } else if (c == 't') {
      expect_literal("true");
      v.kind = Json::Kind::boolean;
      v.boolean = true;
    } else if (c == 'f') {
      expect_literal("false");
      v.kind = Json::Kind::boolean;
    } else if (c == 'n') {
      expect_literal("null");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Kind::number;
      v.text = parse_number();
    } else {
      error("unexpected character '" + printable(std::string_view(&s_[pos_], 1)) + "', expected a value");
    }
    return v;
  }

  void parse_object(Json& v, int depth) {
    ++pos_;  // '{'
    std::unordered_set<std::string> seen;
    skip_space();
    if (!at_end() && peek() == '}') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      if (at_end() || peek() != '"') error("expected a quoted key");
      const size_t key_pos = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        pos_ = key_pos;
        error("duplicate key '" + printable(key) + "'");
      }
      skip_space();
      if (at_end() || peek() != ':') error("expected ':' after key '" + printable(key) + "'");
      ++pos_;
      skip_space();
      Json member = parse_value(depth + 1);
      v.keys.push_back(std::move(key));
      v.items.push_back(std::move(member));
      skip_space();
      if (at_end()) error("unterminated object");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return;
      }
      error("expected ',' or '}' in an object");
    }
  }

  void parse_array(Json& v, int depth) {
    ++pos_;  // '['
    skip_space();
    if (!at_end() && peek() == ']') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      if (v.items.size() == kMaxArrayItems)
        error("array longer than " + std::to_string(kMaxArrayItems) + " items");
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      if (at_end()) error("unterminated array");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return;
      }
      error("expected ',' or ']' in an array");
    }
  }

  // JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; kept as text.
  std::string parse_number() {
    const size_t start = pos_;
    auto digits = [&]() {
      const size_t d = pos_;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
      return pos_ - d;
    };
    if (peek() == '-') ++pos_;
    if (at_end()) error("truncated number");
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && peek() >= '0' && peek() <= '9') error("leading zero in a number");
    } else if (digits() == 0) {
      error("invalid number");
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (digits() == 0) error("invalid number: no digit after '.'");
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (digits() == 0) error("invalid number: no digit in the exponent");
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  unsigned hex4() {
    if (s_.size() - pos_ < 4) error("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        error("invalid hex digit in a \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Copies the (validated) UTF-8 sequence starting at pos_.
  void copy_utf8_sequence(std::string& out) {
    const char* why = nullptr;
    const size_t len = utf8_sequence_length(s_, pos_, &why);
    if (len == 0) error(why);
    out.append(s_.substr(pos_, len));
    pos_ += len;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (at_end()) error("unterminated string");
      const auto c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("unescaped control character in a string");
      if (c >= 0x80) {
        copy_utf8_sequence(out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") error("unpaired high surrogate in a \\u escape");
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) error("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          error("invalid escape '\\" + printable(std::string_view(&e, 1)) + "'");
      }
    }
  }

  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;
};

// ---- dtypes ---------------------------------------------------------------------------------

struct FileType {
  const char* name;
  size_t size;
  DType loads_as;
};

constexpr FileType kReadable[] = {
    {"F32", 4, DType::f32}, {"F64", 8, DType::f64}, {"I32", 4, DType::i32}, {"I64", 8, DType::i64},
    {"U8", 1, DType::u8},   {"BOOL", 1, DType::u8}, {"F16", 2, DType::f32}, {"BF16", 2, DType::f32},
};
// Known to the format but not to the engine.
constexpr const char* kUnsupported[] = {"I8",      "I16",     "U16",         "U32",        "U64",
                                        "F8_E4M3", "F8_E5M2", "F8_E8M0",     "F4",         "F6_E2M3",
                                        "F6_E3M2", "C64",     "F8_E4M3FNUZ", "F8_E5M2FNUZ"};
constexpr const char* kReadableList = "F32, F64, I32, I64, U8, BOOL, F16, BF16";

const FileType* find_type(const std::string& name) {
  for (const FileType& t : kReadable)
    if (name == t.name) return &t;
  return nullptr;
}

const char* file_dtype_of(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::boolean:
      return "BOOL";
    default:
      return nullptr;
  }
}

// ---- header interpretation ------------------------------------------------------------------

// A non-negative integer that fits in uint64, from a JSON number; nullopt explains nothing,
// the caller words the error.
std::optional<uint64_t> as_uint(const Json& v) {
  if (v.kind != Json::Kind::number) return std::nullopt;
  uint64_t out = 0;
  for (char c : v.text) {
    if (c < '0' || c > '9') return std::nullopt;  // sign, fraction or exponent
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (out > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    out = out * 10 + d;
  }
  return out;
}

std::string describe_number_problem(const Json& v) {
  if (v.kind != Json::Kind::number) return std::string("expected an integer, got ") + kind_name(v.kind);
  if (!v.text.empty() && v.text[0] == '-') return "negative value " + printable(v.text);
  if (v.text.find_first_of(".eE") != std::string::npos) return "non-integer value " + printable(v.text);
  return "value " + printable(v.text) + " does not fit in 64 bits";
}

SafetensorsHeader interpret_header(const Json& root, const std::string& name, uint64_t data_size) {
  if (root.kind != Json::Kind::object)
    fail(kLoadOp, name, "the header must be a JSON object, got ", kind_name(root.kind));
  SafetensorsHeader h;
  for (size_t m = 0; m < root.keys.size(); ++m) {
    const std::string& key = root.keys[m];
    const Json& value = root.items[m];
    if (key == kMetadataKey) {
      if (value.kind != Json::Kind::object)
        fail(kLoadOp, name, "'__metadata__' must be an object of strings, got ", kind_name(value.kind));
      for (size_t j = 0; j < value.keys.size(); ++j) {
        const std::string& mk = value.keys[j];
        const Json& mv = value.items[j];
        if (mv.kind != Json::Kind::string)
          fail(kLoadOp, name, "metadata key '", printable(mk), "': value must be a string, got ",
               kind_name(mv.kind));
        h.metadata.emplace(mk, mv.text);
      }
      continue;
    }
    const std::string k = printable(key);
    if (value.kind != Json::Kind::object)
      fail(kLoadOp, name, "key '", k, "': expected an object with dtype, shape, data_offsets, got ",
           kind_name(value.kind));
    const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (size_t j = 0; j < value.keys.size(); ++j) {
      const std::string& field = value.keys[j];
      const Json& fv = value.items[j];
      if (field == "dtype")
        dtype = &fv;
      else if (field == "shape")
        shape = &fv;
      else if (field == "data_offsets")
        offsets = &fv;
      else
        fail(kLoadOp, name, "key '", k, "': unknown field '", printable(field),
             "' (expected dtype, shape, data_offsets)");
    }
    if (!dtype || !shape || !offsets)
      fail(kLoadOp, name, "key '", k, "': missing field '",
           !dtype   ? "dtype"
           : !shape ? "shape"
                    : "data_offsets",
           "'");

    SafetensorsEntry e;
    e.name = key;
    if (dtype->kind != Json::Kind::string)
      fail(kLoadOp, name, "key '", k, "': dtype must be a string, got ", kind_name(dtype->kind));
    e.dtype = dtype->text;
    const FileType* type = find_type(e.dtype);
    if (!type) {
      const bool known = std::any_of(std::begin(kUnsupported), std::end(kUnsupported),
                                     [&](const char* u) { return e.dtype == u; });
      fail(kLoadOp, name, "key '", k, "': ", known ? "unsupported" : "unknown", " dtype '",
           printable(e.dtype), "' (supported: ", kReadableList, ")");
    }

    if (shape->kind != Json::Kind::array)
      fail(kLoadOp, name, "key '", k, "': shape must be an array, got ", kind_name(shape->kind));
    if (shape->items.size() > static_cast<size_t>(Shape::kMaxDims))
      fail(kLoadOp, name, "key '", k, "': ", shape->items.size(), " dimensions, the engine supports at most ",
           Shape::kMaxDims);
    std::vector<uint64_t> dims;
    for (size_t i = 0; i < shape->items.size(); ++i) {
      const std::optional<uint64_t> d = as_uint(shape->items[i]);
      if (!d)
        fail(kLoadOp, name, "key '", k, "': shape dimension ", i, ": ",
             describe_number_problem(shape->items[i]));
      dims.push_back(*d);
    }
    std::string shape_text = "[";
    for (size_t i = 0; i < dims.size(); ++i) {
      if (i) shape_text += ", ";
      shape_text += std::to_string(dims[i]);
    }
    shape_text += "]";
    // The product of the non-zero dimensions must fit in int64 even for an empty tensor,
    // so that no element count computed from this shape later can overflow.
    constexpr uint64_t kMaxCount = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t product = 1;
    bool has_zero = false;
    for (uint64_t d : dims) {
      if (d == 0) {
        has_zero = true;
        continue;
      }
      if (product > kMaxCount / d)
        fail(kLoadOp, name, "key '", k, "': shape ", shape_text, ": the element count overflows 64 bits");
      product *= d;
    }
    const uint64_t count = has_zero ? 0 : product;
    if (count > data_size / type->size)
      fail(kLoadOp, name, "key '", k, "': shape ", shape_text, " of ", e.dtype, " needs more bytes than the ",
           data_size, "-byte data section holds");
    const uint64_t bytes = count * type->size;
    for (uint64_t d : dims) e.shape.push_back(static_cast<int64_t>(d));  // each <= kMaxCount

    if (offsets->kind != Json::Kind::array || offsets->items.size() != 2)
      fail(kLoadOp, name, "key '", k, "': data_offsets must be an array [begin, end]");
    for (size_t i = 0; i < 2; ++i)
      if (!as_uint(offsets->items[i]))
        fail(kLoadOp, name, "key '", k, "': data_offsets[", i,
             "]: ", describe_number_problem(offsets->items[i]));
    e.begin = *as_uint(offsets->items[0]);
    e.end = *as_uint(offsets->items[1]);
    if (e.begin > e.end)
      fail(kLoadOp, name, "key '", k, "': data_offsets [", e.begin, ", ", e.end, "] are reversed");
    if (e.end > data_size)
      fail(kLoadOp, name, "key '", k, "': data_offsets [", e.begin, ", ", e.end,
           "] reach beyond the data section (", data_size, " bytes)");
    if (e.end - e.begin != bytes)
      fail(kLoadOp, name, "key '", k, "': data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin,
           " bytes but ", e.dtype, shape_text, " needs ", bytes);
    h.entries.push_back(std::move(e));
  }

  // The tensors must tile the data section: no overlap, no gap, nothing after the last.
  std::vector<size_t> order(h.entries.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &ea = h.entries[a], &eb = h.entries[b];
    return ea.begin != eb.begin ? ea.begin < eb.begin : ea.end < eb.end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (size_t i : order) {
    const SafetensorsEntry& e = h.entries[i];
    if (e.begin < covered)
      fail(kLoadOp, name, "key '", printable(e.name), "': data_offsets [", e.begin, ", ", e.end,
           "] overlap those of key '", printable(previous->name), "' [", previous->begin, ", ", previous->end,
           "]");
    if (e.begin > covered)
      fail(kLoadOp, name, "key '", printable(e.name), "': data_offsets [", e.begin, ", ", e.end,
           "] leave a gap of ", e.begin - covered, " bytes after byte ", covered, " of the data section");
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    fail(kLoadOp, name, data_size - covered, " trailing bytes after the last tensor (the data section holds ",
         data_size, " bytes, the tensors cover ", covered, ")");
  return h;
}

// Reads the length prefix and the header through `read` and validates them.
SafetensorsHeader read_header(uint64_t total, const std::string& name,
                              const std::function<void(uint64_t, void*, size_t)>& read) {
  if (total < 8) fail(kLoadOp, name, "too short to be a safetensors file (", total, " bytes)");
  uint8_t prefix[8];
  read(0, prefix, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > total - 8)
    fail(kLoadOp, name, "header length ", n, " reaches beyond the end of the file (", total,
         " bytes): truncated or not a safetensors file");
  if (n > kMaxHeaderBytes)
    fail(kLoadOp, name, "header length ", n, " exceeds the limit of ", kMaxHeaderBytes);
  std::string text(static_cast<size_t>(n), '\0');
  read(8, text.data(), text.size());
  const Json root = JsonParser(text, name).parse_document();
  SafetensorsHeader h = interpret_header(root, name, total - 8 - n);
  h.data_start = 8 + n;
  return h;
}

// Builds the tensors of a validated header, fetching each one's bytes through `read`.
NamedTensors read_tensors(const SafetensorsHeader& h, const std::string& name,
                          const std::function<void(uint64_t, void*, size_t)>& read) {
  NamedTensors out;
  out.reserve(h.entries.size());
  std::vector<uint16_t> halves;
  for (const SafetensorsEntry& e : h.entries) {
    const FileType* type = find_type(e.dtype);
    Tensor t = Tensor::empty(e.shape, type->loads_as, Device::cpu());
    const uint64_t at = h.data_start + e.begin;
    const size_t bytes = static_cast<size_t>(e.end - e.begin);
    const size_t n = static_cast<size_t>(t.numel());
    if (e.dtype == "F16" || e.dtype == "BF16") {
      halves.resize(n);
      if (n) read(at, halves.data(), bytes);
      float* dst = t.data<float>();
      if (e.dtype == "F16")
        for (size_t i = 0; i < n; ++i) dst[i] = kernels::f16_to_float(halves[i]);
      else
        for (size_t i = 0; i < n; ++i) dst[i] = kernels::bf16_to_float(halves[i]);
    } else {
      if (bytes) read(at, t.data_ptr(), bytes);
      if (e.dtype == "BOOL") {
        const uint8_t* p = t.data<uint8_t>();
        for (size_t i = 0; i < n; ++i)
          if (p[i] > 1)
            fail(kLoadOp, name, "key '", printable(e.name), "': BOOL element ", i, " holds byte ",
                 static_cast<int>(p[i]), " (expected 0 or 1)");
      }
    }
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

// ---- writing --------------------------------------------------------------------------------

// Strict UTF-8 check for names and metadata we are about to write (a file we could not
// read back is worse than an error now).
bool valid_utf8(std::string_view s) {
  const char* why = nullptr;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = utf8_sequence_length(s, i, &why);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out += ch;
    }
  }
  out += '"';
}

struct Prepared {
  std::string prefix_and_header;  // the 8-byte length and the padded header
  std::vector<Tensor> host;       // host copies, in data order
};

Prepared prepare(const char* op, const std::string& name, const NamedTensors& tensors,
                 const SafetensorsMetadata& metadata) {
  std::unordered_set<std::string> seen;
  for (const auto& [key, t] : tensors) {
    const std::string k = printable(key);
    if (key == kMetadataKey) fail(op, name, "'__metadata__' is reserved and cannot name a tensor");
    if (!valid_utf8(key)) fail(op, name, "key '", k, "' is not valid UTF-8");
    if (!seen.insert(key).second) fail(op, name, "key '", k, "' given twice");
    if (!t.defined()) fail(op, name, "key '", k, "': undefined tensor");
    if (!file_dtype_of(t.dtype()))
      fail(op, name, "key '", k, "': cannot write dtype ", dtype_name(t.dtype()), " (", t.desc(),
           "); cast it to f32 first");
    if (t.layout() != Layout::NCHW)
      fail(op, name, "key '", k, "': tensor ", t.desc(),
           " is tagged NHWC; safetensors holds row-major data, ", "convert it to NCHW first");
  }
  for (const auto& [mk, mv] : metadata)
    if (!valid_utf8(mk) || !valid_utf8(mv))
      fail(op, name, "metadata key '", printable(mk), "': key or value is not valid UTF-8");

  // Data order: by element size, largest first, stable; every tensor then starts at a
  // multiple of its element size (the data section itself starts at a multiple of 8).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  Prepared p;
  for (size_t i : order) {
    begin[i] = offset;
    offset += tensors[i].second.nbytes();
    p.host.push_back(tensors[i].second.to(Device::cpu()));
  }

  std::string json = "{";
  if (!metadata.empty()) {
    append_json_string(json, kMetadataKey);
    json += ":{";
    bool first = true;
    for (const auto& [mk, mv] : metadata) {
      if (!first) json += ',';
      first = false;
      append_json_string(json, mk);
      json += ':';
      append_json_string(json, mv);
    }
    json += '}';
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    if (json.size() > 1) json += ',';
    append_json_string(json, tensors[i].first);
    json += ":{\"dtype\":\"";
    json += file_dtype_of(t.dtype());
    json += "\",\"shape\":[";
    for (int d = 0; d < t.dim(); ++d) {
      if (d) json += ',';
      json += std::to_string(t.shape()[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(begin[i]) + "," + std::to_string(begin[i] + t.nbytes()) +
            "]}";
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxHeaderBytes)
    fail(op, name, "the header would be ", json.size(), " bytes, above the format's limit of ",
         kMaxHeaderBytes);

  const uint64_t n = json.size();
  p.prefix_and_header.resize(8);
  for (int i = 0; i < 8; ++i)
    p.prefix_and_header[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  p.prefix_and_header += json;
  return p;
}

}  // namespace

NamedTensors load_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  InputFile file(path, kLoadOp);
  auto read = [&](uint64_t at, void* dst, size_t n) { file.read_at(at, dst, n); };
  SafetensorsHeader h = read_header(file.size(), path, read);
  NamedTensors out = read_tensors(h, path, read);
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  InputFile file(path, kLoadOp);
  return read_header(file.size(), path, [&](uint64_t at, void* dst, size_t n) { file.read_at(at, dst, n); });
}

NamedTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what,
                               SafetensorsMetadata* metadata) {
  HPA_CHECK(bytes || size == 0, kLoadOp, ": ", what, ": null buffer");
  auto read = [&](uint64_t at, void* dst, size_t n) { std::memcpy(dst, bytes + at, n); };
  SafetensorsHeader h = read_header(size, what, read);
  NamedTensors out = read_tensors(h, what, read);
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata) {
  constexpr const char* op = "save_safetensors";
  const Prepared p = prepare(op, path, tensors, metadata);
  AtomicFileWriter out(path, op);
  out.write(p.prefix_and_header);
  for (const Tensor& t : p.host) out.write(t.data_ptr(), t.nbytes());
  out.commit();
}

std::string safetensors_to_bytes(const NamedTensors& tensors, const SafetensorsMetadata& metadata) {
  const Prepared p = prepare("safetensors_to_bytes", "<memory>", tensors, metadata);
  std::string out = p.prefix_and_header;
  for (const Tensor& t : p.host) out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

}  // namespace hpa
