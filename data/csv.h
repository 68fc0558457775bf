// The Kaggle HPA 2018 index files and the dataset index built on them.
//  - train.csv: header `Id,Target`, one row per sample, Target = labels 0..27 separated by
//    spaces (at least one). sample_submission.csv: header `Id,Predicted`, the test ids.
//  - Every parse error throws DataError naming the file and the 1-based line number
//    (the header is line 1): a label outside 0..27, a malformed line, a duplicate Id, an
//    empty dataset, a wrong header. Windows line ends and a trailing newline are accepted.
//  - A Sample keeps its labels as a 28-bit mask: cheap to copy, compare and count.
//  - DatasetIndex finds the images next to the csv: `<dir>/<images>/{Id}_{color}.<ext>` where
//    color is red, green, blue, yellow and ext is detected once per dataset from the first
//    sample (png, tif, tiff, jpg, jpeg; Kaggle 512² PNG, full-size TIFF, HPAv18 JPEG/PNG).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hpa::data {

constexpr int kNumClasses = 28;
constexpr int kNumChannels = 4;

// Channel order everywhere in data/: the batch hand-off is uint8 N x 4 x H x W in this order.
enum class Stain { red = 0, green = 1, blue = 2, yellow = 3 };
constexpr std::array<Stain, kNumChannels> kStains = {Stain::red, Stain::green, Stain::blue, Stain::yellow};
constexpr std::string_view stain_name(Stain s) {
  constexpr std::array<std::string_view, kNumChannels> names = {"red", "green", "blue", "yellow"};
  return names[static_cast<int>(s)];
}

using LabelMask = uint32_t;  // bit c set <=> class c present

struct Sample {
  std::string id;
  LabelMask labels = 0;

  bool has(int label) const { return (labels >> label) & 1u; }
  int label_count() const { return __builtin_popcount(labels); }
  std::vector<int> label_list() const;  // ascending
  bool operator==(const Sample&) const = default;
};

// "0 25 7" -> mask; throws DataError naming `where` (e.g. "train.csv line 12") on a label
// outside 0..27, a non-number, a repeated label or an empty list.
LabelMask parse_labels(std::string_view text, const std::string& where);
// mask -> "0 7 25" (ascending, space-separated), the Kaggle Target format.
std::string format_labels(LabelMask labels);

// train.csv (Id,Target) -> samples in file order. Throws DataError (see header comment).
std::vector<Sample> read_train_csv(const std::string& path);
// sample_submission.csv (Id,Predicted; the Predicted column is ignored) -> test ids.
std::vector<std::string> read_submission_ids(const std::string& path);
// Writes Id,Target atomically (temp file then rename).
void write_train_csv(const std::string& path, const std::vector<Sample>& samples);

// Per-class sample counts.
std::array<int64_t, kNumClasses> label_counts(const std::vector<Sample>& samples);

enum class ImageFormat { png, tiff, jpeg };

class DatasetIndex {
 public:
  // Reads <dir>/<csv_name> and detects the image extension in <dir>/<image_subdir>.
  // For sample_submission.csv the labels are all zero.
  static DatasetIndex open(const std::string& dir, const std::string& csv_name = "train.csv",
                           const std::string& image_subdir = "train");
  // An index over given samples (tests, subsets); extension as ".png", ".tif", ...
  DatasetIndex(std::string dir, std::string image_dir, std::string extension, std::vector<Sample> samples);
  DatasetIndex() = default;

  const std::string& dir() const { return dir_; }
  const std::string& image_dir() const { return image_dir_; }
  const std::string& extension() const { return extension_; }  // with the dot
  ImageFormat format() const { return format_; }
  const std::vector<Sample>& samples() const { return samples_; }
  size_t size() const { return samples_.size(); }
  const Sample& operator[](size_t i) const { return samples_[i]; }

  // <image_dir>/<id>_<color><extension>
  std::string channel_path(size_t i, Stain stain) const;
  std::string channel_path(const std::string& id, Stain stain) const;

 private:
  std::string dir_, image_dir_, extension_;
  ImageFormat format_ = ImageFormat::png;
  std::vector<Sample> samples_;
};

ImageFormat format_from_extension(const std::string& extension);  // throws on an unknown one

}  // namespace hpa::data
