// Dataset channel statistics and their JSON file; see stats.h.
#include "data/stats.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "data/error.h"
#include "data/file_io.h"
#include "data/image.h"

namespace hpa::data {
namespace {

using Histograms = std::array<std::array<uint64_t, 256>, kNumChannels>;

// Parses `"key": [a, b, c, d]` out of a small JSON object.
std::array<double, kNumChannels> parse_array(const std::string& text, const std::string& key,
                                             const std::string& name) {
  const std::string quoted = "\"" + key + "\"";
  size_t p = text.find(quoted);
  if (p == std::string::npos) throw data_error(name, ": no \"", key, "\" in the stats file");
  p = text.find(':', p + quoted.size());
  if (p == std::string::npos) throw data_error(name, ": malformed \"", key, "\"");
  p = text.find_first_not_of(" \t\r\n", p + 1);
  if (p == std::string::npos || text[p] != '[') throw data_error(name, ": \"", key, "\" is not an array");
  std::array<double, kNumChannels> values{};
  ++p;
  for (int c = 0; c < kNumChannels; ++c) {
    const char* begin = text.c_str() + p;
    char* end = nullptr;
    values[c] = std::strtod(begin, &end);
    if (end == begin || !std::isfinite(values[c]))
      throw data_error(name, ": \"", key, "\" element ", c, " is not a number");
    p = static_cast<size_t>(end - text.c_str());
    p = text.find_first_not_of(" \t\r\n", p);
    const char expected = c + 1 < kNumChannels ? ',' : ']';
    if (p == std::string::npos || text[p] != expected)
      throw data_error(name, ": \"", key, "\" must hold exactly ", kNumChannels, " numbers");
    ++p;
  }
  return values;
}

}  // namespace

StatsResult compute_channel_stats(const DatasetIndex& index, BadSamples& bad, const StatsOptions& options) {
  const int64_t count = static_cast<int64_t>(index.size());
  const int threads = std::max(
      1, options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency()));
  Histograms total{};
  int64_t used = 0;
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex mutex;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  auto worker = [&] {
    Histograms local{};
    int64_t local_used = 0;
    try {
      for (int64_t i = next++; i < count && !failed; i = next++) {
        const bool ok = bad.attempt(index[static_cast<size_t>(i)].id, [&] {
          const Image image = load_sample_image(index, static_cast<size_t>(i), options.expected_size);
          for (int c = 0; c < kNumChannels; ++c) {
            const uint8_t* p = image.channel(c);
            auto& h = local[c];
            for (size_t k = 0, n = image.plane_size(); k < n; ++k) ++h[p[k]];
          }
        });
        local_used += ok;
        const int64_t finished = ++done;
        if (options.progress_seconds > 0) {
          std::lock_guard<std::mutex> lock(mutex);
          const auto now = std::chrono::steady_clock::now();
          if (std::chrono::duration<double>(now - last_report).count() >= options.progress_seconds) {
            last_report = now;
            std::fprintf(stderr, "stats: %lld/%lld samples\n", static_cast<long long>(finished),
                         static_cast<long long>(count));
          }
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!first_error) first_error = std::current_exception();
      failed = true;
    }
    std::lock_guard<std::mutex> lock(mutex);
    for (int c = 0; c < kNumChannels; ++c)
      for (int v = 0; v < 256; ++v) total[c][v] += local[c][v];
    used += local_used;
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
  if (used == 0) throw data_error(index.dir(), ": no usable samples for stats (", count, " listed, all bad)");

  StatsResult result;
  result.samples_used = used;
  for (int c = 0; c < kNumChannels; ++c) {
    uint64_t n = 0;
    double sum = 0;
    for (int v = 0; v < 256; ++v) {
      n += total[c][v];
      sum += static_cast<double>(total[c][v]) * (v / 255.0);
    }
    const double mean = sum / static_cast<double>(n);
    double squares = 0;
    for (int v = 0; v < 256; ++v) {
      const double d = v / 255.0 - mean;
      squares += static_cast<double>(total[c][v]) * d * d;
    }
    result.stats.mean[c] = mean;
    result.stats.std[c] = std::sqrt(squares / static_cast<double>(n));
    result.pixels_per_channel = static_cast<int64_t>(n);
  }
  return result;
}

std::string stats_to_json(const ChannelStats& stats) {
  std::string out = "{\"mean\":[";
  char number[32];
  for (int c = 0; c < kNumChannels; ++c) {
    std::snprintf(number, sizeof number, "%.10g", stats.mean[c]);
    out += number;
    out += c + 1 < kNumChannels ? "," : "],\"std\":[";
  }
  for (int c = 0; c < kNumChannels; ++c) {
    std::snprintf(number, sizeof number, "%.10g", stats.std[c]);
    out += number;
    out += c + 1 < kNumChannels ? "," : "]}\n";
  }
  return out;
}

ChannelStats stats_from_json(const std::string& text, const std::string& name) {
  ChannelStats stats;
  stats.mean = parse_array(text, "mean", name);
  stats.std = parse_array(text, "std", name);
  for (int c = 0; c < kNumChannels; ++c)
    if (!(stats.std[c] > 0))
      throw data_error(name, ": std of channel ", c, " is ", stats.std[c], ", must be > 0");
  return stats;
}

void write_stats_json(const std::string& path, const ChannelStats& stats) {
  write_file_atomic(path, stats_to_json(stats));
}

ChannelStats read_stats_json(const std::string& path) { return stats_from_json(read_file_text(path), path); }

}  // namespace hpa::data
