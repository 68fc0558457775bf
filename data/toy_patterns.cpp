#include "data/toy_patterns.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace hpa::data {

namespace {

struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
};

}  // namespace

ToyBatch make_toy_batch(int count, int size, uint64_t seed) {
  if (count <= 0 || size < 8) throw std::invalid_argument("make_toy_batch: count must be > 0 and size >= 8");
  ToyBatch b;
  b.count = count;
  b.size = size;
  const size_t plane = static_cast<size_t>(size) * static_cast<size_t>(size);
  b.images.assign(static_cast<size_t>(count) * 4 * plane, 0.0f);
  b.labels.assign(static_cast<size_t>(count) * kToyClasses, 0.0f);
  SplitMix64 rng{seed * 0x2545F4914F6CDD1Dull + 1};

  for (int n = 0; n < count; ++n) {
    float* img = b.images.data() + static_cast<size_t>(n) * 4 * plane;
    float* red = img;
    float* green = img + plane;
    float* blue = img + 2 * plane;
    float* yellow = img + 3 * plane;
    float* lab = b.labels.data() + static_cast<size_t>(n) * kToyClasses;
    bool any = false;
    for (int c = 0; c < kToyClasses; ++c) {
      lab[c] = rng.uniform() < 0.45 ? 1.0f : 0.0f;
      any = any || lab[c] > 0;
    }
    if (!any) lab[rng.next() % kToyClasses] = 1.0f;

    const double s = size;
    const double cx = rng.uniform(0.35, 0.65) * s, cy = rng.uniform(0.35, 0.65) * s;
    const double radius = rng.uniform(0.16, 0.24) * s;
    const double brightness = rng.uniform(0.6, 1.0);
    const double filament_phase = rng.uniform(0, 6.283);
    double spots[4][2];
    for (auto& sp : spots) {
      const double angle = rng.uniform(0, 6.283), dist = radius * rng.uniform(1.5, 2.0);
      sp[0] = cx + dist * std::cos(angle);
      sp[1] = cy + dist * std::sin(angle);
    }
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        const size_t i = static_cast<size_t>(y) * static_cast<size_t>(size) + static_cast<size_t>(x);
        const double dx = x - cx, dy = y - cy, r = std::sqrt(dx * dx + dy * dy);
        const double inside = r < radius ? 1.0 : 0.0;
        blue[i] = static_cast<float>(0.8 * inside + 0.1 * rng.uniform());
        red[i] = static_cast<float>(0.3 * (0.5 + 0.5 * std::sin(0.9 * x + 0.3 * y)) + 0.1 * rng.uniform());
        yellow[i] = static_cast<float>(0.25 * (r > radius && r < 2.3 * radius ? 1.0 : 0.0) + 0.1 * rng.uniform());
        double g = 0.15 * rng.uniform();
        if (lab[0] > 0) g += 0.7 * inside;
        if (lab[1] > 0) g += 0.9 * std::exp(-std::pow((r - radius) / 1.0, 2));
        if (lab[2] > 0)
          for (const auto& sp : spots)
            g += 0.9 * std::exp(-((x - sp[0]) * (x - sp[0]) + (y - sp[1]) * (y - sp[1])) / 1.5);
        if (lab[3] > 0 && r > radius) g += 0.5 * std::pow(0.5 + 0.5 * std::sin(1.2 * (x + y) + filament_phase), 8);
        green[i] = static_cast<float>(std::min(1.0, g * brightness));
      }
    }
  }
  return b;
}

}  // namespace hpa::data
