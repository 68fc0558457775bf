// .npy I/O: round trips of every supported dtype and rank, the exact bytes NumPy expects,
// atomic writes, one test per kind of bad input (each must be an hpa::Error naming the
// file and the problem), randomized garbage and truncation (never a crash), and interop
// with the real NumPy through /usr/bin/python3 in both directions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tensor/npy.h"
#include "tests/test_util.h"

using namespace hpa;
namespace fs = std::filesystem;

namespace {

// The deterministic contents both sides of the interop test compute: element i of a
// tensor of `dtype`. Every value is exact in its type (no rounding differences between
// C++ and Python); the f64 value (i+1)/3 has bits a float could not hold.
double pattern_value(DType dtype, int64_t i) {
  switch (dtype) {
    case DType::f32:
      return static_cast<double>(i) / 8.0 - 3.0;
    case DType::f64:
      return (static_cast<double>(i) + 1.0) / 3.0;
    case DType::f16:
      return static_cast<double>(i) / 4.0 - 2.0;
    case DType::i32:
      return static_cast<double>(i * 1000003 - 5000000);
    case DType::i64:
      return static_cast<double>(i * 3000000000LL - 1);
    case DType::u8:
      return static_cast<double>((i * 37) % 256);
    case DType::boolean:
      return i % 3 == 0 ? 1.0 : 0.0;
    default:
      return 0;
  }
}

Tensor pattern_tensor(DType dtype, const Shape& shape) {
  const int64_t n = shape.numel();
  switch (dtype) {
    case DType::i64: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i * 3000000000LL - 1;
      return Tensor::from_vector(v, shape);
    }
    default: {
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = pattern_value(dtype, i);
      return Tensor::from_vector(v, shape).to(dtype);
    }
  }
}

// Bytes of a tensor, for exact comparisons.
std::string raw_bytes(const Tensor& t) {
  return std::string(static_cast<const char*>(t.data_ptr()), t.nbytes());
}

const std::vector<DType> kDTypes = {DType::f32, DType::f64, DType::f16,    DType::i32,
                                    DType::i64, DType::u8,  DType::boolean};
const std::vector<Shape> kShapes = {Shape{},        Shape{5},          Shape{2, 3},
                                    Shape{2, 1, 3}, Shape{1, 2, 3, 4}, Shape{2, 1, 2, 1, 3},
                                    Shape{0},       Shape{2, 0, 3}};

// A .npy byte string with an arbitrary header text (version 1.0 or 2.0) and data.
std::string make_npy(const std::string& header, const std::string& data = "", int major = 1) {
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t len = header.size();
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (major >= 2) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  return out + header + data;
}

std::string header_for(const std::string& descr, const std::string& shape,
                       const std::string& order = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }\n";
}

// A fresh directory under the system temp dir, removed at the end of each test.
class NpyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("hpa_test_npy_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_file(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary) << bytes;
  }
  fs::path dir_;
};

bool python_with_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

}  // namespace

// ---- round trips --------------------------------------------------------------------

TEST(Npy, RoundTripsEveryDTypeAndRankInMemory) {
  for (DType dtype : kDTypes) {
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + shape.str());
      const Tensor t = pattern_tensor(dtype, shape);
      const Tensor back = npy_from_bytes(npy_to_bytes(t));
      EXPECT_EQ(back.dtype(), dtype);
      EXPECT_EQ(back.shape(), shape);
      EXPECT_TRUE(back.is_cpu());
      EXPECT_EQ(raw_bytes(back), raw_bytes(t));
    }
  }
}

TEST(Npy, WritesNumPysExactHeader) {
  const std::string bytes = npy_to_bytes(pattern_tensor(DType::f32, {2, 3}));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
  EXPECT_EQ((10 + header_len) % 64, 0u) << "data must start 64-byte aligned";
  EXPECT_EQ(bytes.size(), 10 + header_len + 24);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u) << header;
  EXPECT_EQ(header.back(), '\n');
  // One-element tuples need the trailing comma, scalars are ().
  EXPECT_NE(npy_to_bytes(Tensor::zeros({7})).find("'shape': (7,), }"), std::string::npos);
  EXPECT_NE(npy_to_bytes(Tensor::scalar(1.0)).find("'shape': (), }"), std::string::npos);
  EXPECT_NE(npy_to_bytes(Tensor::zeros({1}, DType::boolean)).find("'descr': '|b1'"), std::string::npos);
  EXPECT_NE(npy_to_bytes(Tensor::zeros({1}, DType::u8)).find("'descr': '|u1'"), std::string::npos);
}

TEST(Npy, ReadsVersion2AndLenientHeaders) {
  const std::string data(reinterpret_cast<const char*>(std::vector<double>{1.5, -2.0}.data()), 16);
  Tensor a = npy_from_bytes(make_npy(header_for("<f8", "(2,)"), data, 2));
  EXPECT_EQ(a.shape(), Shape{2});
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{1.5, -2.0}));
  // Keys in another order, double quotes, no trailing comma, Python 2 longs, extra spaces.
  Tensor b = npy_from_bytes(
      make_npy("{ \"shape\" : ( 1L , 2L ) ,'fortran_order':False,\"descr\":\"<f8\"}  \n", data));
  EXPECT_EQ(b.shape(), (Shape{1, 2}));
  EXPECT_EQ(b.to_vector<double>()[1], -2.0);
  // One-byte types in any byte order.
  Tensor c = npy_from_bytes(make_npy(header_for("<u1", "(1,)"), "\x07"));
  EXPECT_EQ(c.dtype(), DType::u8);
  EXPECT_EQ(c.to_vector<uint8_t>()[0], 7);
}

TEST_F(NpyFiles, SaveLoadFileAndOverwriteAtomically) {
  const std::string p = path("weights.npy");
  const Tensor a = pattern_tensor(DType::f64, {3, 4});
  save_npy(p, a);
  EXPECT_EQ(raw_bytes(load_npy(p)), raw_bytes(a));
  const Tensor b = pattern_tensor(DType::i32, {5});
  save_npy(p, b);  // replaces the existing file
  const Tensor back = load_npy(p);
  EXPECT_EQ(back.dtype(), DType::i32);
  EXPECT_EQ(back.to_vector<int32_t>(), b.to_vector<int32_t>());
  // No temporary files left behind: the directory holds exactly the target.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "weights.npy");
  }
  EXPECT_EQ(entries, 1);
  // A relative path (no directory part) works too.
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  save_npy("relative.npy", b);
  fs::current_path(old_cwd);
  EXPECT_EQ(load_npy(path("relative.npy")).to_vector<int32_t>(), b.to_vector<int32_t>());
}

TEST_F(NpyFiles, FailedWriteKeepsTheOldFile) {
  const std::string p = path("keep.npy");
  save_npy(p, pattern_tensor(DType::f32, {4}));
  // Writing a bf16 tensor fails before anything touches the disk.
  EXPECT_HPA_ERROR(save_npy(p, Tensor::zeros({4}, DType::bf16)), "save_npy", p, "bf16",
                   "no NumPy equivalent");
  EXPECT_EQ(load_npy(p).to_vector<float>(), pattern_tensor(DType::f32, {4}).to_vector<float>());
  // A target that is a directory: the rename fails, the temporary is cleaned up.
  fs::create_directory(path("adir"));
  EXPECT_HPA_ERROR(save_npy(path("adir"), Tensor::zeros({1})), "save_npy", path("adir"), "write failed");
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_NE(e.path().filename().string()[0], '.') << "temporary file left behind: " << e.path();
}

// ---- bad input: each a clear error naming the file ------------------------------------

TEST_F(NpyFiles, MissingFileDirectoryAndUnwritablePath) {
  EXPECT_HPA_ERROR(load_npy(path("nope.npy")), "load_npy", path("nope.npy"), "cannot open",
                   "No such file or directory");
  EXPECT_HPA_ERROR(load_npy(dir_.string()), "load_npy", dir_.string(), "not a regular file");
  const std::string in_missing_dir = path("no/such/dir/x.npy");
  EXPECT_HPA_ERROR(save_npy(in_missing_dir, Tensor::zeros({1})), "save_npy", in_missing_dir,
                   "cannot create temporary file", "No such file or directory");
  EXPECT_HPA_ERROR(save_npy(path("t.npy"), Tensor()), "save_npy", "undefined tensor");
}

TEST_F(NpyFiles, BadMagicTruncationAndTrailingBytesInFiles) {
  write_file("empty.npy", "");
  EXPECT_HPA_ERROR(load_npy(path("empty.npy")), path("empty.npy"), "too short to be a .npy file (0 bytes)");
  write_file("text.npy", "hello, this is not numpy");
  EXPECT_HPA_ERROR(load_npy(path("text.npy")), path("text.npy"), "bad magic");
  const std::string good = npy_to_bytes(pattern_tensor(DType::f32, {2, 3}));
  write_file("short_header.npy", good.substr(0, 40));
  EXPECT_HPA_ERROR(load_npy(path("short_header.npy")), path("short_header.npy"), "truncated header");
  write_file("short_data.npy", good.substr(0, good.size() - 1));
  EXPECT_HPA_ERROR(load_npy(path("short_data.npy")), path("short_data.npy"), "truncated data", "f32[2, 3]",
                   "needs 24 bytes but only 23 follow");
  write_file("long.npy", good + "xy");
  EXPECT_HPA_ERROR(load_npy(path("long.npy")), path("long.npy"), "2 unexpected trailing bytes");
}

TEST(Npy, UnsupportedDTypesOrderRankAndVersion) {
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("<c8", "(1,)"), std::string(8, '\0')), "c.npy"),
                   "c.npy", "unsupported dtype '<c8'", "<f4");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for(">f4", "(1,)"), std::string(4, '\0')), "be.npy"),
                   "be.npy", "unsupported dtype '>f4'", "big-endian");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("<u2", "(1,)"), std::string(2, '\0'))),
                   "unsupported dtype '<u2'");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("<f", "(1,)"))), "unsupported dtype '<f'");
  EXPECT_HPA_ERROR(
      npy_from_bytes(make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }")),
      "structured arrays");
  EXPECT_HPA_ERROR(
      npy_from_bytes(make_npy(header_for("<f4", "(2, 2)", "True"), std::string(16, '\0')), "f.npy"), "f.npy",
      "fortran_order True");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("|u1", "(1, 1, 1, 1, 1, 1)"), "x")), "6 dimensions",
                   "at most 5");
  std::string v3 = make_npy(header_for("<f4", "()"), std::string(4, '\0'), 2);
  v3[6] = 3;
  EXPECT_HPA_ERROR(npy_from_bytes(v3, "v3.npy"), "v3.npy", "unsupported .npy format version 3.0");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("|b1", "(3,)"), std::string("\x01\x00\x02", 3))),
                   "bool element 2 holds byte 2");
}

TEST(Npy, HeaderParseErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", "expected a quoted key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,) ", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'fortran_order': False, 'shape': ()}", "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': ()}", "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f4', 'fortran_order': false, 'shape': ()}", "expected True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "expected a tuple for 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "negative dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}", "expected ',' or ')'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "dimension too large"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': ()}", "expected ',' or '}' after a value"},
      {"{'descr' '<f4'}", "expected ':' after key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ()} trailing", "unexpected text after"},
      {"{descr: '<f4'}", "expected a quoted key"},
      {"{'descr': 'a\\'b'}", "escape sequences"},
      {"{'descr': '<f4", "unterminated string"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (\xc3\xa9,)}", "non-ASCII"},
  };
  for (const auto& [header, expected] : cases) {
    SCOPED_TRACE(header);
    EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header), "h.npy"), "load_npy", "h.npy", expected);
  }
  // A shape whose byte count overflows is reported as data the file cannot hold, before
  // any allocation is attempted.
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("<f8", "(4294967296, 4294967296, 4294967296)"))),
                   "truncated data", "larger than any file");
  EXPECT_HPA_ERROR(npy_from_bytes(make_npy(header_for("<f8", "(100000000000,)"))), "truncated data",
                   "needs 800000000000 bytes but only 0 follow");
  // A zero-sized dimension makes the others harmless.
  EXPECT_EQ(npy_from_bytes(make_npy(header_for("<f8", "(0, 4294967296)"))).numel(), 0);
}

TEST(Npy, SavingACudaTensorAsksForAnExplicitCopy) {
  // Stand-in for a CUDA tensor that works in CPU-only builds: host storage relabelled as
  // cuda:0. The save must refuse before it touches the data. The label is restored before
  // the storage is freed so the CPU allocator releases it.
  auto storage = std::make_shared<Storage>(8, Device::cpu());
  storage->device = Device::cuda(0);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage;
  impl->shape = Shape{2};
  const Tensor fake_cuda(impl);
  EXPECT_HPA_ERROR(npy_to_bytes(fake_cuda), "f32[2] cuda:0", "not on the CPU", ".to(Device::cpu())");
  EXPECT_HPA_ERROR(save_npy("/nonexistent/x.npy", fake_cuda), "save_npy", "/nonexistent/x.npy",
                   "not on the CPU");
  storage->device = Device::cpu();
}

TEST(Npy, NhwcTensorsAreRefused) {
  Tensor t = Tensor::zeros({1, 2, 2, 3});
  t.set_layout(Layout::NHWC);
  EXPECT_HPA_ERROR(npy_to_bytes(t), "NHWC");
}

// ---- randomized garbage: anything is an hpa::Error or a valid tensor, never a crash ----

namespace {

// Loads `bytes`; returns true when it loaded, false on hpa::Error, and fails the test on
// any other exception.
bool loads_or_errors(const std::string& bytes) {
  try {
    const Tensor t = npy_from_bytes(bytes, "fuzz.npy");
    EXPECT_LE(t.nbytes(), bytes.size());
    return true;
  } catch (const hpa::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fuzz.npy"), std::string::npos) << e.what();
    return false;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-hpa exception: " << e.what();
    return false;
  }
}

}  // namespace

TEST(Npy, EveryTruncationIsAnError) {
  for (DType dtype : {DType::f64, DType::boolean}) {
    const std::string good = npy_to_bytes(pattern_tensor(dtype, {2, 3}));
    for (size_t len = 0; len < good.size(); ++len) {
      SCOPED_TRACE(len);
      EXPECT_FALSE(loads_or_errors(good.substr(0, len)));
    }
    EXPECT_TRUE(loads_or_errors(good));
  }
}

TEST(Npy, RandomGarbageNeverCrashes) {
  std::mt19937_64 rng(20240611);
  auto uniform = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  // 1. Random byte flips in valid files (header and data).
  const std::string good = npy_to_bytes(pattern_tensor(DType::i64, {3, 2}));
  int loaded = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b = good;
    const size_t flips = 1 + uniform(4);
    for (size_t k = 0; k < flips; ++k) b[uniform(b.size())] = static_cast<char>(rng());
    loaded += loads_or_errors(b);
  }
  EXPECT_GT(loaded, 0) << "flips in the data should leave a loadable file";
  // 2. Headers assembled from dictionary-like tokens, with random data lengths.
  const std::vector<std::string> tokens = {"{",        "}",     "(",       ")",       ",",
                                           ":",        " ",     "'descr'", "'shape'", "'fortran_order'",
                                           "'<f4'",    "'|b1'", "'>f8'",   "True",    "False",
                                           "0",        "1",     "7",       "L",       "-",
                                           "[",        "]",     "'",       "\"",      "\n",
                                           "99999999", "'<i8'", "\\",      "\x93",    "\0"};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string header;
    const size_t n = uniform(24);
    for (size_t k = 0; k < n; ++k) header += tokens[uniform(tokens.size())];
    std::string data(uniform(64), '\x01');
    loads_or_errors(make_npy(header, data, 1 + static_cast<int>(uniform(2))));
  }
  // 3. Pure noise, with and without a valid magic and version in front.
  for (int iter = 0; iter < 2000; ++iter) {
    std::string b(uniform(80), '\0');
    for (char& c : b) c = static_cast<char>(rng());
    if (iter % 2) b = std::string("\x93NUMPY\x01\x00", 8) + b;
    EXPECT_FALSE(loads_or_errors(b));
  }
}

// ---- interop with NumPy -------------------------------------------------------------

namespace {

const char* kNumpyScript = R"PY(
import os, sys
import numpy as np

mode, folder = sys.argv[1], sys.argv[2]
DTYPES = {'f32': '<f4', 'f64': '<f8', 'f16': '<f2', 'i32': '<i4', 'i64': '<i8', 'u8': '|u1', 'bool': '|b1'}
SHAPES = [(), (5,), (2, 3), (2, 1, 3), (1, 2, 3, 4), (2, 1, 2, 1, 3), (0,), (2, 0, 3)]

def pattern(name, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    v = {'f32': lambda: i / 8.0 - 3.0, 'f64': lambda: (i + 1.0) / 3.0, 'f16': lambda: i / 4.0 - 2.0,
         'i32': lambda: i * 1000003 - 5000000, 'i64': lambda: i * 3000000000 - 1,
         'u8': lambda: (i * 37) % 256, 'bool': lambda: i % 3 == 0}[name]()
    return np.asarray(v).astype(DTYPES[name]).reshape(shape)

def fname(name, shape):
    return os.path.join(folder, '%s_%s.npy' % (name, 'x'.join(map(str, shape)) or 'scalar'))

if mode == 'write':
    for name in DTYPES:
        for shape in SHAPES:
            np.save(fname(name, shape), pattern(name, shape))
    with open(os.path.join(folder, 'v2.npy'), 'wb') as f:
        np.lib.format.write_array(f, pattern('f64', (2, 3)), version=(2, 0))
    np.save(os.path.join(folder, 'fortran.npy'), np.asfortranarray(pattern('f32', (2, 3))))
    np.save(os.path.join(folder, 'bigendian.npy'), pattern('f32', (3,)).astype('>f4'))
    np.save(os.path.join(folder, 'complex.npy'), np.zeros(2, dtype=np.complex64))
    np.save(os.path.join(folder, 'six_dims.npy'), np.zeros((1,) * 6, dtype=np.float32))
    np.save(os.path.join(folder, 'noncontiguous.npy'), pattern('f64', (4, 6))[::2, ::3])
else:
    bad = 0
    for name in DTYPES:
        for shape in SHAPES:
            a = np.load(fname(name, shape), allow_pickle=False)
            want = pattern(name, shape)
            if a.dtype != want.dtype or a.shape != want.shape or not np.array_equal(a, want):
                print('MISMATCH', name, shape, a.dtype, a.shape, a.ravel()[:4], want.ravel()[:4])
                bad += 1
    sys.exit(1 if bad else 0)
)PY";

}  // namespace

TEST_F(NpyFiles, InteropWithNumPy) {
  if (!python_with_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not found; NumPy interop not tested";
  const std::string script = path("interop.py");
  write_file("interop.py", kNumpyScript);
  const fs::path from_numpy = dir_ / "from_numpy", from_us = dir_ / "from_us";
  fs::create_directories(from_numpy);
  fs::create_directories(from_us);
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " write " + from_numpy.string()).c_str()), 0);

  auto file_name = [](DType dtype, const Shape& shape) {
    std::string name = dtype_name(dtype);
    name += '_';
    for (int i = 0; i < shape.size(); ++i) {
      if (i) name += 'x';
      name += std::to_string(shape[i]);
    }
    if (shape.size() == 0) name += "scalar";
    return name + ".npy";
  };
  // NumPy -> us.
  for (DType dtype : kDTypes) {
    for (const Shape& shape : kShapes) {
      const std::string name = file_name(dtype, shape);
      SCOPED_TRACE(name);
      const Tensor t = load_npy((from_numpy / name).string());
      const Tensor want = pattern_tensor(dtype, shape);
      EXPECT_EQ(t.dtype(), dtype);
      EXPECT_EQ(t.shape(), shape);
      EXPECT_EQ(raw_bytes(t), raw_bytes(want));
      save_npy((from_us / name).string(), want);  // for the other direction
    }
  }
  const Tensor v2 = load_npy((from_numpy / "v2.npy").string());
  EXPECT_EQ(raw_bytes(v2), raw_bytes(pattern_tensor(DType::f64, {2, 3})));
  const Tensor strided = load_npy((from_numpy / "noncontiguous.npy").string());
  EXPECT_EQ(strided.shape(), (Shape{2, 2}));
  EXPECT_EQ(strided.to_vector<double>(), (std::vector<double>{1.0 / 3, 4.0 / 3, 13.0 / 3, 16.0 / 3}));
  EXPECT_HPA_ERROR(load_npy((from_numpy / "fortran.npy").string()), "fortran.npy", "fortran_order True");
  EXPECT_HPA_ERROR(load_npy((from_numpy / "bigendian.npy").string()), "bigendian.npy", "'>f4'", "big-endian");
  EXPECT_HPA_ERROR(load_npy((from_numpy / "complex.npy").string()), "complex.npy", "unsupported dtype '<c8'");
  EXPECT_HPA_ERROR(load_npy((from_numpy / "six_dims.npy").string()), "six_dims.npy", "6 dimensions");

  // Us -> NumPy: the script compares every file with the values it computes itself.
  EXPECT_EQ(std::system(("/usr/bin/python3 " + script + " read " + from_us.string()).c_str()), 0)
      << "NumPy did not read back what save_npy wrote (see MISMATCH lines above)";
}
