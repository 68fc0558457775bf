// safetensors I/O: round trips of every writable dtype and rank (0-d and empty included),
// the byte layout (alignment, key order, an exact small file), F16/BF16 decoding of all
// 65536 bit patterns against NumPy and PyTorch, files from and for the pure-Python
// reader/writer of tools/convert_weights.py (a torchvision resnet18 state_dict among them),
// one test per kind of bad input (each an hpa::Error naming the file and the key),
// truncation and random corruption (never a crash), and atomic writes under injected
// failures.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "tensor/file_io.h"
#include "tensor/npy.h"
#include "tensor/safetensors.h"
#include "tests/gpu_util.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

using namespace hpa;
namespace fs = std::filesystem;

namespace {

using hpa::test::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string raw_bytes(const Tensor& t) {
  return t.numel() ? std::string(static_cast<const char*>(t.data_ptr()), t.nbytes()) : std::string();
}

// A file from its parts: the 8-byte length of `header`, `header`, `data`.
std::string make_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

// Exact values in each dtype: element i of a pattern tensor.
Tensor pattern_tensor(DType dtype, const Shape& shape, int salt) {
  const int64_t n = shape.numel();
  switch (dtype) {
    case DType::i64: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i + salt) * 3000000000LL - 7;
      return Tensor::from_vector(v, shape);
    }
    case DType::i32: {
      std::vector<int32_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = static_cast<int32_t>((i + salt) * 1000003 - 5000000);
      return Tensor::from_vector(v, shape);
    }
    case DType::u8: {
      std::vector<uint8_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<uint8_t>((i * 37 + salt) % 256);
      return Tensor::from_vector(v, shape);
    }
    case DType::boolean: {
      std::vector<uint8_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i + salt) % 3 == 0;
      Tensor t = Tensor::empty(shape, DType::boolean);
      if (n) std::memcpy(t.data_ptr(), v.data(), v.size());
      return t;
    }
    case DType::f64: {
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (static_cast<double>(i + salt) + 1.0) / 3.0;
      return Tensor::from_vector(v, shape);
    }
    default: {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i + salt) / 7.0f - 3.0f;
      return Tensor::from_vector(v, shape);
    }
  }
}

const std::vector<DType> kWritable = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};
const std::vector<Shape> kShapes = {Shape{},        Shape{5},          Shape{2, 3},
                                    Shape{2, 1, 3}, Shape{1, 2, 3, 4}, Shape{2, 1, 2, 1, 3},
                                    Shape{0},       Shape{2, 0, 3}};

// Runs `script` (Python source) with /usr/bin/python3 and the arguments; returns "" on
// success, "SKIP: <why>" when it exits with status 3 (a module it needs is missing), or
// the failure text.
std::string run_python(const TempDir& dir, const std::string& script, const std::string& args) {
  if (!fs::exists("/usr/bin/python3")) return "SKIP: /usr/bin/python3 not found";
  const std::string py = dir.file("script.py"), err = dir.file("script.err");
  write_bytes(py, script);
  const std::string command = "/usr/bin/python3 " + py + " " + args + " >" + err + " 2>&1";
  const int status = std::system(command.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) return "SKIP: " + read_bytes(err);
  return command + " failed: " + read_bytes(err);
}

#define RUN_PYTHON_OR_SKIP(dir, script, args)                   \
  do {                                                          \
    const std::string result = run_python(dir, script, args);   \
    if (result.rfind("SKIP: ", 0) == 0) GTEST_SKIP() << result; \
    ASSERT_EQ(result, "");                                      \
  } while (0)

const std::string kPythonPrelude = R"PY(
import os, sys
try:
    import numpy as np
except ImportError as e:
    sys.stderr.write("numpy unavailable: %s" % e); sys.exit(3)
sys.path.insert(0, sys.argv[1])
from convert_weights import write_safetensors, read_safetensors
)PY";

std::string tools_dir() { return std::string(HPA_SOURCE_DIR) + "/tools"; }

}  // namespace

// ---- round trips and layout -----------------------------------------------------------------

TEST(Safetensors, RoundTripsEveryDtypeAndShape) {
  TempDir dir;
  NamedTensors tensors;
  int salt = 0;
  for (DType dtype : kWritable)
    for (const Shape& shape : kShapes)
      tensors.emplace_back(std::string(dtype_name(dtype)) + shape.str(),
                           pattern_tensor(dtype, shape, salt++));
  const SafetensorsMetadata meta = {{"model", "resnet18"},
                                    {"quote\"and\\backslash", "tab\tnewline\ncontrol\x01"},
                                    {"unicode \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", ""}};
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors, meta);

  SafetensorsMetadata got_meta;
  const NamedTensors got = load_safetensors(path, &got_meta);
  ASSERT_EQ(got.size(), tensors.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(tensors[i].first);
    EXPECT_EQ(got[i].first, tensors[i].first);  // header order = the given order
    EXPECT_EQ(got[i].second.dtype(), tensors[i].second.dtype());
    EXPECT_EQ(got[i].second.shape(), tensors[i].second.shape());
    EXPECT_TRUE(got[i].second.is_cpu());
    EXPECT_EQ(raw_bytes(got[i].second), raw_bytes(tensors[i].second));
  }
  EXPECT_EQ(got_meta, meta);

  // The in-memory forms agree with the file.
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(safetensors_to_bytes(tensors, meta), bytes);
  const NamedTensors parsed =
      parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "memory", nullptr);
  ASSERT_EQ(parsed.size(), got.size());
  for (size_t i = 0; i < parsed.size(); ++i) EXPECT_EQ(raw_bytes(parsed[i].second), raw_bytes(got[i].second));
}

TEST(Safetensors, BooleanIsWrittenAsBoolAndLoadsAsU8) {
  TempDir dir;
  const Tensor b = pattern_tensor(DType::boolean, {7}, 0);
  save_safetensors(dir.file("b.safetensors"), {{"mask", b}});
  EXPECT_EQ(read_safetensors_header(dir.file("b.safetensors")).entries.at(0).dtype, "BOOL");
  const NamedTensors got = load_safetensors(dir.file("b.safetensors"));
  EXPECT_EQ(got.at(0).second.dtype(), DType::u8);
  EXPECT_EQ(got.at(0).second.to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 0, 1, 0, 0, 1}));
}

TEST(Safetensors, EmptyFileHoldsOnlyMetadataOrNothing) {
  TempDir dir;
  save_safetensors(dir.file("e.safetensors"), {});
  EXPECT_TRUE(load_safetensors(dir.file("e.safetensors")).empty());
  EXPECT_EQ(read_bytes(dir.file("e.safetensors")), make_file("{}      "));
  SafetensorsMetadata meta;
  save_safetensors(dir.file("m.safetensors"), {}, {{"a", "b"}});
  EXPECT_TRUE(load_safetensors(dir.file("m.safetensors"), &meta).empty());
  EXPECT_EQ(meta, (SafetensorsMetadata{{"a", "b"}}));
}

TEST(Safetensors, EmptyTensorsWithLargeDimensionsLoad) {
  const std::string file =
      make_file(R"({"e":{"dtype":"F64","shape":[1000000,0,3000000],"data_offsets":[0,0]}})");
  const NamedTensors got = parse_safetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "e");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].second.shape(), (Shape{1000000, 0, 3000000}));
  EXPECT_EQ(got[0].second.numel(), 0);
}

TEST(Safetensors, WritesTheExactBytesOfASmallFile) {
  // Worked out by hand from the format: keys in the given order, the i64 data before the
  // f32 data (larger elements first), the header padded with spaces to 8 bytes.
  const Tensor f = Tensor::from_vector<float>({1.0f, -2.0f}, {2});
  const Tensor l = Tensor::from_vector<int64_t>({258}, {});
  const std::string json =
      R"({"__metadata__":{"k":"v"},"f":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("l":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})";
  std::string header = json + std::string((8 - json.size() % 8) % 8, ' ');
  const std::string data = std::string("\x02\x01\0\0\0\0\0\0", 8) + std::string("\0\0\x80\x3f\0\0\0\xc0", 8);
  EXPECT_EQ(safetensors_to_bytes({{"f", f}, {"l", l}}, {{"k", "v"}}), make_file(header, data));
}

TEST(Safetensors, AlignsEveryTensorToItsElementSize) {
  TempDir dir;
  NamedTensors tensors = {
      {"u", pattern_tensor(DType::u8, {3}, 0)},     {"f", pattern_tensor(DType::f32, {3}, 0)},
      {"d", pattern_tensor(DType::f64, {1}, 0)},    {"u2", pattern_tensor(DType::u8, {1}, 0)},
      {"i", pattern_tensor(DType::i32, {2, 1}, 0)}, {"l", pattern_tensor(DType::i64, {2}, 0)}};
  save_safetensors(dir.file("a.safetensors"), tensors);
  const SafetensorsHeader h = read_safetensors_header(dir.file("a.safetensors"));
  EXPECT_EQ(h.data_start % 8, 0u);
  ASSERT_EQ(h.entries.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(h.entries[i].name, tensors[i].first);
    EXPECT_EQ(h.entries[i].begin % dtype_size(tensors[i].second.dtype()), 0u) << tensors[i].first;
  }
  // Largest elements first, stable: d, l (8 bytes), f, i (4), u, u2 (1).
  EXPECT_EQ(h.entries[2].begin, 0u);
  EXPECT_EQ(h.entries[5].begin, 8u);
  EXPECT_EQ(h.entries[1].begin, 24u);
  EXPECT_EQ(h.entries[4].begin, 36u);
  EXPECT_EQ(h.entries[0].begin, 44u);
  EXPECT_EQ(h.entries[3].begin, 47u);
}

// ---- half-precision decoding ----------------------------------------------------------------

TEST(Safetensors, DecodesHalfAndBfloat16SpecialValues) {
  // Hand-picked bit patterns and their float32 values from the IEEE definitions.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400,
                                     0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x3555};
  const std::vector<float> f16_want = {1.0f,
                                       -2.0f,
                                       std::ldexp(1.0f, -24),
                                       1023 * std::ldexp(1.0f, -24),
                                       std::ldexp(1.0f, -14),
                                       65504.0f,
                                       INFINITY,
                                       -INFINITY,
                                       -0.0f,
                                       0x555 * std::ldexp(1.0f, -12)};
  const std::vector<uint16_t> bf16 = {0x3F80, 0x4049, 0x0001, 0x8080, 0x7F7F, 0x7F80, 0xFF80, 0x8000};
  const std::vector<float> bf16_want = {1.0f,
                                        3.140625f,
                                        std::ldexp(1.0f, -133),
                                        -std::ldexp(1.0f, -126),
                                        0x1FE * std::ldexp(1.0f, 119),
                                        INFINITY,
                                        -INFINITY,
                                        -0.0f};
  auto halves = [](const std::vector<uint16_t>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
  };
  const std::string data = halves(f16) + halves(bf16) + halves({0x7E00, 0xFD01, 0x7FC0, 0xFF81});
  const std::string header = R"({"h":{"dtype":"F16","shape":[10],"data_offsets":[0,20]},)"
                             R"("b":{"dtype":"BF16","shape":[8],"data_offsets":[20,36]},)"
                             R"("n":{"dtype":"F16","shape":[2],"data_offsets":[36,40]},)"
                             R"("m":{"dtype":"BF16","shape":[2],"data_offsets":[40,44]}})";
  const std::string file = make_file(header, data);
  const NamedTensors got =
      parse_safetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "halves");
  ASSERT_EQ(got.size(), 4u);
  for (const auto& [name, t] : got) EXPECT_EQ(t.dtype(), DType::f32) << name;
  const auto h = got[0].second.to_vector<float>(), b = got[1].second.to_vector<float>();
  for (size_t i = 0; i < f16.size(); ++i) {
    EXPECT_EQ(h[i], f16_want[i]) << "f16 bits " << f16[i];
    EXPECT_EQ(std::signbit(h[i]), std::signbit(f16_want[i])) << "f16 bits " << f16[i];
  }
  for (size_t i = 0; i < bf16.size(); ++i) {
    EXPECT_EQ(b[i], bf16_want[i]) << "bf16 bits " << bf16[i];
    EXPECT_EQ(std::signbit(b[i]), std::signbit(bf16_want[i])) << "bf16 bits " << bf16[i];
  }
  for (int k = 2; k < 4; ++k) {
    const auto nan = got[static_cast<size_t>(k)].second.to_vector<float>();
    EXPECT_TRUE(std::isnan(nan[0]) && !std::signbit(nan[0]));
    EXPECT_TRUE(std::isnan(nan[1]) && std::signbit(nan[1]));
  }
}

TEST(Safetensors, DecodesEveryHalfAndBfloat16BitPatternLikeNumpyAndTorch) {
  // All 65536 patterns of each, converted by NumPy (float16 -> float32) and by PyTorch
  // (bfloat16 -> float32; NumPy has no bfloat16), compared bit for bit (NaN payloads too).
  TempDir dir;
  const std::string script = kPythonPrelude + R"PY(
bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
f16_ref = bits.view(np.float16).astype(np.float32)
try:
    import torch
    bf16_ref = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    source = "torch"
except ImportError:
    bf16_ref = (bits.astype(np.uint32) << 16).view(np.float32)
    source = "numpy"
write_safetensors(sys.argv[2], {"f16": bits.view(np.float16), "bf16": bits,
                                "f16_ref": f16_ref, "bf16_ref": bf16_ref},
                  metadata={"bf16_reference": source}, dtypes={"bf16": "BF16"})
)PY";
  const std::string path = dir.file("halves.safetensors");
  RUN_PYTHON_OR_SKIP(dir, script, tools_dir() + " " + path);
  SafetensorsMetadata meta;
  const NamedTensors got = load_safetensors(path, &meta);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(read_safetensors_header(path).entries.at(0).dtype, "F16");
  EXPECT_EQ(read_safetensors_header(path).entries.at(1).dtype, "BF16");
  for (int k = 0; k < 2; ++k) {
    const Tensor& decoded = got[static_cast<size_t>(k)].second;
    const Tensor& reference = got[static_cast<size_t>(k) + 2].second;
    ASSERT_EQ(decoded.dtype(), DType::f32);
    ASSERT_EQ(decoded.numel(), 65536);
    const auto* a = static_cast<const uint32_t*>(decoded.data_ptr());
    const auto* r = static_cast<const uint32_t*>(reference.data_ptr());
    int mismatches = 0;
    for (int i = 0; i < 65536; ++i)
      if (a[i] != r[i] && ++mismatches <= 5)
        ADD_FAILURE() << got[static_cast<size_t>(k)].first << " bits 0x" << std::hex << i << ": decoded 0x"
                      << a[i] << ", reference 0x" << r[i];
    EXPECT_EQ(mismatches, 0) << got[static_cast<size_t>(k)].first;
  }
  std::cout << "bf16 reference computed by " << meta["bf16_reference"] << "\n";
}

// ---- interoperability with the pure-Python reader and writer ---------------------------------

TEST(Safetensors, PythonReaderReadsOurFiles) {
  TempDir dir;
  NamedTensors tensors;
  int salt = 0;
  for (DType dtype : kWritable)
    for (const Shape& shape : {Shape{}, Shape{2, 3}, Shape{0, 2}})
      tensors.emplace_back(std::string(dtype_name(dtype)) + shape.str(),
                           pattern_tensor(dtype, shape, salt++));
  tensors.emplace_back("mask", pattern_tensor(DType::boolean, {4}, 0));
  const std::string path = dir.file("ours.safetensors");
  save_safetensors(path, tensors, {{"note", "caf\xc3\xa9"}});
  // The reader checks the layout itself; the values are checked against .npy files we write.
  std::string names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    save_npy(dir.file(std::to_string(i) + ".npy"), tensors[i].second);
    names += tensors[i].first + "\n";
  }
  write_bytes(dir.file("names.txt"), names);
  const std::string script = kPythonPrelude + R"PY(
d = sys.argv[3]
tensors, meta = read_safetensors(sys.argv[2], with_metadata=True)
names = open(os.path.join(d, "names.txt"), encoding="utf-8").read().splitlines()
assert list(tensors) == names, (list(tensors), names)
assert meta == {"note": "caf\u00e9"}, meta
for i, name in enumerate(names):
    want = np.load(os.path.join(d, "%d.npy" % i))
    got = tensors[name]
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape, want.dtype, want.shape)
    assert got.tobytes() == want.tobytes(), name
)PY";
  RUN_PYTHON_OR_SKIP(dir, script, tools_dir() + " " + path + " " + dir.path().string());
}

TEST(Safetensors, LoadsAResnet18StateDictConvertedByThePythonTool) {
  // torchvision resnet18 with random weights (and non-trivial BatchNorm statistics) is saved
  // with torch.save, converted by tools/convert_weights.py (the command line), and every
  // tensor is also written with np.save: the file must hold every key in state_dict order
  // with the identical bytes.
  TempDir dir;
  const std::string script = kPythonPrelude + R"PY(
import subprocess
try:
    import torch, torchvision
except ImportError as e:
    sys.stderr.write("torch/torchvision unavailable: %s" % e); sys.exit(3)
d = sys.argv[2]
torch.manual_seed(1234)
model = torchvision.models.resnet18()
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(12345)
sd = model.state_dict()
torch.save({"state_dict": sd, "epoch": 3}, os.path.join(d, "r18.pth"))
subprocess.run([sys.executable, os.path.join(sys.argv[1], "convert_weights.py"), os.path.join(d, "r18.pth"),
                os.path.join(d, "r18.safetensors"), "--meta", "arch=resnet18"], check=True, stdout=subprocess.DEVNULL)
with open(os.path.join(d, "keys.txt"), "w") as f:
    for i, (k, v) in enumerate(sd.items()):
        f.write(k + "\n")
        np.save(os.path.join(d, "%d.npy" % i), v.numpy())
)PY";
  RUN_PYTHON_OR_SKIP(dir, script, tools_dir() + " " + dir.path().string());
  SafetensorsMetadata meta;
  const NamedTensors got = load_safetensors(dir.file("r18.safetensors"), &meta);
  EXPECT_EQ(meta["arch"], "resnet18");
  EXPECT_EQ(meta["format"], "pt");
  std::istringstream keys(read_bytes(dir.file("keys.txt")));
  std::string key;
  size_t i = 0, floats = 0;
  int64_t elements = 0;
  for (; std::getline(keys, key); ++i) {
    ASSERT_LT(i, got.size()) << "missing key " << key;
    EXPECT_EQ(got[i].first, key);
    const Tensor want = load_npy(dir.file(std::to_string(i) + ".npy"));
    EXPECT_EQ(got[i].second.dtype(), want.dtype()) << key;
    EXPECT_EQ(got[i].second.shape(), want.shape()) << key;
    EXPECT_EQ(raw_bytes(got[i].second), raw_bytes(want)) << key;
    floats += got[i].second.dtype() == DType::f32;
    elements += got[i].second.numel();
  }
  EXPECT_EQ(i, got.size());
  EXPECT_EQ(i, 122u);  // resnet18: 62 parameters, 60 BatchNorm buffers
  EXPECT_EQ(floats, 102u);
  std::cout << "resnet18: " << got.size() << " tensors, " << elements << " elements\n";
}

// ---- bad input: each an hpa::Error naming the file (and the key) ----------------------------

class BadInput : public ::testing::Test {
 protected:
  // Writes `bytes` to a file and expects load_safetensors and parse_safetensors to throw an
  // hpa::Error naming the file and containing every needle; read_safetensors_header too
  // unless the problem is in the data itself.
  void expect_error(const std::string& bytes, const std::vector<std::string>& needles,
                    bool in_header = true) {
    const std::string path = dir_.file("bad.safetensors");
    write_bytes(path, bytes);
    for (int pass = 0; pass < 2; ++pass) {
      try {
        if (pass == 0)
          load_safetensors(path);
        else
          parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
        ADD_FAILURE() << "expected hpa::Error for header " << bytes.substr(8, 200);
      } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("load_safetensors: " + path + ": "), std::string::npos) << what;
        for (const std::string& needle : needles)
          EXPECT_NE(what.find(needle), std::string::npos)
              << "message '" << what << "' lacks '" << needle << "'";
      }
    }
    if (in_header)
      EXPECT_HPA_ERROR(read_safetensors_header(path), path);
    else
      EXPECT_NO_THROW(read_safetensors_header(path));
  }
  // A one-tensor header around `entry` (the value of key "w") with `data`.
  void expect_entry_error(const std::string& entry, const std::string& data,
                          const std::vector<std::string>& needles) {
    expect_error(make_file("{\"w\":" + entry + "}", data), needles);
  }
  TempDir dir_;
};

TEST_F(BadInput, TooShortOrHeaderBeyondTheFile) {
  expect_error("abc", {"too short", "3 bytes"});
  expect_error(make_file("{}").substr(0, 8),
               {"header length 2 reaches beyond the end of the file (8 bytes)"});
  std::string huge = make_file("{}");
  huge[7] = '\x7f';
  expect_error(huge, {"header length", "beyond the end of the file"});
  EXPECT_HPA_ERROR(load_safetensors(dir_.file("missing.safetensors")), "missing.safetensors", "cannot open");
  EXPECT_HPA_ERROR(load_safetensors(dir_.path().string()), "not a regular file");
}

TEST_F(BadInput, HeaderAboveTheSizeLimit) {
  // A sparse file: a 100 MB + 9 byte header length that the file really holds.
  const std::string path = dir_.file("big.safetensors");
  const uint64_t n = 100'000'009;
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_bytes(path, prefix);
  fs::resize_file(path, 8 + n);
  EXPECT_HPA_ERROR(load_safetensors(path), path, "exceeds the limit of 100000000");
}

TEST_F(BadInput, MalformedJson) {
  std::string items65 = "0";
  for (int i = 1; i < 65; ++i) items65 += ",0";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "expected a value"},
      {"{", "expected a quoted key"},
      {"{\"a\":1,}", "expected a quoted key"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
      {"{\"a\":[1 2]}", "expected ',' or ']'"},
      {"{\"a\":\"x}", "unterminated string"},
      {"{\"a\":\"\\q\"}", "invalid escape"},
      {"{\"a\":\"\\u12g4\"}", "invalid hex digit"},
      {"{\"a\":\"\\ud800\"}", "unpaired high surrogate"},
      {"{\"a\":\"\\udc00\"}", "unpaired low surrogate"},
      {"{\"a\":\"\\ud800\\u0041\"}", "not followed by a low surrogate"},
      {"{\"a\":\"\x01\"}", "unescaped control character"},
      {"{\"a\":\"\xc3\"}", "invalid UTF-8"},
      {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8 lead byte"},
      {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8 sequence"},
      {"{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8 sequence"},
      {"{\"a\":01}", "leading zero"},
      {"{\"a\":1.}", "no digit after '.'"},
      {"{\"a\":1e}", "no digit in the exponent"},
      {"{\"a\":-}", "invalid number"},
      {"{\"a\":tru}", "invalid literal"},
      {"{\"a\":@}", "unexpected character '@'"},
      {"{} x", "unexpected text after the top-level value"},
      {std::string("{}\0", 3), "unexpected text after the top-level value"},
      {std::string(100, '['), "nesting deeper than 32 levels"},
      {"{\"a\":[" + items65 + "]}", "array longer than 64 items"},
  };
  for (const auto& [header, needle] : cases) {
    SCOPED_TRACE(header);
    expect_error(make_file(header), {"header JSON error at byte", needle});
  }
  // A top-level value other than an object.
  expect_error(make_file("[]"), {"the header must be a JSON object, got an array"});
}

TEST_F(BadInput, DuplicateKeys) {
  expect_error(make_file(R"({"w":{"dtype":"U8","shape":[],"data_offsets":[0,1]},)"
                         R"("w":{"dtype":"U8","shape":[],"data_offsets":[1,2]}})",
                         "ab"),
               {"duplicate key 'w'"});
  expect_error(make_file(R"({"__metadata__":{"k":"1","k":"2"}})"), {"duplicate key 'k'"});
  expect_error(make_file(R"({"__metadata__":{},"__metadata__":{}})"), {"duplicate key '__metadata__'"});
}

TEST_F(BadInput, EntryFieldsAndMetadata) {
  expect_entry_error("[]", "",
                     {"key 'w'", "expected an object with dtype, shape, data_offsets, got an array"});
  expect_entry_error(R"({"dtype":"F32","shape":[]})", "1234", {"key 'w'", "missing field 'data_offsets'"});
  expect_entry_error(R"({"shape":[],"data_offsets":[0,4]})", "1234", {"key 'w'", "missing field 'dtype'"});
  expect_entry_error(R"({"dtype":"F32","shape":[],"data_offsets":[0,4],"x":1})", "1234",
                     {"key 'w'", "unknown field 'x'"});
  expect_entry_error(R"({"dtype":5,"shape":[],"data_offsets":[0,4]})", "1234",
                     {"key 'w'", "dtype must be a string"});
  expect_entry_error(R"({"dtype":"F32","shape":3,"data_offsets":[0,4]})", "1234",
                     {"key 'w'", "shape must be an array"});
  expect_entry_error(R"({"dtype":"F32","shape":[],"data_offsets":[0]})", "1234",
                     {"key 'w'", "data_offsets must be an array [begin, end]"});
  expect_error(make_file(R"({"__metadata__":{"k":1}})"),
               {"metadata key 'k'", "must be a string, got a number"});
  expect_error(make_file(R"({"__metadata__":[]})"), {"'__metadata__' must be an object of strings"});
}

TEST_F(BadInput, Dtypes) {
  expect_entry_error(
      R"({"dtype":"F17","shape":[],"data_offsets":[0,4]})", "1234",
      {"key 'w'", "unknown dtype 'F17'", "supported: F32, F64, I32, I64, U8, BOOL, F16, BF16"});
  expect_entry_error(R"({"dtype":"I16","shape":[2],"data_offsets":[0,4]})", "1234",
                     {"key 'w'", "unsupported dtype 'I16'"});
  expect_error(
      make_file(R"({"w":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)),
      {"key 'w'", "BOOL element 2 holds byte 2"}, /*in_header=*/false);
}

TEST_F(BadInput, Shapes) {
  expect_entry_error(R"({"dtype":"U8","shape":[-1],"data_offsets":[0,1]})", "a",
                     {"key 'w'", "shape dimension 0", "negative value -1"});
  expect_entry_error(R"({"dtype":"U8","shape":[1, 2.0],"data_offsets":[0,2]})", "ab",
                     {"key 'w'", "shape dimension 1", "non-integer value 2.0"});
  expect_entry_error(R"({"dtype":"U8","shape":[1e2],"data_offsets":[0,100]})", "ab",
                     {"key 'w'", "non-integer value 1e2"});
  expect_entry_error(R"({"dtype":"U8","shape":["1"],"data_offsets":[0,1]})", "a",
                     {"key 'w'", "expected an integer, got a string"});
  expect_entry_error(R"({"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,1]})", "a",
                     {"key 'w'", "does not fit in 64 bits"});
  // The product overflows 64 bits: must not wrap around to something small.
  expect_entry_error(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]})", "",
                     {"key 'w'", "shape [4294967296, 4294967296]: the element count overflows 64 bits"});
  // Even for an empty tensor (numel() of the shape would overflow int64).
  expect_entry_error(R"({"dtype":"F32","shape":[4611686018427387904,4,0],"data_offsets":[0,0]})", "",
                     {"key 'w'", "the element count overflows 64 bits"});
  expect_entry_error(R"({"dtype":"U8","shape":[0,9223372036854775808],"data_offsets":[0,0]})", "",
                     {"key 'w'", "the element count overflows 64 bits"});
  expect_entry_error(R"({"dtype":"F64","shape":[65536,65536,65536,16],"data_offsets":[0,8]})", "12345678",
                     {"key 'w'", "needs more bytes than the 8-byte data section holds"});
  expect_entry_error(R"({"dtype":"U8","shape":[1,1,1,1,1,1],"data_offsets":[0,1]})", "a",
                     {"key 'w'", "6 dimensions, the engine supports at most 5"});
}

TEST_F(BadInput, Offsets) {
  expect_entry_error(R"({"dtype":"U8","shape":[2],"data_offsets":[2,0]})", "ab",
                     {"key 'w'", "[2, 0] are reversed"});
  expect_entry_error(R"({"dtype":"U8","shape":[2],"data_offsets":[1,3]})", "ab",
                     {"key 'w'", "[1, 3] reach beyond the data section (2 bytes)"});
  expect_entry_error(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", "abcdefgh",
                     {"key 'w'", "span 4 bytes but F32[2] needs 8"});
  expect_entry_error(R"({"dtype":"U8","shape":[2],"data_offsets":[0,-2]})", "ab",
                     {"key 'w'", "data_offsets[1]: negative value -2"});
  expect_error(make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                         R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                         "abc"),
               {"key 'b'", "overlap those of key 'a' [0, 2]"});
  expect_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                         R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
                         "abc"),
               {"key 'b'", "leave a gap of 1 bytes after byte 1"});
  expect_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "ab"),
               {"key 'a'", "leave a gap of 1 bytes after byte 0"});
}

TEST_F(BadInput, TrailingBytesAfterTheLastTensor) {
  expect_entry_error(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2]})", "abXYZ",
                     {"3 trailing bytes after the last tensor"});
  expect_error(make_file("{}", "x"), {"1 trailing bytes"});
  // Whitespace padding inside the header is not trailing data.
  const std::string padded = make_file(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}   )"
                                       "\n\t ",
                                       "ab");
  EXPECT_EQ(parse_safetensors(reinterpret_cast<const uint8_t*>(padded.data()), padded.size(), "p").size(),
            1u);
}

TEST(Safetensors, TruncationAndRandomCorruptionNeverCrash) {
  NamedTensors tensors = {{"conv.weight", pattern_tensor(DType::f32, {2, 1, 3, 3}, 1)},
                          {"bn.num_batches_tracked", pattern_tensor(DType::i64, {}, 2)},
                          {"mask", pattern_tensor(DType::u8, {5}, 3)}};
  const std::string good = safetensors_to_bytes(tensors, {{"k", "v"}});
  int errors = 0, loaded = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_ANY_THROW(parse_safetensors(reinterpret_cast<const uint8_t*>(good.data()), n, "truncated"))
        << "a file truncated to " << n << " bytes loaded";
  }
  std::mt19937 rng(42);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t at = rng() % bad.size();
      // Mostly bytes inside the header; some that JSON cares about.
      static const char kInteresting[] = "{}[]\",:0123456789-.eE\\u ";
      bad[at] = rng() % 2 ? static_cast<char>(rng() & 0xff) : kInteresting[rng() % (sizeof kInteresting - 1)];
    }
    try {
      const NamedTensors got =
          parse_safetensors(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), "fuzz");
      ++loaded;
      for (const auto& [name, t] : got) EXPECT_LE(t.nbytes(), bad.size());
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(loaded, 0);  // data-section flips still load
  std::cout << "random corruption: " << errors << " rejected, " << loaded << " loaded\n";
}

// ---- writing --------------------------------------------------------------------------------

TEST(Safetensors, RefusesWhatItCannotWrite) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const Tensor f = Tensor::zeros({2});
  EXPECT_HPA_ERROR(save_safetensors(path, {{"h", f.to(DType::f16)}}), path, "key 'h'",
                   "cannot write dtype f16");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"h", f.to(DType::bf16)}}), "key 'h'", "cannot write dtype bf16");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"a", f}, {"a", f}}), "key 'a' given twice");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"__metadata__", f}}), "'__metadata__' is reserved");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"u", Tensor()}}), "key 'u'", "undefined tensor");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"bad\xff", f}}), "not valid UTF-8");
  EXPECT_HPA_ERROR(save_safetensors(path, {{"a", f}}, {{"k", "\xc3"}}), "metadata key 'k'",
                   "not valid UTF-8");
  Tensor nhwc = Tensor::zeros({1, 2, 2, 2});
  nhwc.set_layout(Layout::NHWC);
  EXPECT_HPA_ERROR(save_safetensors(path, {{"x", nhwc}}), "key 'x'", "NHWC");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(dir.listing().empty());
  EXPECT_HPA_ERROR(save_safetensors(dir.file("no/such/dir/w.safetensors"), {{"a", f}}),
                   "no/such/dir/w.safetensors", "cannot create the temporary file");
}

TEST(Safetensors, AFailedWriteLeavesThePreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const NamedTensors first = {{"w", pattern_tensor(DType::f32, {64, 64}, 1)}};
  const NamedTensors second = {{"w", pattern_tensor(DType::f32, {64, 64}, 2)}};
  save_safetensors(path, first);
  const std::string before = read_bytes(path);
  // Dies half way through the data, then just before the rename.
  for (int64_t after : {int64_t{4}, int64_t{9000}, int64_t{1} << 40}) {
    SCOPED_TRACE(after);
    inject_atomic_write_failure(after);
    EXPECT_HPA_ERROR(save_safetensors(path, second), path, "injected failure", "previous file");
    EXPECT_EQ(read_bytes(path), before);
    EXPECT_EQ(dir.listing(), std::vector<std::string>{"w.safetensors"});  // no temporary left
    EXPECT_EQ(raw_bytes(load_safetensors(path).at(0).second), raw_bytes(first[0].second));
  }
  // The hook fires once: the next write succeeds.
  save_safetensors(path, second);
  EXPECT_EQ(raw_bytes(load_safetensors(path).at(0).second), raw_bytes(second[0].second));
  // The rename itself failing (the target is a directory) cleans up too.
  fs::create_directories(dir.file("adir/x"));
  EXPECT_HPA_ERROR(save_safetensors(dir.file("adir"), second), "adir", "rename failed");
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"adir", "w.safetensors"}));
}

TEST(Safetensors, SavesTensorsFromTheGpu) {
  HPA_REQUIRE_GPU();
  TempDir dir;
  const Tensor a = pattern_tensor(DType::f32, {3, 4}, 5), b = pattern_tensor(DType::i64, {2}, 6);
  save_safetensors(dir.file("g.safetensors"), {{"a", a.to(Device::cuda())}, {"b", b.to(Device::cuda())}});
  const NamedTensors got = load_safetensors(dir.file("g.safetensors"));
  EXPECT_EQ(raw_bytes(got.at(0).second), raw_bytes(a));
  EXPECT_EQ(raw_bytes(got.at(1).second), raw_bytes(b));
}
