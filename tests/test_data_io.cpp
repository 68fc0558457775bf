// data/ I/O: the Kaggle CSV files and DatasetIndex, the PNG/JPEG/TIFF readers (against files
// written by PIL, tifffile, pypng and tiffcp through tools/make_test_images.py), the PNG
// writer, the transforms, the synthetic generator, dataset stats and every bad-input case
// (errors must name the file and, for CSVs, the line).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/bad_samples.h"
#include "data/csv.h"
#include "data/error.h"
#include "data/file_io.h"
#include "data/hpa_classes.h"
#include "data/image.h"
#include "data/rng.h"
#include "data/stats.h"
#include "data/synth.h"
#include "data/transforms.h"
#include "tests/temp_dir.h"

namespace fs = std::filesystem;
using namespace hpa::data;

namespace {

using hpa::test::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Asserts that `body` throws DataError whose message contains every one of `parts`.
#define EXPECT_DATA_ERROR(body, ...)                                         \
  do {                                                                       \
    bool thrown_ = false;                                                    \
    try {                                                                    \
      body;                                                                  \
    } catch (const DataError& e) {                                           \
      thrown_ = true;                                                        \
      const std::string message_ = e.what();                                 \
      for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__}) \
        EXPECT_NE(message_.find(part_), std::string::npos)                   \
            << "message: " << message_ << "\n  lacks: " << part_;            \
    }                                                                        \
    EXPECT_TRUE(thrown_) << "expected a DataError from " #body;              \
  } while (0)

Image pattern_image(int channels, int height, int width, uint64_t seed) {
  Image image(channels, height, width);
  Rng rng(seed);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng.below(256));
  return image;
}

// ---- CSV -------------------------------------------------------------------------------------

TEST(Csv, ReadsTrainCsvWithCrlfBomAndTrailingBlankLines) {
  TempDir dir;
  const std::string path = dir.file("train.csv");
  write_text(path, "\xEF\xBB\xBFId,Target\r\nabc-1,0 25\r\nabc-2, 27 \r\nabc-3,7 0 3\r\n\r\n");
  const auto samples = read_train_csv(path);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[0].id, "abc-1");
  EXPECT_EQ(samples[0].labels, (1u << 0) | (1u << 25));
  EXPECT_EQ(samples[1].labels, 1u << 27);
  EXPECT_EQ(samples[2].label_list(), (std::vector<int>{0, 3, 7}));
  EXPECT_EQ(samples[2].label_count(), 3);
  EXPECT_EQ(format_labels(samples[2].labels), "0 3 7");
  const auto counts = label_counts(samples);
  EXPECT_EQ(counts[0], 2);
  EXPECT_EQ(counts[27], 1);
  EXPECT_EQ(counts[1], 0);
}

TEST(Csv, WriteReadRoundTrip) {
  TempDir dir;
  std::vector<Sample> samples = {{"a", 1u}, {"b", (1u << 27) | (1u << 4)}, {"c-d_e.f", 0x0fffffffu}};
  write_train_csv(dir.file("train.csv"), samples);
  EXPECT_EQ(read_train_csv(dir.file("train.csv")), samples);
  EXPECT_EQ(read_file_text(dir.file("train.csv")),
            "Id,Target\na,0\nb,4 27\nc-d_e.f,0 1 2 3 4 5 6 7 8 9 10 11 12 13 "
            "14 15 16 17 18 19 20 21 22 23 24 25 26 27\n");
}

TEST(Csv, ErrorsNameTheFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("train.csv");
  struct Case {
    std::string text;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"Id,Target\na,0\nb,28\n", {path, "line 3", "28", "outside 0..27"}},
      {"Id,Target\na,0\nb,-1\n", {path, "line 3", "-1", "outside"}},
      {"Id,Target\na,0 x\n", {path, "line 2", "\"x\" is not a number"}},
      {"Id,Target\na,1.5\n", {path, "line 2", "not a number"}},
      {"Id,Target\na,0\nb 3\n", {path, "line 3", "malformed line"}},
      {"Id,Target\na,0,1\n", {path, "line 2", "more than two fields"}},
      {"Id,Target\n,0\n", {path, "line 2", "malformed Id"}},
      {"Id,Target\n../x,0\n", {path, "line 2", "malformed Id"}},
      {"Id,Target\na,\n", {path, "line 2", "no labels"}},
      {"Id,Target\na,3 3\n", {path, "line 2", "listed twice"}},
      {"Id,Target\na,0\nb,1\n\na,2\n", {path, "line 5", "duplicate Id a", "first on line 2"}},
      {"Id,Target\n", {path, "empty dataset"}},
      {"Id,Target\n\n\n", {path, "empty dataset"}},
      {"", {path, "empty file"}},
      {"Id;Target\na,0\n", {path, "line 1", "header"}},
      {"a,0\nb,1\n", {path, "line 1", "header"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    write_text(path, c.text);
    EXPECT_DATA_ERROR(read_train_csv(path), c.parts);
  }
  EXPECT_DATA_ERROR(read_train_csv(dir.file("missing.csv")), dir.file("missing.csv"), "cannot open");
}

TEST(Csv, SubmissionIds) {
  TempDir dir;
  const std::string path = dir.file("sample_submission.csv");
  write_text(path, "Id,Predicted\nx1,0\nx2,\ny3,0 1\n");
  EXPECT_EQ(read_submission_ids(path), (std::vector<std::string>{"x1", "x2", "y3"}));
  write_text(path, "Id,Target\nx1,0\n");
  EXPECT_DATA_ERROR(read_submission_ids(path), path, "line 1", "Id,Predicted");
  write_text(path, "Id,Predicted\nx1,0\nx1,0\n");
  EXPECT_DATA_ERROR(read_submission_ids(path), path, "line 3", "duplicate Id x1");
  write_text(path, "Id,Predicted\n");
  EXPECT_DATA_ERROR(read_submission_ids(path), path, "empty dataset");
}

TEST(Csv, ParseLabels) {
  EXPECT_EQ(parse_labels("0", "w"), 1u);
  EXPECT_EQ(parse_labels("  27   0 ", "w"), (1u << 27) | 1u);
  EXPECT_DATA_ERROR(parse_labels("", "where"), "where", "no labels");
  EXPECT_DATA_ERROR(parse_labels("99999999999", "where"), "where", "not a number");
}

// ---- DatasetIndex ----------------------------------------------------------------------------

TEST(DatasetIndex, DetectsExtensionAndBuildsPaths) {
  TempDir dir;
  fs::create_directories(dir.path() / "train");
  write_text(dir.file("train.csv"), "Id,Target\ns1,0\ns2,5\n");
  write_text(dir.file("train/s1_red.tif"), "x");
  const DatasetIndex index = DatasetIndex::open(dir.path().string());
  EXPECT_EQ(index.extension(), ".tif");
  EXPECT_EQ(index.format(), ImageFormat::tiff);
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index.channel_path(1, Stain::yellow), (dir.path() / "train" / "s2_yellow.tif").string());
  EXPECT_EQ(index[1].labels, 1u << 5);

  fs::remove(dir.file("train/s1_red.tif"));
  write_text(dir.file("train/s1_red.png"), "x");
  EXPECT_EQ(DatasetIndex::open(dir.path().string()).extension(), ".png");
  fs::remove(dir.file("train/s1_red.png"));
  write_text(dir.file("train/s1_red.jpg"), "x");
  EXPECT_EQ(DatasetIndex::open(dir.path().string()).format(), ImageFormat::jpeg);
}

TEST(DatasetIndex, Errors) {
  TempDir dir;
  write_text(dir.file("train.csv"), "Id,Target\ns1,0\n");
  EXPECT_DATA_ERROR(DatasetIndex::open(dir.path().string()), "image directory not found");
  fs::create_directories(dir.path() / "train");
  EXPECT_DATA_ERROR(DatasetIndex::open(dir.path().string()), "no image for the first sample s1", "s1_red");
  EXPECT_DATA_ERROR(DatasetIndex::open(dir.path().string(), "nope.csv"), "nope.csv", "cannot open");
  EXPECT_DATA_ERROR(DatasetIndex("d", "d/train", ".bmp", {}), "unknown image extension");
}

TEST(DatasetIndex, OpensSubmissionWithoutLabels) {
  TempDir dir;
  fs::create_directories(dir.path() / "test");
  write_text(dir.file("sample_submission.csv"), "Id,Predicted\nt1,0\nt2,0\n");
  write_text(dir.file("test/t1_red.png"), "x");
  const DatasetIndex index = DatasetIndex::open(dir.path().string(), "sample_submission.csv", "test");
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[0].labels, 0u);
  EXPECT_EQ(index.channel_path(0, Stain::green), (dir.path() / "test" / "t1_green.png").string());
}

// ---- readers against other tools' files -------------------------------------------------------

struct Reference {
  std::string name;
  int width, height, channels, bits;
  bool exact;
};

// Runs tools/make_test_images.py once per test program; empty when Python lacks a module.
const std::vector<Reference>& references(std::string& dir, std::string& skip_reason) {
  static std::string made_dir, reason;
  static std::vector<Reference> refs;
  static bool done = false;
  if (!done) {
    done = true;
    made_dir = (fs::temp_directory_path() / ("hpa_test_images_" + std::to_string(::getpid()))).string();
    fs::remove_all(made_dir);
    const std::string script = std::string(HPA_SOURCE_DIR) + "/tools/make_test_images.py";
    if (!fs::exists("/usr/bin/python3")) {
      reason = "/usr/bin/python3 not found";
    } else {
      const std::string command = "/usr/bin/python3 " + script + " " + made_dir + " 2>" + made_dir + ".err";
      const int status = std::system(command.c_str());
      if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        reason = read_file_text(made_dir + ".err");
      } else if (status != 0) {
        reason = "FAILED";
        ADD_FAILURE() << command << " failed: " << read_file_text(made_dir + ".err");
      } else {
        std::istringstream manifest(read_file_text(made_dir + "/manifest.txt"));
        Reference r;
        std::string kind;
        while (manifest >> r.name >> r.width >> r.height >> r.channels >> r.bits >> kind) {
          r.exact = kind == "exact";
          refs.push_back(r);
        }
      }
      std::error_code ec;
      fs::remove(made_dir + ".err", ec);
    }
  }
  dir = made_dir;
  skip_reason = reason;
  return refs;
}

class OtherTools : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    refs_ = &references(dir_, reason);
    if (!reason.empty())
      GTEST_SKIP() << "reference images unavailable (python3 with numpy, PIL, tifffile, pypng; tiffcp): "
                   << reason;
  }
  static void TearDownTestSuite() {
    std::string dir, reason;
    references(dir, reason);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string dir_;
  const std::vector<Reference>* refs_ = nullptr;
};

TEST_F(OtherTools, EveryReferenceDecodesToTheWrittenSamples) {
  ASSERT_GE(refs_->size(), 20u);
  std::set<std::string> seen_kinds;
  for (const Reference& r : *refs_) {
    SCOPED_TRACE(r.name);
    const DecodedImage d = decode_image_file(dir_ + "/" + r.name);
    EXPECT_EQ(d.width, r.width);
    EXPECT_EQ(d.height, r.height);
    EXPECT_EQ(d.channels, r.channels);
    EXPECT_EQ(d.bit_depth, r.bits);
    const std::vector<uint8_t> raw = read_file_bytes(dir_ + "/" + r.name + ".raw");
    const size_t n = static_cast<size_t>(r.width) * r.height * r.channels;
    ASSERT_EQ(raw.size(), n * (r.bits / 8));
    if (r.bits == 16) {
      ASSERT_EQ(d.samples16.size(), n);
      std::vector<uint16_t> expected(n);
      std::memcpy(expected.data(), raw.data(), raw.size());  // little-endian host
      EXPECT_EQ(d.samples16, expected);
    } else if (r.exact) {
      EXPECT_EQ(d.samples8, raw);
    } else {
      // JPEG: stb_image and libjpeg differ in IDCT rounding, never by more than a few levels.
      ASSERT_EQ(d.samples8.size(), n);
      int worst = 0;
      double total = 0;
      for (size_t i = 0; i < n; ++i) {
        const int diff = std::abs(int{d.samples8[i]} - int{raw[i]});
        worst = std::max(worst, diff);
        total += diff;
      }
      EXPECT_LE(worst, 3);
      EXPECT_LE(total / n, 0.5);
    }
    seen_kinds.insert(r.name.substr(r.name.rfind('.')));
  }
  EXPECT_EQ(seen_kinds, (std::set<std::string>{".png", ".jpg", ".tif"}));
}

TEST_F(OtherTools, InterlacedPngsAndYcbcrJpegTiffAreAmongTheReferences) {
  // The cases only one writer here produces: the loop above covers them only while they are
  // in the manifest.
  std::set<std::string> names;
  for (const Reference& r : *refs_) names.insert(r.name);
  for (const char* name : {"pypng_gray8_interlaced.png", "pypng_gray16_interlaced.png",
                           "pypng_rgb8_interlaced.png", "tiffcp_ycbcr_jpeg.tif"})
    EXPECT_TRUE(names.count(name)) << name;
  // An interlaced 8-bit gray file is not for the fast path; the decoder hands it to libpng.
  const std::string name = "pypng_gray8_interlaced.png";
  const std::vector<uint8_t> bytes = read_file_bytes(dir_ + "/" + name);
  EXPECT_EQ(decode_png_memory(bytes.data(), bytes.size(), name).samples8,
            decode_png_memory_libpng(bytes.data(), bytes.size(), name).samples8);
}

TEST_F(OtherTools, FastPngPathMatchesLibpng) {
  for (const char* name : {"pil_gray8.png", "pil_gray8_optimized.png"}) {
    const std::vector<uint8_t> bytes = read_file_bytes(dir_ + "/" + name);
    const DecodedImage fast = decode_png_memory(bytes.data(), bytes.size(), name);
    const DecodedImage general = decode_png_memory_libpng(bytes.data(), bytes.size(), name);
    EXPECT_EQ(fast.samples8, general.samples8) << name;
    EXPECT_EQ(fast.width, general.width);
    EXPECT_EQ(fast.channels, 1);
  }
}

TEST_F(OtherTools, StainRuleOnColourAndSixteenBitFiles) {
  // RGB: red -> R, green -> G, blue -> B, yellow -> round((R + G) / 2).
  const DecodedImage rgb = decode_image_file(dir_ + "/pil_rgb8.png");
  const std::vector<uint8_t> raw = read_file_bytes(dir_ + "/pil_rgb8.png.raw");
  for (Stain stain : kStains) {
    const Image plane = read_stain_plane(dir_ + "/pil_rgb8.png", stain, rgb.height, rgb.width);
    ASSERT_EQ(plane.channels, 1);
    for (size_t i = 0; i < plane.plane_size(); ++i) {
      const uint8_t* px = &raw[i * 3];
      const int expected = stain == Stain::yellow ? (px[0] + px[1] + 1) / 2 : px[static_cast<int>(stain)];
      ASSERT_EQ(plane.pixels[i], expected) << stain_name(stain) << " pixel " << i;
    }
  }
  // 16-bit: round(v / 257).
  const std::vector<uint8_t> raw16 = read_file_bytes(dir_ + "/tifffile_gray16.tif.raw");
  const Image plane = read_stain_plane(dir_ + "/tifffile_gray16.tif", Stain::green);
  for (size_t i = 0; i < plane.plane_size(); ++i) {
    const unsigned v = raw16[2 * i] | (raw16[2 * i + 1] << 8);
    ASSERT_EQ(plane.pixels[i], static_cast<uint8_t>(std::lround(v / 257.0))) << i;
  }
}

TEST_F(OtherTools, UnsupportedSampleFormatIsRefused) {
  const std::string path = dir_ + "/unsupported_float32.tif";
  EXPECT_DATA_ERROR(decode_image_file(path), path, "unsupported TIFF");
}

TEST_F(OtherTools, TruncatedAndCorruptedFilesOfEveryKindAreErrors) {
  TempDir tmp;
  for (const Reference& r : *refs_) {
    SCOPED_TRACE(r.name);
    const std::vector<uint8_t> bytes = read_file_bytes(dir_ + "/" + r.name);
    // Truncation at several points: never a crash, always a DataError naming the file.
    for (double keep : {0.0, 0.1, 0.5, 0.9}) {
      const std::string path = tmp.file("cut_" + r.name);
      write_bytes(
          path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() * keep)));
      EXPECT_DATA_ERROR(decode_image_file(path), path);
    }
  }
}

TEST_F(OtherTools, RandomlyCorruptedFilesDecodeOrThrowDataError) {
  // Not a fuzzer (data-pipe's libFuzzer targets are), a smoke test of the same contract:
  // flipped bytes anywhere give either an image or a DataError, never a crash or another type.
  Rng rng(2024);
  int errors = 0, decoded = 0;
  for (const Reference& r : *refs_) {
    const std::vector<uint8_t> bytes = read_file_bytes(dir_ + "/" + r.name);
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<uint8_t> mutated = bytes;
      const int flips = 1 + static_cast<int>(rng.below(4));
      for (int f = 0; f < flips; ++f)
        mutated[rng.below(mutated.size())] ^= static_cast<uint8_t>(1 + rng.below(255));
      try {
        const DecodedImage d = decode_image_memory(mutated.data(), mutated.size(), r.name);
        EXPECT_EQ(d.samples8.size() + d.samples16.size(),
                  static_cast<size_t>(d.width) * d.height * d.channels);
        ++decoded;
      } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find(r.name), std::string::npos) << e.what();
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(decoded, 0);  // uncompressed TIFF pixel bytes can change without breaking the file
}

// ---- our own PNG writer and the fast decode path ---------------------------------------------

TEST(Png, RoundTripThroughOurWriterAndPil) {
  TempDir dir;
  for (auto [h, w] : {std::pair{1, 1}, {1, 7}, {7, 1}, {37, 53}, {64, 64}}) {
    const Image image = pattern_image(1, h, w, static_cast<uint64_t>(h * 100 + w));
    for (int level : {0, 1, 6, 12}) {
      const std::string path = dir.file("p.png");
      write_png_gray(path, image.pixels.data(), h, w, level);
      const DecodedImage d = decode_image_file(path);
      ASSERT_EQ(d.width, w);
      ASSERT_EQ(d.height, h);
      ASSERT_EQ(d.channels, 1);
      EXPECT_EQ(d.samples8, image.pixels) << h << "x" << w << " level " << level;
      // libpng reads our files the same (the fast path is not the only one that accepts them).
      const std::vector<uint8_t> bytes = read_file_bytes(path);
      EXPECT_EQ(decode_png_memory_libpng(bytes.data(), bytes.size(), path).samples8, image.pixels);
    }
  }
  // The file is a valid PNG for another decoder too.
  const Image image = pattern_image(1, 19, 23, 5);
  write_png_gray(dir.file("q.png"), image.pixels.data(), 19, 23);
  write_bytes(dir.file("q.raw"), image.pixels);
  if (std::system("/usr/bin/python3 -c 'import PIL' 2>/dev/null") != 0) GTEST_SKIP() << "PIL not available";
  const std::string check =
      "/usr/bin/python3 -c \"from PIL import Image; import sys; "
      "a = Image.open(sys.argv[1]); assert a.mode == 'L' and a.size == (23, 19); "
      "assert a.tobytes() == open(sys.argv[2], 'rb').read()\" " +
      dir.file("q.png") + " " + dir.file("q.raw");
  EXPECT_EQ(std::system(check.c_str()), 0);
}

TEST(Png, NoTemporaryFilesAreLeft) {
  TempDir dir;
  const Image image = pattern_image(1, 8, 8, 1);
  for (int i = 0; i < 3; ++i) write_png_gray(dir.file("x.png"), image.pixels.data(), 8, 8);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "x.png");
  }
  EXPECT_EQ(files, 1);
}

uint32_t crc32_of(const uint8_t* p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xffffffffu;
}

// Rewrites the CRC of the chunk starting at `offset` after its data was changed.
void fix_crc(std::vector<uint8_t>& png, size_t offset) {
  const uint32_t length =
      (uint32_t{png[offset]} << 24) | (png[offset + 1] << 16) | (png[offset + 2] << 8) | png[offset + 3];
  const uint32_t crc = crc32_of(&png[offset + 4], length + 4);
  for (int i = 0; i < 4; ++i) png[offset + 8 + length + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
}

TEST(Png, CorruptFilesAreErrorsNamingTheFile) {
  TempDir dir;
  const Image image = pattern_image(1, 16, 16, 9);
  const std::vector<uint8_t> good = encode_png_gray(image.pixels.data(), 16, 16);
  const std::string path = dir.file("bad.png");
  auto expect_error = [&](std::vector<uint8_t> bytes, const std::string& what) {
    write_bytes(path, bytes);
    EXPECT_DATA_ERROR(decode_image_file(path), path, what);
  };
  // IHDR at 8, IDAT at 33.
  {
    auto b = good;
    b[40] ^= 0xff;  // a data byte: CRC mismatch
    expect_error(b, "CRC mismatch");
  }
  {
    auto b = good;
    b.resize(b.size() - 12);  // no IEND
    expect_error(b, "no IEND");
  }
  {
    auto b = good;
    b.resize(b.size() - 20);  // cut inside IDAT
    expect_error(b, "truncated");
  }
  {
    auto b = good;
    b[33 + 8 + 5] ^= 0x55;  // deflate data garbled, CRC recomputed
    fix_crc(b, 33);
    expect_error(b, "PNG");
  }
  {
    auto b = good;
    b[16 + 3] = 17;  // width 17 but 16-pixel rows: too little data
    fix_crc(b, 8);
    expect_error(b, "truncated PNG image data");
  }
  {
    auto b = good;
    b[16 + 3] = 0;
    b[16 + 2] = 0;  // width 0
    fix_crc(b, 8);
    expect_error(b, "bad image size");
  }
  {
    auto b = good;
    b[16] = 0x7f;  // width 2^30: over the size limit
    fix_crc(b, 8);
    expect_error(b, "too large");
  }
  expect_error({}, "empty file");
  expect_error({1, 2, 3, 4, 5, 6, 7, 8, 9}, "not a PNG, JPEG or TIFF");
  expect_error(std::vector<uint8_t>(good.begin(), good.begin() + 8), "truncated PNG");
  EXPECT_DATA_ERROR(decode_image_file(dir.file("absent.png")), dir.file("absent.png"), "cannot open");
}

TEST(Png, FilterTypeOutOfRangeIsAnError) {
  TempDir dir;
  // A 2x2 gray image whose first row claims filter type 5, built by hand.
  const uint8_t zlib_stored[] = {0x78, 0x01, 0x01, 0x06, 0x00, 0xf9, 0xff, 5, 1, 2, 0, 3, 4};
  std::vector<uint8_t> raw_rows = {5, 1, 2, 0, 3, 4};
  uint32_t a = 1, b = 0;
  for (uint8_t v : raw_rows) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  std::vector<uint8_t> idat(zlib_stored, zlib_stored + sizeof zlib_stored);
  for (int shift : {24, 16, 8, 0}) idat.push_back(static_cast<uint8_t>(((b << 16) | a) >> shift));
  const Image ok = pattern_image(1, 2, 2, 1);
  std::vector<uint8_t> png = encode_png_gray(ok.pixels.data(), 2, 2);
  // Replace the IDAT (offset 33) with ours.
  const uint32_t old_len = (png[33] << 24) | (png[34] << 16) | (png[35] << 8) | png[36];
  std::vector<uint8_t> out(png.begin(), png.begin() + 33);
  for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<uint8_t>(idat.size() >> shift));
  out.insert(out.end(), {'I', 'D', 'A', 'T'});
  out.insert(out.end(), idat.begin(), idat.end());
  out.insert(out.end(), 4, 0);
  fix_crc(out, 33);
  out.insert(out.end(), png.begin() + 33 + 12 + old_len, png.end());
  const std::string path = dir.file("f.png");
  write_bytes(path, out);
  EXPECT_DATA_ERROR(decode_image_file(path), path, "filter type 5");
}

// ---- sample loading ----------------------------------------------------------------------------

// A dataset of `count` samples of size x size whose channel c of sample i is filled by fill(i, c, y, x).
template <typename Fill>
void write_dataset(const TempDir& dir, int count, int size, Fill fill) {
  fs::create_directories(dir.path() / "train");
  std::vector<Sample> samples;
  for (int i = 0; i < count; ++i) {
    std::string id = "s";  // appended, not `"s" + ...`: GCC 12 warns falsely (-Wrestrict) on that
    id += std::to_string(i);
    samples.push_back(Sample{id, 1u << (i % kNumClasses)});
    for (Stain stain : kStains) {
      std::vector<uint8_t> plane(static_cast<size_t>(size) * size);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x)
          plane[static_cast<size_t>(y) * size + x] = fill(i, static_cast<int>(stain), y, x);
      std::string name = "train/";
      name += id;
      name += '_';
      name += stain_name(stain);
      name += ".png";
      write_png_gray(dir.file(name), plane.data(), size, size);
    }
  }
  write_train_csv(dir.file("train.csv"), samples);
}

TEST(LoadSample, FourChannelsInOrderAndBadInputs) {
  TempDir dir;
  write_dataset(dir, 2, 8,
                [](int i, int c, int y, int x) { return static_cast<uint8_t>(i * 100 + c * 10 + y + x); });
  const DatasetIndex index = DatasetIndex::open(dir.path().string());
  const Image image = load_sample_image(index, 1, 8);
  ASSERT_EQ(image.channels, 4);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(image.at(c, 2, 3), 100 + c * 10 + 5);

  // Wrong dimensions against the expected size.
  EXPECT_DATA_ERROR(load_sample_image(index, 0, 16), index.channel_path(0, Stain::red), "8x8",
                    "expected 16x16");
  // Channels that disagree in size.
  const Image small = pattern_image(1, 4, 8, 1);
  write_png_gray(index.channel_path(0, Stain::blue), small.pixels.data(), 4, 8);
  EXPECT_DATA_ERROR(load_sample_image(index, 0), index.channel_path(0, Stain::blue), "8x4", "is 8x8");
  // A missing channel file.
  fs::remove(index.channel_path(1, Stain::yellow));
  EXPECT_DATA_ERROR(load_sample_image(index, 1), index.channel_path(1, Stain::yellow), "cannot open");
  // A corrupt one.
  write_text(index.channel_path(1, Stain::yellow), "not an image at all");
  EXPECT_DATA_ERROR(load_sample_image(index, 1), index.channel_path(1, Stain::yellow), "not a PNG");
}

// ---- transforms ----------------------------------------------------------------------------------

TEST(Transforms, DihedralGroupLaws) {
  const Image x = pattern_image(2, 5, 7, 3);  // non-square, no symmetry
  std::set<std::string> distinct;             // as strings: GCC 12 warns falsely on set<vector<uint8_t>>
  for (int k = 0; k < kDihedralCount; ++k) {
    const Image y = dihedral(x, k);
    EXPECT_EQ(y.channels, 2);
    EXPECT_EQ(y.height, (k & 1) ? 7 : 5) << k;
    EXPECT_EQ(y.width, (k & 1) ? 5 : 7) << k;
    distinct.insert(std::string(y.pixels.begin(), y.pixels.end()));
    EXPECT_EQ(dihedral(y, dihedral_inverse(k)), x) << k;
    EXPECT_EQ(dihedral_compose(k, dihedral_inverse(k)), 0);
    for (int j = 0; j < kDihedralCount; ++j)
      EXPECT_EQ(dihedral(y, j), dihedral(x, dihedral_compose(k, j))) << k << " then " << j;
  }
  EXPECT_EQ(distinct.size(), 8u);
  EXPECT_EQ(dihedral(x, 0), x);
  // Hand-checked elements on a 2x3 image [[1 2 3] [4 5 6]].
  Image m(1, 2, 3);
  m.pixels = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(dihedral(m, 1).pixels, (std::vector<uint8_t>{3, 6, 2, 5, 1, 4}));  // 90° counter-clockwise
  EXPECT_EQ(dihedral(m, 2).pixels, (std::vector<uint8_t>{6, 5, 4, 3, 2, 1}));  // 180°
  EXPECT_EQ(dihedral(m, 4).pixels, (std::vector<uint8_t>{3, 2, 1, 6, 5, 4}));  // horizontal flip
  EXPECT_DATA_ERROR(dihedral(m, 8), "dihedral", "8");
  EXPECT_DATA_ERROR(dihedral(m, -1), "dihedral");
}

TEST(Transforms, CropBoundsAndPlacement) {
  const Image x = pattern_image(4, 6, 9, 4);
  const Image c = crop(x, 1, 2, 3, 4);
  for (int ch = 0; ch < 4; ++ch)
    for (int y = 0; y < 3; ++y)
      for (int xx = 0; xx < 4; ++xx) ASSERT_EQ(c.at(ch, y, xx), x.at(ch, y + 1, xx + 2));
  EXPECT_EQ(center_crop(x, 4, 5), crop(x, 1, 2, 4, 5));
  EXPECT_EQ(crop(x, 0, 0, 6, 9), x);
  EXPECT_DATA_ERROR(crop(x, 4, 0, 3, 4), "crop", "6x9");
  EXPECT_DATA_ERROR(crop(x, 0, 6, 3, 4), "crop");
  EXPECT_DATA_ERROR(crop(x, -1, 0, 3, 4), "crop");
  EXPECT_DATA_ERROR(crop(x, 0, 0, 0, 4), "crop");
  EXPECT_DATA_ERROR(center_crop(x, 7, 9), "crop");
  Rng rng(1);
  EXPECT_DATA_ERROR(random_crop(x, 7, 3, rng), "random_crop", "6x9");

  // Every window position occurs and nothing outside: 4 x 7 = 28 positions for a 3x3 window.
  Image coords(1, 6, 9);
  for (int y = 0; y < 6; ++y)
    for (int xx = 0; xx < 9; ++xx) coords.at(0, y, xx) = static_cast<uint8_t>(y * 16 + xx);
  std::set<int> seen;
  for (int i = 0; i < 2000; ++i) {
    const Image w = random_crop(coords, 3, 3, rng);
    const int top = w.at(0, 0, 0) / 16, left = w.at(0, 0, 0) % 16;
    ASSERT_LE(top, 3);
    ASSERT_LE(left, 6);
    seen.insert(top * 16 + left);
  }
  EXPECT_EQ(seen.size(), 28u);
}

TEST(Transforms, ResizeOfConstantImageStaysConstant) {
  for (auto [h, w, oh, ow] : {std::array{7, 7, 3, 3},
                              {512, 512, 384, 384},
                              {64, 48, 17, 29},
                              {5, 6, 11, 13},
                              {9, 3, 2, 8},
                              {1, 1, 4, 4}}) {
    Image x(4, h, w);
    for (int c = 0; c < 4; ++c) std::fill_n(x.channel(c), x.plane_size(), static_cast<uint8_t>(37 + 60 * c));
    const Image y = resize(x, oh, ow);
    ASSERT_EQ(y.height, oh);
    ASSERT_EQ(y.width, ow);
    for (int c = 0; c < 4; ++c)
      for (size_t i = 0; i < y.plane_size(); ++i)
        ASSERT_EQ(y.channel(c)[i], 37 + 60 * c) << h << "x" << w << " -> " << oh << "x" << ow;
  }
}

TEST(Transforms, HalvingIsTheTwoByTwoMean) {
  const Image x = pattern_image(3, 10, 14, 7);
  const Image y = resize(x, 5, 7);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 7; ++j) {
        const int sum = x.at(c, 2 * i, 2 * j) + x.at(c, 2 * i, 2 * j + 1) + x.at(c, 2 * i + 1, 2 * j) +
                        x.at(c, 2 * i + 1, 2 * j + 1);
        ASSERT_EQ(y.at(c, i, j), (sum + 2) / 4) << c << " " << i << " " << j;  // round half up
      }
}

TEST(Transforms, AreaResizeByNonIntegerFactor) {
  // 3 -> 2 on one axis: outputs cover [0, 1.5) and [1.5, 3): (a + b/2) / 1.5 and (b/2 + c) / 1.5.
  Image x(1, 1, 3);
  x.pixels = {30, 90, 150};
  const Image y = resize(x, 1, 2);
  EXPECT_EQ(y.pixels, (std::vector<uint8_t>{50, 130}));
  // Area averaging keeps the mean (up to rounding).
  const Image big = pattern_image(1, 90, 90, 8);
  const Image small = resize(big, 40, 40);
  const double mean_big = std::accumulate(big.pixels.begin(), big.pixels.end(), 0.0) / big.pixels.size();
  const double mean_small =
      std::accumulate(small.pixels.begin(), small.pixels.end(), 0.0) / small.pixels.size();
  EXPECT_NEAR(mean_small, mean_big, 0.5);
}

TEST(Transforms, BilinearWhenGrowing) {
  // 2 -> 4 with half-pixel centres: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped).
  Image x(1, 1, 2);
  x.pixels = {0, 200};
  EXPECT_EQ(resize(x, 1, 4).pixels, (std::vector<uint8_t>{0, 50, 150, 200}));
  EXPECT_EQ(resize(x, 1, 2), x);
  EXPECT_DATA_ERROR(resize(x, 0, 2), "resize");
}

TEST(Transforms, JitterPlaneIsTheDocumentedFormula) {
  // jitter_plane's mean comes from a vectorized byte sum (whole registers, then a tail): at
  // sizes around the register widths and large enough for big sums, every byte must equal
  // clamp(floor(contrast * (v - mean) + mean + 255 * brightness + 0.5)) with the mean summed
  // here byte by byte.
  Rng rng(77);
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{31}, size_t{32},
                   size_t{33}, size_t{95}, size_t{1000}, size_t{512 * 512 + 7}}) {
    std::vector<uint8_t> plane(n + 1);
    for (auto& v : plane) v = static_cast<uint8_t>(rng.below(256));
    for (auto [contrast, brightness] : {std::pair{1.0, 0.0}, std::pair{0.8, 0.05}, std::pair{1.3, -0.1}}) {
      std::vector<uint8_t> got = plane;
      jitter_plane(got.data(), n, contrast, brightness);
      uint64_t sum = 0;
      for (size_t i = 0; i < n; ++i) sum += plane[i];
      const double mean = n ? static_cast<double>(sum) / static_cast<double>(n) : 0.0;
      for (size_t i = 0; i < n; ++i) {
        const double v = std::floor(contrast * (plane[i] - mean) + mean + 255.0 * brightness + 0.5);
        ASSERT_EQ(got[i], static_cast<uint8_t>(std::clamp(v, 0.0, 255.0)))
            << "n " << n << ", byte " << i << ", contrast " << contrast << ", brightness " << brightness;
      }
      ASSERT_EQ(got[n], plane[n]) << "wrote past the plane, n " << n;
    }
  }
}

TEST(Transforms, JitterNormalizeAndAugmentAreDeterministic) {
  const Image x = pattern_image(4, 16, 16, 11);
  Image a = x, b = x, c = x;
  Rng r1(5), r2(5), r3(6);
  color_jitter(a, 0.1, 0.2, r1);
  color_jitter(b, 0.1, 0.2, r2);
  color_jitter(c, 0.1, 0.2, r3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  Image same = x;
  Rng r4(7);
  color_jitter(same, 0.0, 0.0, r4);
  EXPECT_EQ(same, x);

  // Brightness only: a constant channel moves by 255 * b, the same b for every pixel.
  Image flat(4, 4, 4);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 100);
  Rng r5(9);
  color_jitter(flat, 0.1, 0.0, r5);
  for (int ch = 0; ch < 4; ++ch) {
    const uint8_t v = flat.channel(ch)[0];
    EXPECT_GE(v, 74);
    EXPECT_LE(v, 126);
    for (size_t i = 0; i < flat.plane_size(); ++i) ASSERT_EQ(flat.channel(ch)[i], v);
  }

  ChannelStats stats;
  stats.mean = {0.1, 0.2, 0.3, 0.4};
  stats.std = {0.5, 0.25, 0.125, 1.0};
  Image px(4, 1, 2);
  px.pixels = {0, 255, 51, 102, 255, 0, 153, 204};
  std::vector<float> out(8);
  normalize(px, stats, out.data());
  const std::vector<float> expected = {-0.2f, 1.8f, 0.0f, 0.8f, 5.6f, -2.4f, 0.2f, 0.4f};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(out[i], expected[i], 1e-6) << i;
  stats.std[2] = 0;
  EXPECT_DATA_ERROR(normalize(px, stats, out.data()), "normalize", "std of channel 2");
  EXPECT_DATA_ERROR(normalize(pattern_image(3, 2, 2, 1), ChannelStats{}, out.data()), "normalize",
                    "3 channels");

  AugmentOptions options;
  options.crop_size = 8;
  options.brightness = 0.05;
  options.contrast = 0.1;
  Rng g1(42), g2(42), g3(43);
  const Image p = augment(x, options, g1), q = augment(x, options, g2), r = augment(x, options, g3);
  EXPECT_EQ(p, q);
  EXPECT_NE(p, r);
  EXPECT_EQ(p.height, 8);
  EXPECT_EQ(p.width, 8);
}

TEST(Rng, DeterministicStreamsAndRanges) {
  Rng a(1, 2), b(1, 2), c(1, 3), d(2, 2);
  for (int i = 0; i < 4; ++i) {
    const uint64_t v = a.next_u64();
    EXPECT_EQ(v, b.next_u64());
    EXPECT_NE(v, c.next_u64());
    EXPECT_NE(v, d.next_u64());
  }
  Rng r(3);
  double sum = 0;
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    const int64_t k = r.range(-3, 3);
    ASSERT_GE(k, -3);
    ASSERT_LE(k, 3);
    ++hist[static_cast<size_t>(k + 3)];
  }
  EXPECT_NEAR(sum / 70000, 0.5, 0.01);
  for (int h : hist) EXPECT_NEAR(h, 10000, 500);
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
}

// ---- synthetic data --------------------------------------------------------------------------

std::map<std::string, std::vector<uint8_t>> directory_bytes(const fs::path& dir) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file())
      files[fs::relative(entry.path(), dir).string()] = read_file_bytes(entry.path().string());
  return files;
}

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
  TempDir a, b, c;
  SynthOptions options;
  options.count = 6;
  options.size = 96;
  options.seed = 17;
  options.progress_seconds = 0;
  options.threads = 1;
  write_synth_dataset(a.path().string(), options);
  options.threads = 3;
  write_synth_dataset(b.path().string(), options);
  options.seed = 18;
  write_synth_dataset(c.path().string(), options);
  const auto fa = directory_bytes(a.path()), fb = directory_bytes(b.path()), fc = directory_bytes(c.path());
  EXPECT_EQ(fa.size(), 1u + 6 * 4);  // train.csv and 4 PNGs per sample, no temporaries
  EXPECT_EQ(fa, fb);
  EXPECT_NE(fa.at("train.csv"), fc.at("train.csv"));
  for (const auto& [name, bytes] : fa) {
    if (name == "train.csv") continue;
    EXPECT_EQ(fc.count(name), 0u) << name << " (ids must depend on the seed)";
  }

  // The dataset reads back through the normal path, at the right size, labels 1..4.
  const DatasetIndex index = DatasetIndex::open(a.path().string());
  ASSERT_EQ(index.size(), 6u);
  for (size_t i = 0; i < index.size(); ++i) {
    EXPECT_GE(index[i].label_count(), 1);
    EXPECT_LE(index[i].label_count(), 4);
    const Image image = load_sample_image(index, i, 96);
    EXPECT_EQ(image, synth_image(index[i].labels, 96, 17, static_cast<int64_t>(i)));
  }
}

TEST(Synth, LabelStatisticsFollowTheRealCounts) {
  constexpr int kSamples = 2000;
  std::array<double, kNumClasses> counts{};
  std::array<int, 5> per_sample{};
  int lysosomes = 0, lysosomes_with_endosomes = 0;
  for (int i = 0; i < kSamples; ++i) {
    const LabelMask m = synth_labels(123, i);
    EXPECT_EQ(m, synth_labels(123, i));
    const int n = __builtin_popcount(m);
    ASSERT_GE(n, 1);
    ASSERT_LE(n, 4);
    ++per_sample[static_cast<size_t>(n)];
    for (int c = 0; c < kNumClasses; ++c) counts[c] += (m >> c) & 1u;
    if ((m >> 10) & 1u) {
      ++lysosomes;
      lysosomes_with_endosomes += (m >> 9) & 1u;
    }
  }
  // Spearman rank correlation with the public counts (average ranks for ties).
  auto ranks = [](const std::array<double, kNumClasses>& v) {
    std::array<double, kNumClasses> r{};
    for (int i = 0; i < kNumClasses; ++i) {
      double less = 0, equal = 0;
      for (int j = 0; j < kNumClasses; ++j) {
        less += v[j] < v[i];
        equal += v[j] == v[i];
      }
      r[i] = less + (equal + 1) / 2;
    }
    return r;
  };
  std::array<double, kNumClasses> real{};
  for (int c = 0; c < kNumClasses; ++c) real[c] = static_cast<double>(kHpaTrainCounts[c]);
  const auto ra = ranks(counts), rb = ranks(real);
  double d2 = 0;
  for (int c = 0; c < kNumClasses; ++c) d2 += (ra[c] - rb[c]) * (ra[c] - rb[c]);
  const double spearman = 1 - 6 * d2 / (kNumClasses * (kNumClasses * kNumClasses - 1.0));
  EXPECT_GT(spearman, 0.9);
  // The two most common classes are nucleoplasm and cytosol; rare ones stay rare.
  EXPECT_GT(counts[0], counts[25]);
  for (int c = 0; c < kNumClasses; ++c) {
    if (c != 0 && c != 25) {
      EXPECT_LT(counts[c], counts[25]) << c;
    }
  }
  for (int c : {8, 9, 10, 15, 27}) EXPECT_LT(counts[c] / kSamples, 0.01) << c;
  // Frequencies near the real ones: nucleoplasm 41% of images in train.csv.
  EXPECT_NEAR(counts[0] / kSamples, 12885.0 / 31072, 0.05);
  EXPECT_NEAR(counts[25] / kSamples, 8228.0 / 31072, 0.05);
  EXPECT_GT(per_sample[1], per_sample[3]);
  EXPECT_GT(per_sample[2], per_sample[4]);
  if (lysosomes > 0) {
    EXPECT_GE(lysosomes_with_endosomes * 2, lysosomes);
  }
}

TEST(Synth, EveryClassDrawsAVisibleGreenPattern) {
  const Image none = synth_image(0, 256, 5, 0);
  std::set<std::string> greens;
  for (int c = 0; c < kNumClasses; ++c) {
    const Image image = synth_image(1u << c, 256, 5, 0);
    // Only green changes with the labels; the reference channels stay, except for the two
    // classes that change the cells themselves (daughter cells, a mitotic cell).
    for (int ch : {0, 2, 3}) {
      if (c == 16 || c == 17) continue;
      EXPECT_TRUE(std::equal(image.channel(ch), image.channel(ch) + image.plane_size(), none.channel(ch)))
          << "class " << c << " changed channel " << ch;
    }
    int bright = 0;
    for (size_t i = 0; i < image.plane_size(); ++i) bright += image.channel(1)[i] > none.channel(1)[i] + 25;
    EXPECT_GE(bright, 20) << "class " << c << " (" << kHpaClassNames[c] << ") is barely visible";
    greens.emplace(image.channel(1), image.channel(1) + image.plane_size());
  }
  EXPECT_EQ(greens.size(), static_cast<size_t>(kNumClasses));
  EXPECT_DATA_ERROR(synth_image(1, 32, 0, 0), "synth", "32");
}

TEST(Synth, BadOptions) {
  TempDir dir;
  SynthOptions options;
  options.count = 0;
  EXPECT_DATA_ERROR(write_synth_dataset(dir.path().string(), options), "count");
  options.count = 1;
  options.size = 10;
  EXPECT_DATA_ERROR(write_synth_dataset(dir.path().string(), options), "size");
  write_text(dir.file("blocker"), "a file where a directory should go");
  options.size = 64;
  EXPECT_DATA_ERROR(write_synth_dataset(dir.file("blocker"), options), "blocker");
}

TEST(Synth, IdsAreUuidShaped) {
  const std::string id = synth_id(1, 2);
  ASSERT_EQ(id.size(), 36u);
  for (int dash : {8, 13, 18, 23}) EXPECT_EQ(id[static_cast<size_t>(dash)], '-');
  EXPECT_NE(id, synth_id(1, 3));
  EXPECT_NE(id, synth_id(2, 2));
}

// ---- stats and --skip-bad ---------------------------------------------------------------------

TEST(Stats, MeanAndStdOfKnownPixels) {
  TempDir dir;
  // Channel c of every sample: half the pixels 0, half v_c => mean v/2, std v/2 on [0, 1].
  const std::array<int, 4> v = {255, 102, 0, 51};
  write_dataset(dir, 3, 8, [&](int, int c, int, int x) { return static_cast<uint8_t>(x % 2 ? v[c] : 0); });
  const DatasetIndex index = DatasetIndex::open(dir.path().string());
  std::ostringstream warnings;
  BadSamples bad(false, warnings);
  for (int threads : {1, 2, 3}) {
    StatsOptions options;
    options.threads = threads;
    const StatsResult r = compute_channel_stats(index, bad, options);
    EXPECT_EQ(r.samples_used, 3);
    EXPECT_EQ(r.pixels_per_channel, 3 * 64);
    for (int c = 0; c < 4; ++c) {
      EXPECT_NEAR(r.stats.mean[c], v[c] / 510.0, 1e-12) << c;
      EXPECT_NEAR(r.stats.std[c], v[c] / 510.0, 1e-12) << c;
    }
  }
  EXPECT_EQ(warnings.str(), "");

  // JSON round trip and format.
  ChannelStats s;
  s.mean = {0.1, 0.2, 0.3, 0.4};
  s.std = {0.5, 0.6, 0.7, 0.8};
  EXPECT_EQ(stats_to_json(s), "{\"mean\":[0.1,0.2,0.3,0.4],\"std\":[0.5,0.6,0.7,0.8]}\n");
  write_stats_json(dir.file("stats.json"), s);
  const ChannelStats back = read_stats_json(dir.file("stats.json"));
  EXPECT_EQ(back.mean, s.mean);
  EXPECT_EQ(back.std, s.std);
  EXPECT_DATA_ERROR(stats_from_json("{\"mean\":[1,2,3],\"std\":[1,2,3,4]}", "f.json"), "f.json", "mean");
  EXPECT_DATA_ERROR(stats_from_json("{\"mean\":[1,2,3,4]}", "f.json"), "f.json", "no \"std\"");
  EXPECT_DATA_ERROR(stats_from_json("{\"mean\":[1,2,3,4],\"std\":[1,0,3,4]}", "f.json"), "f.json",
                    "must be > 0");
}

TEST(Stats, SkipBadWarnsOncePerSampleAndCounts) {
  TempDir dir;
  write_dataset(dir, 4, 8, [](int i, int c, int, int) { return static_cast<uint8_t>(i * 50 + c); });
  const DatasetIndex index = DatasetIndex::open(dir.path().string());
  fs::remove(index.channel_path(1, Stain::green));
  write_text(index.channel_path(3, Stain::red), "garbage");

  std::ostringstream quiet;
  BadSamples strict(false, quiet);
  EXPECT_THROW(compute_channel_stats(index, strict, {}), DataError);

  std::ostringstream warnings;
  BadSamples skipping(true, warnings);
  StatsOptions options;
  options.threads = 2;
  const StatsResult r = compute_channel_stats(index, skipping, options);
  EXPECT_EQ(r.samples_used, 2);
  EXPECT_EQ(skipping.skipped(), 2);
  EXPECT_NEAR(r.stats.mean[0], (0 + 100) / 2.0 / 255.0, 1e-12);  // samples 0 and 2
  const std::string text = warnings.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_NE(text.find("skipping sample s1: " + index.channel_path(1, Stain::green)), std::string::npos)
      << text;
  EXPECT_NE(text.find("skipping sample s3: " + index.channel_path(3, Stain::red)), std::string::npos) << text;
  skipping.print_summary("stats");
  EXPECT_NE(warnings.str().find("stats: skipped 2 bad samples"), std::string::npos);

  // Every sample bad: an error, not a division by zero.
  for (size_t i : {0u, 2u}) fs::remove(index.channel_path(i, Stain::blue));
  std::ostringstream more;
  BadSamples all_bad(true, more);
  EXPECT_DATA_ERROR(compute_channel_stats(index, all_bad, {}), "no usable samples");
}

// ---- the hpa_data program -----------------------------------------------------------------------

// Runs the built hpa_data with arguments; returns the exit status and fills `output` with
// stdout + stderr. Skips when the program is not built. The build directory is the one
// this test was compiled in (HPA_BUILD_DIR, a compile definition), unless the environment
// variable HPA_BUILD_DIR names another.
int run_hpa_data(const std::string& args, std::string& output) {
  const char* env = std::getenv("HPA_BUILD_DIR");
  const std::string program = std::string(env ? env : HPA_BUILD_DIR) + "/hpa_data";
  if (!fs::exists(program)) return -1;
  const std::string out_file =
      (fs::temp_directory_path() / ("hpa_data_out_" + std::to_string(::getpid()))).string();
  const int status = std::system((program + " " + args + " >" + out_file + " 2>&1").c_str());
  output = read_file_text(out_file);
  fs::remove(out_file);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST(HpaDataProgram, SynthStatsAndErrors) {
  std::string out;
  if (run_hpa_data("--help", out) < 0) GTEST_SKIP() << "hpa_data not built in " << HPA_BUILD_DIR;
  EXPECT_NE(out.find("synth"), std::string::npos);
  TempDir dir;
  const std::string data = dir.file("synth");
  ASSERT_EQ(run_hpa_data("synth --out " + data + " --count 3 --size 64 --seed 4 --quiet", out), 0) << out;
  ASSERT_EQ(run_hpa_data("stats --data " + data + " --out " + dir.file("stats.json") + " --quiet", out), 0)
      << out;
  const ChannelStats s = read_stats_json(dir.file("stats.json"));
  for (int c = 0; c < 4; ++c) {
    EXPECT_GT(s.mean[c], 0.0);
    EXPECT_LT(s.mean[c], 0.5);
    EXPECT_GT(s.std[c], 0.0);
  }
  // A bad sample: exit 1 naming the file; --skip-bad: exit 0 with one warning and the count.
  const DatasetIndex index = DatasetIndex::open(data);
  fs::remove(index.channel_path(1, Stain::yellow));
  EXPECT_EQ(run_hpa_data("stats --data " + data + " --out " + dir.file("s2.json"), out), 1);
  EXPECT_NE(out.find(index.channel_path(1, Stain::yellow)), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir.file("s2.json")));
  EXPECT_EQ(run_hpa_data("stats --skip-bad --data " + data + " --out " + dir.file("s2.json"), out), 0) << out;
  EXPECT_NE(out.find("skipped 1 bad sample"), std::string::npos) << out;
  // A bad CSV row: exit 1 naming the file and line.
  write_text(data + "/train.csv", "Id,Target\n" + index[0].id + ",0\n" + index[2].id + ",31\n");
  EXPECT_EQ(run_hpa_data("stats --data " + data + " --out " + dir.file("s3.json"), out), 1);
  EXPECT_NE(out.find("train.csv line 3"), std::string::npos) << out;
  // Usage errors: exit 2.
  EXPECT_EQ(run_hpa_data("stats --data " + data, out), 2);
  EXPECT_NE(out.find("--out is required"), std::string::npos) << out;
  EXPECT_EQ(run_hpa_data("synth --out " + data + " --count 2 --bogus 1", out), 2);
  EXPECT_NE(out.find("unknown flag --bogus"), std::string::npos) << out;
  EXPECT_EQ(run_hpa_data("synth --out " + data + " --count x", out), 2);
  EXPECT_EQ(run_hpa_data("frobnicate", out), 2);
}

}  // namespace
