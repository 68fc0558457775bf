// Image transforms; see transforms.h for the conventions.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "data/error.h"

namespace hpa::data {
namespace {

// One output sample of a separable resampling: sum of weight * input[index].
struct Taps {
  std::vector<int> first, count;  // per output: taps [first, first + count) in index/weight
  std::vector<int> index;
  std::vector<float> weight;
};

// Area averaging for out <= in: output o covers input [o*s, (o+1)*s), s = in / out, and each
// input pixel contributes the length of its overlap / s. Bilinear for out > in, with
// half-pixel centres (src = (o + 0.5) / scale - 0.5) clamped at the edges.
Taps make_taps(int in, int out) {
  Taps taps;
  taps.first.resize(out);
  taps.count.resize(out);
  if (out <= in) {
    const double scale = static_cast<double>(in) / out;
    for (int o = 0; o < out; ++o) {
      const double begin = o * scale, end = (o + 1) * scale;
      taps.first[o] = static_cast<int>(taps.index.size());
      for (int i = static_cast<int>(std::floor(begin)); i < in && i < end; ++i) {
        const double overlap = std::min<double>(end, i + 1) - std::max<double>(begin, i);
        if (overlap <= 1e-12) continue;
        taps.index.push_back(i);
        taps.weight.push_back(static_cast<float>(overlap / scale));
      }
      taps.count[o] = static_cast<int>(taps.index.size()) - taps.first[o];
    }
  } else {
    const double scale = static_cast<double>(out) / in;
    for (int o = 0; o < out; ++o) {
      const double src = std::clamp((o + 0.5) / scale - 0.5, 0.0, static_cast<double>(in - 1));
      const int i0 = static_cast<int>(std::floor(src));
      const int i1 = std::min(i0 + 1, in - 1);
      const float t = static_cast<float>(src - i0);
      taps.first[o] = static_cast<int>(taps.index.size());
      taps.index.insert(taps.index.end(), {i0, i1});
      taps.weight.insert(taps.weight.end(), {1.0f - t, t});
      taps.count[o] = 2;
    }
  }
  return taps;
}

uint8_t round_to_u8(float v) { return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f)); }

// A dihedral element as an affine map from output (y, x) to input (y, x):
// src_y = yy*y + yx*x + y0, src_x = xy*y + xx*x + x0.
struct IndexMap {
  int yy, yx, y0, xy, xx, x0;
};

// out[x] = sum of weight * in[index] over the taps of x (the gathering pass).
void resample_row(const Taps& taps, const float* in, int out_width, uint8_t* out) {
  for (int x = 0; x < out_width; ++x) {
    float sum = 0;
    const int first = taps.first[x], end = first + taps.count[x];
    for (int k = first; k < end; ++k) sum += taps.weight[k] * in[taps.index[k]];
    out[x] = round_to_u8(sum);
  }
}
template <typename In>
void resample_row(const Taps& taps, const In* in, int out_width, float* out) {
  for (int x = 0; x < out_width; ++x) {
    float sum = 0;
    const int first = taps.first[x], end = first + taps.count[x];
    for (int k = first; k < end; ++k) sum += taps.weight[k] * in[taps.index[k]];
    out[x] = sum;
  }
}

// acc = sum over the taps of weight * row[index] (whole rows: contiguous, vectorizes).
template <typename In>
void blend_rows(const Taps& taps, int o, const In* in, int width, float* __restrict acc) {
  std::fill(acc, acc + width, 0.0f);
  const int first = taps.first[o], end = first + taps.count[o];
  for (int k = first; k < end; ++k) {
    const float w = taps.weight[k];
    const In* __restrict line = in + static_cast<size_t>(taps.index[k]) * width;
    for (int x = 0; x < width; ++x) acc[x] += w * line[x];
  }
}

}  // namespace

Image resize(const Image& src, int out_height, int out_width) {
  if (out_height <= 0 || out_width <= 0 || src.height <= 0 || src.width <= 0)
    throw data_error("resize: bad size ", src.height, "x", src.width, " -> ", out_height, "x", out_width);
  if (out_height == src.height && out_width == src.width) return src;
  const Taps horizontal = make_taps(src.width, out_width), vertical = make_taps(src.height, out_height);
  Image out(src.channels, out_height, out_width);
  // The gathering horizontal pass is the slow one, so it runs on the fewer rows: after the
  // vertical pass when the height shrinks, before it otherwise.
  if (out_height <= src.height) {
    std::vector<float> row(src.width);
    for (int c = 0; c < src.channels; ++c)
      for (int o = 0; o < out_height; ++o) {
        blend_rows(vertical, o, src.channel(c), src.width, row.data());
        resample_row(horizontal, row.data(), out_width, out.channel(c) + static_cast<size_t>(o) * out_width);
      }
  } else {
    std::vector<float> rows(static_cast<size_t>(src.height) * out_width), acc(out_width);
    for (int c = 0; c < src.channels; ++c) {
      for (int y = 0; y < src.height; ++y)
        resample_row(horizontal, src.channel(c) + static_cast<size_t>(y) * src.width, out_width,
                     rows.data() + static_cast<size_t>(y) * out_width);
      for (int o = 0; o < out_height; ++o) {
        blend_rows(vertical, o, rows.data(), out_width, acc.data());
        uint8_t* dst = out.channel(c) + static_cast<size_t>(o) * out_width;
        for (int x = 0; x < out_width; ++x) dst[x] = round_to_u8(acc[x]);
      }
    }
  }
  return out;
}

Image crop(const Image& src, int top, int left, int height, int width) {
  if (height <= 0 || width <= 0 || top < 0 || left < 0 || top + height > src.height ||
      left + width > src.width)
    throw data_error("crop: window ", height, "x", width, " at (", top, ", ", left, ") does not fit in a ",
                     src.height, "x", src.width, " image");
  Image out(src.channels, height, width);
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < height; ++y)
      std::memcpy(&out.at(c, y, 0), src.channel(c) + static_cast<size_t>(top + y) * src.width + left, width);
  return out;
}

Image center_crop(const Image& src, int height, int width) {
  return crop(src, (src.height - height) / 2, (src.width - width) / 2, height, width);
}

Image random_crop(const Image& src, int height, int width, Rng& rng) {
  if (height <= 0 || width <= 0 || height > src.height || width > src.width)
    throw data_error("random_crop: window ", height, "x", width, " does not fit in a ", src.height, "x",
                     src.width, " image");
  const int top = static_cast<int>(rng.range(0, src.height - height));
  const int left = static_cast<int>(rng.range(0, src.width - width));
  return crop(src, top, left, height, width);
}

Image dihedral(const Image& src, int k) {
  if (k < 0 || k >= kDihedralCount) throw data_error("dihedral: element ", k, " outside 0..7");
  // Build the output->input index map by applying the steps to the identity map. For the
  // current image J (h x w) with J(y, x) = I(map(y, x)):
  //   flip:      K(y, x) = J(y, w-1-x)             (same size)
  //   rotate CCW: K(y, x) = J(x, w-1-y)             (size w x h)
  IndexMap m{1, 0, 0, 0, 1, 0};
  int h = src.height, w = src.width;
  auto substitute = [&m](int yy, int yx, int y0, int xy, int xx, int x0) {
    // new map(y, x) = old map(Y, X) with Y = yy*y + yx*x + y0, X = xy*y + xx*x + x0
    IndexMap n;
    n.yy = m.yy * yy + m.yx * xy;
    n.yx = m.yy * yx + m.yx * xx;
    n.y0 = m.yy * y0 + m.yx * x0 + m.y0;
    n.xy = m.xy * yy + m.xx * xy;
    n.xx = m.xy * yx + m.xx * xx;
    n.x0 = m.xy * y0 + m.xx * x0 + m.x0;
    m = n;
  };
  if (k & 4) substitute(1, 0, 0, 0, -1, w - 1);
  for (int r = 0; r < (k & 3); ++r) {
    substitute(0, 1, 0, -1, 0, w - 1);
    std::swap(h, w);
  }
  Image out(src.channels, h, w);
  const int64_t in_w = src.width;
  const int64_t row_step = m.yy * in_w + m.xy, col_step = m.yx * in_w + m.xx, start = m.y0 * in_w + m.x0;
  for (int c = 0; c < src.channels; ++c) {
    const uint8_t* in = src.channel(c);
    uint8_t* dst = out.channel(c);
    for (int y = 0; y < h; ++y) {
      int64_t p = start + y * row_step;
      for (int x = 0; x < w; ++x, p += col_step) *dst++ = in[p];
    }
  }
  return out;
}

// Element k = R^r F^f (flip first, then r counter-clockwise quarter turns). With
// F R F = R^-1: (R^rb F^fb)(R^ra F^fa) = R^(rb + (fb ? -ra : ra)) F^(fa xor fb).
int dihedral_compose(int first, int second) {
  const int ra = first & 3, fa = first >> 2, rb = second & 3, fb = second >> 2;
  const int r = (rb + (fb ? 4 - ra : ra)) & 3;
  return r | ((fa ^ fb) << 2);
}

int dihedral_inverse(int k) { return (k & 4) ? k : (4 - (k & 3)) & 3; }

void color_jitter(Image& image, double brightness_range, double contrast_range, Rng& rng) {
  const size_t n = image.plane_size();
  for (int c = 0; c < image.channels; ++c) {
    const double contrast = rng.uniform(1.0 - contrast_range, 1.0 + contrast_range);
    const double brightness = rng.uniform(-brightness_range, brightness_range);
    uint8_t* p = image.channel(c);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i];
    const double mean = n ? static_cast<double>(sum) / n : 0.0;
    uint8_t table[256];
    for (int v = 0; v < 256; ++v)
      table[v] = static_cast<uint8_t>(
          std::clamp(std::floor(contrast * (v - mean) + mean + 255.0 * brightness + 0.5), 0.0, 255.0));
    for (size_t i = 0; i < n; ++i) p[i] = table[p[i]];
  }
}

void normalize(const Image& image, const ChannelStats& stats, float* out) {
  if (image.channels != kNumChannels)
    throw data_error("normalize: image has ", image.channels, " channels, expected ", kNumChannels);
  const size_t n = image.plane_size();
  for (int c = 0; c < kNumChannels; ++c) {
    if (!(stats.std[c] > 0))
      throw data_error("normalize: std of channel ", c, " is ", stats.std[c], ", must be > 0");
    float table[256];
    for (int v = 0; v < 256; ++v) table[v] = static_cast<float>((v / 255.0 - stats.mean[c]) / stats.std[c]);
    const uint8_t* in = image.channel(c);
    float* dst = out + c * n;
    for (size_t i = 0; i < n; ++i) dst[i] = table[in[i]];
  }
}

Image augment(const Image& src, const AugmentOptions& options, Rng& rng) {
  Image out = options.crop_size > 0 && (options.crop_size != src.height || options.crop_size != src.width)
                  ? random_crop(src, options.crop_size, options.crop_size, rng)
                  : src;
  if (options.dihedral) {
    const int k = static_cast<int>(rng.below(kDihedralCount));
    if (k != 0) out = dihedral(out, k);
  }
  if (options.brightness > 0 || options.contrast > 0)
    color_jitter(out, options.brightness, options.contrast, rng);
  return out;
}

}  // namespace hpa::data
