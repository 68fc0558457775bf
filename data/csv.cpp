// Kaggle index files (train.csv, sample_submission.csv) and DatasetIndex; see csv.h.
#include "data/csv.h"

#include <charconv>
#include <filesystem>
#include <unordered_map>

#include "data/error.h"
#include "data/file_io.h"

namespace hpa::data {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Splits the text into lines (\n or \r\n); a final newline does not make an extra line.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool valid_id(std::string_view id) {
  if (id.empty()) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return id != "." && id != "..";  // ids become file names
}

struct Row {
  std::string_view id, second;
};

// Parses `Id,<second>`; exactly one comma, a non-empty id made of file-name-safe characters.
Row parse_row(std::string_view line, const std::string& where) {
  const size_t comma = line.find(',');
  if (comma == std::string_view::npos)
    throw data_error(where, ": malformed line (expected `Id,Target`): \"", line, "\"");
  if (line.find(',', comma + 1) != std::string_view::npos)
    throw data_error(where, ": malformed line (more than two fields): \"", line, "\"");
  Row row{trim(line.substr(0, comma)), trim(line.substr(comma + 1))};
  if (!valid_id(row.id))
    throw data_error(where, ": malformed Id \"", row.id, "\" (letters, digits, '-', '_', '.' only)");
  return row;
}

std::vector<std::string_view> data_lines(const std::string& path, std::string_view text,
                                         std::string_view expected_header, std::vector<int>& line_numbers) {
  std::vector<std::string_view> lines = split_lines(text);
  if (lines.empty()) throw data_error(path, ": empty file (expected the header `", expected_header, "`)");
  std::string_view header = trim(lines[0]);
  if (header.size() >= 3 && static_cast<unsigned char>(header[0]) == 0xEF) header.remove_prefix(3);  // BOM
  if (header != expected_header)
    throw data_error(path, " line 1: header is \"", header, "\", expected \"", expected_header, "\"");
  std::vector<std::string_view> rows;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;  // blank lines (e.g. trailing) are not rows
    rows.push_back(lines[i]);
    line_numbers.push_back(static_cast<int>(i + 1));
  }
  if (rows.empty()) throw data_error(path, ": empty dataset (a header and no rows)");
  return rows;
}

std::string where(const std::string& path, int line) { return path + " line " + std::to_string(line); }

}  // namespace

std::vector<int> Sample::label_list() const {
  std::vector<int> out;
  for (int c = 0; c < kNumClasses; ++c)
    if (has(c)) out.push_back(c);
  return out;
}

LabelMask parse_labels(std::string_view text, const std::string& where_) {
  LabelMask mask = 0;
  size_t i = 0;
  int count = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size()) break;
    size_t end = i;
    while (end < text.size() && text[end] != ' ') ++end;
    const std::string_view token = text.substr(i, end - i);
    int label = -1;
    const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), label);
    if (ec != std::errc() || ptr != token.data() + token.size())
      throw data_error(where_, ": label \"", token, "\" is not a number");
    if (label < 0 || label >= kNumClasses)
      throw data_error(where_, ": label ", token, " outside 0..", kNumClasses - 1);
    if (mask & (1u << label)) throw data_error(where_, ": label ", label, " listed twice");
    mask |= 1u << label;
    ++count;
    i = end;
  }
  if (count == 0) throw data_error(where_, ": no labels");
  return mask;
}

std::string format_labels(LabelMask labels) {
  std::string out;
  for (int c = 0; c < kNumClasses; ++c) {
    if (!((labels >> c) & 1u)) continue;
    if (!out.empty()) out += ' ';
    out += std::to_string(c);
  }
  return out;
}

std::vector<Sample> read_train_csv(const std::string& path) {
  const std::string text = read_file_text(path);
  std::vector<int> line_numbers;
  const auto rows = data_lines(path, text, "Id,Target", line_numbers);
  std::vector<Sample> samples;
  samples.reserve(rows.size());
  std::unordered_map<std::string_view, int> first_line;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::string at = where(path, line_numbers[r]);
    const Row row = parse_row(rows[r], at);
    const auto [it, inserted] = first_line.emplace(row.id, line_numbers[r]);
    if (!inserted) throw data_error(at, ": duplicate Id ", row.id, " (first on line ", it->second, ")");
    samples.push_back(Sample{std::string(row.id), parse_labels(row.second, at)});
  }
  return samples;
}

std::vector<std::string> read_submission_ids(const std::string& path) {
  const std::string text = read_file_text(path);
  std::vector<int> line_numbers;
  const auto rows = data_lines(path, text, "Id,Predicted", line_numbers);
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  std::unordered_map<std::string_view, int> first_line;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::string at = where(path, line_numbers[r]);
    const Row row = parse_row(rows[r], at);
    const auto [it, inserted] = first_line.emplace(row.id, line_numbers[r]);
    if (!inserted) throw data_error(at, ": duplicate Id ", row.id, " (first on line ", it->second, ")");
    ids.emplace_back(row.id);
  }
  return ids;
}

void write_train_csv(const std::string& path, const std::vector<Sample>& samples) {
  std::string text = "Id,Target\n";
  for (const Sample& s : samples) {
    text += s.id;
    text += ',';
    text += format_labels(s.labels);
    text += '\n';
  }
  write_file_atomic(path, text);
}

std::array<int64_t, kNumClasses> label_counts(const std::vector<Sample>& samples) {
  std::array<int64_t, kNumClasses> counts{};
  for (const Sample& s : samples)
    for (int c = 0; c < kNumClasses; ++c) counts[c] += s.has(c);
  return counts;
}

ImageFormat format_from_extension(const std::string& extension) {
  if (extension == ".png") return ImageFormat::png;
  if (extension == ".tif" || extension == ".tiff") return ImageFormat::tiff;
  if (extension == ".jpg" || extension == ".jpeg") return ImageFormat::jpeg;
  throw data_error("unknown image extension \"", extension, "\" (png, tif, tiff, jpg, jpeg)");
}

DatasetIndex::DatasetIndex(std::string dir, std::string image_dir, std::string extension,
                           std::vector<Sample> samples)
    : dir_(std::move(dir)),
      image_dir_(std::move(image_dir)),
      extension_(std::move(extension)),
      format_(format_from_extension(extension_)),
      samples_(std::move(samples)) {}

DatasetIndex DatasetIndex::open(const std::string& dir, const std::string& csv_name,
                                const std::string& image_subdir) {
  namespace fs = std::filesystem;
  const std::string csv_path = (fs::path(dir) / csv_name).string();
  const std::string image_dir = (fs::path(dir) / image_subdir).string();
  std::vector<Sample> samples;
  if (csv_name.find("submission") != std::string::npos) {
    for (std::string& id : read_submission_ids(csv_path)) samples.push_back(Sample{std::move(id), 0});
  } else {
    samples = read_train_csv(csv_path);
  }
  std::error_code ec;
  if (!fs::is_directory(image_dir, ec))
    throw data_error(image_dir, ": image directory not found (for ", csv_path, ")");
  // One extension per dataset, from the first sample's red file: the real layouts never mix.
  for (const char* ext : {".png", ".tif", ".tiff", ".jpg", ".jpeg"}) {
    const fs::path red = fs::path(image_dir) / (samples[0].id + "_red" + ext);
    if (fs::exists(red, ec)) return DatasetIndex(dir, image_dir, ext, std::move(samples));
  }
  throw data_error(image_dir, ": no image for the first sample ", samples[0].id, " (looked for ",
                   samples[0].id, "_red.{png,tif,tiff,jpg,jpeg})");
}

std::string DatasetIndex::channel_path(const std::string& id, Stain stain) const {
  std::string path = image_dir_;
  path += '/';
  path += id;
  path += '_';
  path += stain_name(stain);
  path += extension_;
  return path;
}

std::string DatasetIndex::channel_path(size_t i, Stain stain) const {
  return channel_path(samples_[i].id, stain);
}

}  // namespace hpa::data
