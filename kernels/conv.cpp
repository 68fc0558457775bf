// CPU twin of the convolution kernels: im2col on cache-sized blocks of output pixels + serial
// BLAS GEMMs, parallelized with OpenMP over work items (see kernels/conv.h).
//
// A block is a run of whole output rows of one image or, for small maps (7x7, 14x14), all
// rows of several images side by side, so every GEMM is wide enough to run at full speed.
// Work items, chosen so no two threads ever write the same memory:
//  - forward: one block; all groups of the block are done by the same item.
//  - backward weight: one block, into per-thread partial gradients summed at the end.
//  - backward input: (image block, group, channel chunk) with the row blocks in sequence
//    inside, because col2im of neighbouring row blocks overlaps on the input rows between
//    them while different channels never do. Chunks only split the channels when there are
//    fewer (image block, group) pairs than threads, e.g. batch 1.
// Forward and backward-input items are handed out dynamically (an item's result does not
// depend on the thread that runs it); backward weight splits statically so its per-thread
// partial sums, and hence its rounding, are the same on every run with the same threads.
// Scratch is allocated once per call, one slice per thread, before the parallel region.
#include "kernels/conv.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/gemm.h"

namespace hpa::kernels {

namespace {

// A block's column scratch aims at this many bytes so the GEMM packs it from the L2 cache...
constexpr int64_t kColumnBlockBytes = 512 * 1024;
// ...but a block is at least this many pixels wide: thinner GEMMs run well below full speed.
// Small feature maps (7x7, 14x14) therefore put several images side by side in one block.
constexpr int64_t kMinBlockPixels = 384;

// Below this many multiply-adds a convolution runs on one thread: opening a parallel
// region would cost more than it saves (SE blocks' 1x1 convolutions on 1x1 maps, tests).
std::atomic<int64_t> g_min_parallel_macs{int64_t{1} << 20};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int threads_for(const Conv2dArgs& a) {
  const int64_t macs = a.n * a.c_out * a.h_out * a.w_out * (a.c_in / a.groups) * a.kh * a.kw;
  return macs < g_min_parallel_macs.load(std::memory_order_relaxed) ? 1 : omp_get_max_threads();
}

// Valid output columns [lo, hi) for horizontal tap j: those whose input column is inside
// [0, w). Everything outside reads padding.
struct TapSpan {
  int64_t lo, hi;
};

TapSpan tap_span(const Conv2dArgs& a, int64_t j) {
  const int64_t offset = j * a.dilation_w - a.pad_w;  // input column of output column 0
  const int64_t lo = offset >= 0 ? 0 : ceil_div(-offset, a.stride_w);
  const int64_t to_end = a.w - offset;  // output columns with input column < w satisfy ow*s < to_end
  const int64_t hi = to_end <= 0 ? 0 : ceil_div(to_end, a.stride_w);
  const int64_t clamped_hi = std::clamp<int64_t>(hi, 0, a.w_out);
  return {std::min(lo, clamped_hi), clamped_hi};
}

// Output rows narrower than this (7x7 and 14x14 maps) are gathered through a table of input
// offsets: per-row bounds arithmetic and library copies would cost more than the copying.
constexpr int64_t kNarrowRow = 16;

// The shapes every loop needs, derived once per call from Conv2dArgs.
struct ConvGeometry {
  int64_t cin_g, cout_g;  // channels per group
  int64_t taps;           // kh * kw
  int64_t k;              // GEMM inner size: cin_g * taps (rows of the column matrix)
  int64_t in_plane;       // h * w
  int64_t out_plane;      // h_out * w_out (pixels)
  bool pointwise;         // 1x1, stride 1, no padding: an image is its own column matrix
  // Narrow maps only: narrow_offsets[tap * out_plane + pixel] is the offset ih * w + iw in an
  // input plane that kernel tap (i, j) reads at that output pixel, -1 where it reads padding.
  std::vector<int32_t> narrow_offsets;

  explicit ConvGeometry(const Conv2dArgs& a)
      : cin_g(a.c_in / a.groups),
        cout_g(a.c_out / a.groups),
        taps(a.kh * a.kw),
        k(cin_g * taps),
        in_plane(a.h * a.w),
        out_plane(a.h_out * a.w_out),
        pointwise(a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_h == 0 &&
                  a.pad_w == 0) {
    if (pointwise || a.w_out >= kNarrowRow) return;
    narrow_offsets.assign(static_cast<size_t>(taps * out_plane), -1);
    for (int64_t i = 0; i < a.kh; ++i)
      for (int64_t j = 0; j < a.kw; ++j) {
        int32_t* table = narrow_offsets.data() + (i * a.kw + j) * out_plane;
        const TapSpan span = tap_span(a, j);
        for (int64_t oh = 0; oh < a.h_out; ++oh) {
          const int64_t ih = conv_input_coord(oh, i, a.stride_h, a.pad_h, a.dilation_h);
          if (ih < 0 || ih >= a.h) continue;
          for (int64_t ow = span.lo; ow < span.hi; ++ow)
            table[oh * a.w_out + ow] =
                static_cast<int32_t>(ih * a.w + conv_input_coord(ow, j, a.stride_w, a.pad_w, a.dilation_w));
        }
      }
  }
};

// One GEMM's worth of output pixels: rows [oh_begin, oh_end) of images [img_begin, img_end).
// A block holds several images only when it holds all their rows; its columns then lie
// image after image, `image_pixels` each.
struct Block {
  int64_t img_begin, img_end, oh_begin, oh_end, image_pixels;
  int64_t images() const { return img_end - img_begin; }
  int64_t width() const { return images() * image_pixels; }
  int64_t pixel_begin(int64_t w_out) const { return oh_begin * w_out; }
};

// The batch cut into image blocks, each image block's rows cut into row blocks.
struct BlockPlan {
  int64_t images_per_block = 1, rows_per_block = 1, image_blocks = 0, row_blocks = 0;
  // Pointwise and one image per block: GEMMs read the input and write the output in place.
  bool in_place = false;

  int64_t count() const { return image_blocks * row_blocks; }
  int64_t max_width(const Conv2dArgs& a) const { return images_per_block * rows_per_block * a.w_out; }
  Block block(const Conv2dArgs& a, int64_t image_block, int64_t row_block) const {
    const int64_t img = image_block * images_per_block, oh = row_block * rows_per_block;
    const int64_t oh_end = std::min(a.h_out, oh + rows_per_block);
    return {img, std::min(a.n, img + images_per_block), oh, oh_end, (oh_end - oh) * a.w_out};
  }
};

// Sizes blocks for a column scratch of `column_rows` rows, then cuts them finer while
// fewer than `threads` work items (`items_per_block` per block) would exist: images first,
// then rows unless `rows_in_sequence` (the caller runs an image's row blocks in one item).
BlockPlan plan_blocks(const Conv2dArgs& a, bool pointwise, int64_t column_rows, int64_t elem_bytes,
                      int64_t items_per_block, int threads, bool rows_in_sequence = false) {
  BlockPlan p;
  const int64_t plane = a.h_out * a.w_out;
  int64_t rows = a.h_out;  // pointwise blocks read the input in place: no scratch to bound
  if (!pointwise) {
    rows = kColumnBlockBytes / std::max<int64_t>(1, column_rows * a.w_out * elem_bytes);
    rows = std::clamp<int64_t>(std::max(rows, ceil_div(kMinBlockPixels, a.w_out)), 1, a.h_out);
  }
  int64_t images = 1;
  if (rows == a.h_out && plane < kMinBlockPixels)
    images = std::clamp<int64_t>(ceil_div(kMinBlockPixels, plane), 1, std::max<int64_t>(1, a.n));
  const int64_t wanted = ceil_div(threads, std::max<int64_t>(1, items_per_block));
  const int64_t parallel_row_blocks = rows_in_sequence ? 1 : ceil_div(a.h_out, rows);
  if (ceil_div(a.n, images) * parallel_row_blocks < wanted) {
    images = std::max<int64_t>(1, a.n / wanted);
    if (images == 1 && !rows_in_sequence && a.n * ceil_div(a.h_out, rows) < wanted)
      rows = std::max<int64_t>(1, ceil_div(a.h_out, ceil_div(wanted, std::max<int64_t>(1, a.n))));
  }
  p.images_per_block = images;
  p.rows_per_block = rows;
  p.image_blocks = ceil_div(a.n, images);
  p.row_blocks = ceil_div(a.h_out, rows);
  p.in_place = pointwise && images == 1;
  return p;
}

// Columns of channels [c_begin, c_end) of one image's group slice `x` (its channel 0 at x)
// for output rows [oh_begin, oh_end): row (c - c_begin, i, j) starts at cols + row * ld and
// holds (oh_end - oh_begin) * w_out pixels.
template <class T>
void im2col_rows(const Conv2dArgs& a, const ConvGeometry& geo, const T* x, int64_t c_begin, int64_t c_end,
                 int64_t oh_begin, int64_t oh_end, T* cols, int64_t ld) {
  T* row = cols;
  if (!geo.narrow_offsets.empty()) {
    const int64_t pixels = (oh_end - oh_begin) * a.w_out;
    for (int64_t c = c_begin; c < c_end; ++c) {
      const T* xc = x + c * geo.in_plane;
      for (int64_t tap = 0; tap < geo.taps; ++tap, row += ld) {
        const int32_t* offsets = geo.narrow_offsets.data() + tap * geo.out_plane + oh_begin * a.w_out;
        for (int64_t p = 0; p < pixels; ++p) row[p] = offsets[p] >= 0 ? xc[offsets[p]] : T(0);
      }
    }
    return;
  }
  for (int64_t c = c_begin; c < c_end; ++c) {
    const T* xc = x + c * geo.in_plane;
    for (int64_t i = 0; i < a.kh; ++i) {
      for (int64_t j = 0; j < a.kw; ++j, row += ld) {
        const TapSpan span = tap_span(a, j);
        const int64_t first_col = span.lo * a.stride_w + j * a.dilation_w - a.pad_w;
        T* out = row;
        for (int64_t oh = oh_begin; oh < oh_end; ++oh, out += a.w_out) {
          const int64_t ih = conv_input_coord(oh, i, a.stride_h, a.pad_h, a.dilation_h);
          if (ih < 0 || ih >= a.h) {
            std::fill(out, out + a.w_out, T(0));
            continue;
          }
          std::fill(out, out + span.lo, T(0));
          if (span.hi > span.lo) {
            const T* in = xc + ih * a.w + first_col;
            if (a.stride_w == 1) {
              std::memcpy(out + span.lo, in, static_cast<size_t>(span.hi - span.lo) * sizeof(T));
            } else {
              for (int64_t ow = span.lo; ow < span.hi; ++ow) out[ow] = in[(ow - span.lo) * a.stride_w];
            }
          }
          std::fill(out + span.hi, out + a.w_out, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col_rows: dx[c, ih, iw] += every column entry that read it.
template <class T>
void col2im_rows(const Conv2dArgs& a, const ConvGeometry& geo, const T* cols, int64_t ld, int64_t c_begin,
                 int64_t c_end, int64_t oh_begin, int64_t oh_end, T* dx) {
  const T* row = cols;
  if (!geo.narrow_offsets.empty()) {
    const int64_t pixels = (oh_end - oh_begin) * a.w_out;
    for (int64_t c = c_begin; c < c_end; ++c) {
      T* dxc = dx + c * geo.in_plane;
      for (int64_t tap = 0; tap < geo.taps; ++tap, row += ld) {
        const int32_t* offsets = geo.narrow_offsets.data() + tap * geo.out_plane + oh_begin * a.w_out;
        for (int64_t p = 0; p < pixels; ++p)
          if (offsets[p] >= 0) dxc[offsets[p]] += row[p];
      }
    }
    return;
  }
  for (int64_t c = c_begin; c < c_end; ++c) {
    T* dxc = dx + c * geo.in_plane;
    for (int64_t i = 0; i < a.kh; ++i) {
      for (int64_t j = 0; j < a.kw; ++j, row += ld) {
        const TapSpan span = tap_span(a, j);
        const int64_t first_col = span.lo * a.stride_w + j * a.dilation_w - a.pad_w;
        const T* in = row;
        for (int64_t oh = oh_begin; oh < oh_end; ++oh, in += a.w_out) {
          const int64_t ih = conv_input_coord(oh, i, a.stride_h, a.pad_h, a.dilation_h);
          if (ih < 0 || ih >= a.h || span.hi == span.lo) continue;
          T* out = dxc + ih * a.w + first_col;
          if (a.stride_w == 1) {
            for (int64_t ow = span.lo; ow < span.hi; ++ow) out[ow - span.lo] += in[ow];
          } else {
            for (int64_t ow = span.lo; ow < span.hi; ++ow) out[(ow - span.lo) * a.stride_w] += in[ow];
          }
        }
      }
    }
  }
}

// Uninitialized per-thread scratch: `per_thread` elements for each of `threads` threads.
template <class T>
struct ThreadScratch {
  ThreadScratch(int threads, int64_t per_thread_elems)
      : per_thread(per_thread_elems),
        data(new T[static_cast<size_t>(std::max<int64_t>(1, threads * per_thread))]) {}
  T* of(int thread) const { return data.get() + thread * per_thread; }
  int64_t per_thread;
  std::unique_ptr<T[]> data;
};

// A [rows, width] operand of one block and group: in place in a tensor (one image) or
// packed into scratch (several images side by side).
template <class T>
struct BlockMatrix {
  T* data;
  int64_t ld;
};

// Channels [c_begin, c_end) of group g of a [n, channels, plane] tensor at the block's
// pixels: a view when the block is one image, else copied image after image into `scratch`.
template <class T>
BlockMatrix<const T> gather_block(const T* t, int64_t channels, int64_t plane, int64_t c_begin, int64_t c_end,
                                  const Block& b, int64_t w_out, T* scratch) {
  const int64_t pix = b.pixel_begin(w_out);
  if (b.images() == 1) return {t + (b.img_begin * channels + c_begin) * plane + pix, plane};
  const int64_t width = b.width();
  for (int64_t img = b.img_begin; img < b.img_end; ++img)
    for (int64_t c = c_begin; c < c_end; ++c) {
      const T* src = t + (img * channels + c) * plane + pix;
      std::copy(src, src + b.image_pixels,
                scratch + (c - c_begin) * width + (img - b.img_begin) * b.image_pixels);
    }
  return {scratch, width};
}

// The block's columns of group g (all of its channels [0, cin_g)).
template <class T>
BlockMatrix<const T> block_columns(const Conv2dArgs& a, const ConvGeometry& geo, const BlockPlan& plan,
                                   const T* x, int64_t g, const Block& b, T* scratch) {
  if (plan.in_place)
    return {x + (b.img_begin * a.c_in + g * geo.cin_g) * geo.in_plane + b.pixel_begin(a.w_out), geo.in_plane};
  for (int64_t img = b.img_begin; img < b.img_end; ++img)
    im2col_rows(a, geo, x + (img * a.c_in + g * geo.cin_g) * geo.in_plane, 0, geo.cin_g, b.oh_begin, b.oh_end,
                scratch + (img - b.img_begin) * b.image_pixels, b.width());
  return {scratch, b.width()};
}

}  // namespace

int64_t conv2d_min_parallel_macs() { return g_min_parallel_macs.load(); }
void set_conv2d_min_parallel_macs(int64_t macs) { g_min_parallel_macs.store(macs); }

template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* weight, const T* bias, T* y) {
  const ConvGeometry geo(a);
  const int threads = threads_for(a);
  const BlockPlan plan = plan_blocks(a, geo.pointwise, geo.k, sizeof(T), 1, threads);
  const int64_t width = plan.max_width(a);
  const int64_t column_elems = plan.in_place ? 0 : geo.k * width;
  const int64_t output_elems = plan.images_per_block > 1 ? geo.cout_g * width : 0;
  ThreadScratch<T> scratch(threads, column_elems + output_elems);

#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int64_t item = 0; item < plan.count(); ++item) {
    const Block b = plan.block(a, item / plan.row_blocks, item % plan.row_blocks);
    T* cols = scratch.of(omp_get_thread_num());
    T* packed_y = cols + column_elems;
    const int64_t pix = b.pixel_begin(a.w_out);
    for (int64_t g = 0; g < a.groups; ++g) {
      const BlockMatrix<const T> columns = block_columns(a, geo, plan, x, g, b, cols);
      const T* w_g = weight + g * geo.cout_g * geo.k;
      const T* bias_g = bias != nullptr ? bias + g * geo.cout_g : nullptr;
      if (b.images() == 1) {  // straight into y, on top of the bias
        T* y_g = y + (b.img_begin * a.c_out + g * geo.cout_g) * geo.out_plane + pix;
        if (bias_g != nullptr) {
          for (int64_t co = 0; co < geo.cout_g; ++co)
            std::fill(y_g + co * geo.out_plane, y_g + co * geo.out_plane + b.width(), bias_g[co]);
        }
        const GemmArgs gemm{geo.cout_g, b.width(), geo.k, false, false, geo.k, columns.ld, geo.out_plane};
        gemm_serial_cpu<T>(gemm, T(1), w_g, columns.data, bias_g != nullptr ? T(1) : T(0), y_g);
        continue;
      }
      const GemmArgs gemm{geo.cout_g, b.width(), geo.k, false, false, geo.k, columns.ld, b.width()};
      gemm_serial_cpu<T>(gemm, T(1), w_g, columns.data, T(0), packed_y);
      for (int64_t img = b.img_begin; img < b.img_end; ++img)
        for (int64_t co = 0; co < geo.cout_g; ++co) {
          const T* src = packed_y + co * b.width() + (img - b.img_begin) * b.image_pixels;
          T* dst = y + (img * a.c_out + g * geo.cout_g + co) * geo.out_plane + pix;
          const T add = bias_g != nullptr ? bias_g[co] : T(0);
          for (int64_t i = 0; i < b.image_pixels; ++i) dst[i] = src[i] + add;
        }
    }
  }
}

template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* grad_y, const T* weight, T* grad_x) {
  if (a.n == 0 || a.h == 0 || a.w == 0) return;  // grad_x is empty (and the work split below divides by n)
  const ConvGeometry geo(a);
  const int threads = threads_for(a);
  const BlockPlan plan = plan_blocks(a, geo.pointwise, geo.k, sizeof(T), a.groups, threads, true);
  // Row blocks of one image overlap in grad_x, so one item runs all of them in sequence.
  const int64_t pairs = plan.image_blocks * a.groups;
  const int64_t chunks = pairs >= threads ? 1 : std::min(geo.cin_g, ceil_div(threads, pairs));
  const int64_t chunk_channels = ceil_div(geo.cin_g, chunks);
  const int64_t width = plan.max_width(a);
  const int64_t column_elems = plan.in_place ? 0 : chunk_channels * geo.taps * width;
  const int64_t dy_elems = plan.images_per_block > 1 ? geo.cout_g * width : 0;
  ThreadScratch<T> scratch(threads, column_elems + dy_elems);
  const int64_t items = pairs * chunks;

#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t image_block = item / (a.groups * chunks), g = item / chunks % a.groups;
    const int64_t c_begin = std::min(geo.cin_g, item % chunks * chunk_channels);
    const int64_t c_end = std::min(geo.cin_g, c_begin + chunk_channels);
    if (c_begin == c_end) continue;
    const int64_t rows_k = (c_end - c_begin) * geo.taps;
    const T* w_slice = weight + g * geo.cout_g * geo.k + c_begin * geo.taps;  // columns of weight_g
    T* cols = scratch.of(omp_get_thread_num());
    T* packed_dy = cols + column_elems;
    for (int64_t row_block = 0; row_block < plan.row_blocks; ++row_block) {
      const Block b = plan.block(a, image_block, row_block);
      const int64_t pix = b.pixel_begin(a.w_out);
      const BlockMatrix<const T> dy = gather_block(grad_y, a.c_out, geo.out_plane, g * geo.cout_g,
                                                   (g + 1) * geo.cout_g, b, a.w_out, packed_dy);
      // columns[rows_k, width] = weight_g[:, channel slice]^T x grad_y_g[:, block]
      if (plan.in_place) {
        T* dx = grad_x + (b.img_begin * a.c_in + g * geo.cin_g + c_begin) * geo.in_plane + pix;
        const GemmArgs gemm{rows_k, b.width(), geo.cout_g, true, false, geo.k, dy.ld, geo.in_plane};
        gemm_serial_cpu<T>(gemm, T(1), w_slice, dy.data, T(0), dx);
        continue;
      }
      const GemmArgs gemm{rows_k, b.width(), geo.cout_g, true, false, geo.k, dy.ld, b.width()};
      gemm_serial_cpu<T>(gemm, T(1), w_slice, dy.data, T(0), cols);
      for (int64_t img = b.img_begin; img < b.img_end; ++img) {
        T* dx_group = grad_x + (img * a.c_in + g * geo.cin_g) * geo.in_plane;
        if (row_block == 0)
          std::fill(dx_group + c_begin * geo.in_plane, dx_group + c_end * geo.in_plane, T(0));
        col2im_rows(a, geo, cols + (img - b.img_begin) * b.image_pixels, b.width(), c_begin, c_end,
                    b.oh_begin, b.oh_end, dx_group);
      }
    }
  }
}

template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* grad_y, const T* x, T* grad_weight) {
  const ConvGeometry geo(a);
  const int threads = threads_for(a);
  const BlockPlan plan = plan_blocks(a, geo.pointwise, geo.k, sizeof(T), 1, threads);
  const int64_t width = plan.max_width(a);
  const int64_t column_elems = plan.in_place ? 0 : geo.k * width;
  const int64_t dy_elems = plan.images_per_block > 1 ? geo.cout_g * width : 0;
  const int64_t weight_numel = a.c_out * geo.k;
  ThreadScratch<T> scratch(threads, column_elems + dy_elems);
  ThreadScratch<T> partials(threads, weight_numel);  // per-thread grad_weight, summed below

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int thread = omp_get_thread_num();
    T* dw = partials.of(thread);
    T* cols = scratch.of(thread);
    T* packed_dy = cols + column_elems;
    std::fill(dw, dw + weight_numel, T(0));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < plan.count(); ++item) {
      const Block b = plan.block(a, item / plan.row_blocks, item % plan.row_blocks);
      for (int64_t g = 0; g < a.groups; ++g) {
        const BlockMatrix<const T> columns = block_columns(a, geo, plan, x, g, b, cols);
        const BlockMatrix<const T> dy = gather_block(grad_y, a.c_out, geo.out_plane, g * geo.cout_g,
                                                     (g + 1) * geo.cout_g, b, a.w_out, packed_dy);
        // dw_g[cout_g, k] += grad_y_g[:, block] x columns^T
        const GemmArgs gemm{geo.cout_g, geo.k, b.width(), false, true, dy.ld, columns.ld, geo.k};
        gemm_serial_cpu<T>(gemm, T(1), dy.data, columns.data, T(1), dw + g * geo.cout_g * geo.k);
      }
    }
    // The implicit barrier above makes every partial complete before the sum.
    const int team = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < weight_numel; ++i) {
      T sum = partials.of(0)[i];
      for (int t = 1; t < team; ++t) sum += partials.of(t)[i];
      grad_weight[i] = sum;
    }
  }
}

template <class T>
void conv2d_backward_bias_cpu(const Conv2dArgs& a, const T* grad_y, T* grad_bias) {
  const int64_t plane = a.h_out * a.w_out;
  const bool parallel = a.n * a.c_out * plane >= g_min_parallel_macs.load(std::memory_order_relaxed);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < a.c_out; ++c) {
    double sum = 0;  // in double whatever T: a channel sums up to ~10^6 terms
    for (int64_t img = 0; img < a.n; ++img) {
      const T* p = grad_y + (img * a.c_out + c) * plane;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < plane; ++i) sum += static_cast<double>(p[i]);
    }
    grad_bias[c] = static_cast<T>(sum);
  }
}

template void conv2d_forward_cpu<float>(const Conv2dArgs&, const float*, const float*, const float*, float*);
template void conv2d_forward_cpu<double>(const Conv2dArgs&, const double*, const double*, const double*,
                                         double*);
template void conv2d_backward_input_cpu<float>(const Conv2dArgs&, const float*, const float*, float*);
template void conv2d_backward_input_cpu<double>(const Conv2dArgs&, const double*, const double*, double*);
template void conv2d_backward_weight_cpu<float>(const Conv2dArgs&, const float*, const float*, float*);
template void conv2d_backward_weight_cpu<double>(const Conv2dArgs&, const double*, const double*, double*);
template void conv2d_backward_bias_cpu<float>(const Conv2dArgs&, const float*, float*);
template void conv2d_backward_bias_cpu<double>(const Conv2dArgs&, const double*, double*);

}  // namespace hpa::kernels
