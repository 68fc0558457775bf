// The synthetic HPA-like generator (see synth.h). The drawing works on four float planes in
// [0, 1] at the requested size; all lengths below are written for 512² and multiplied by
// `scale` = size / 512. A sample is drawn in this order, each step from its own part of the
// sample's random stream: cell layout -> per-pixel cell maps -> blue nuclei -> red
// microtubules -> yellow ER -> green label patterns -> background, blur, noise -> uint8.
#include "data/synth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "data/error.h"
#include "data/hpa_classes.h"
#include "data/rng.h"

namespace hpa::data {
namespace {

constexpr float kPi = 3.14159265358979f;

// Stream tags: each part of a sample draws from its own stream, so changing one part (say,
// the noise) never shifts the random numbers of another.
enum StreamTag : uint64_t {
  kIdStream = 1,
  kLabelStream = 2,
  kLayoutStream = 3,
  kPatternStream = 4,
  kNoiseStream = 5
};

// ---- labels ---------------------------------------------------------------------------------

struct Coupling {
  int given, then;
  double probability;
};
constexpr Coupling kCouplings[] = {{10, 9, 0.7}, {9, 10, 0.4}, {3, 2, 0.4}, {19, 18, 0.25}, {17, 16, 0.3}};
constexpr double kMarginalScale = 0.75;  // see synth.h: keeps marginals near the real ones
constexpr int kMaxLabels = 4;

// ---- geometry -------------------------------------------------------------------------------

struct Cell {
  float cx, cy, radius;
  float a1, b1, a2, b2;  // outline: r(θ) = radius (1 + a1 cos θ + b1 sin θ + a2 cos 2θ + b2 sin 2θ)
  float nx, ny;          // nucleus centre
  float na, nb;          // nucleus semi-axes
  float ncos, nsin;      // nucleus orientation
  float expression;      // this cell's protein level (multiplies the green patterns)
  bool mitotic = false;  // a metaphase cell: condensed chromosome plate instead of a nucleus
  int x0, y0, x1, y1;    // bounding box of the cell territory, clipped to the image
};

float cell_rho(const Cell& c, float x, float y) {
  const float dx = x - c.cx, dy = y - c.cy;
  const float d2 = dx * dx + dy * dy;
  if (d2 < 1e-6f) return 0.0f;
  const float d = std::sqrt(d2), inv = 1.0f / d, inv2 = inv * inv;
  const float shape = 1.0f + c.a1 * dx * inv + c.b1 * dy * inv + c.a2 * (dx * dx - dy * dy) * inv2 +
                      c.b2 * 2.0f * dx * dy * inv2;
  return d / (c.radius * shape);
}

float nucleus_rho(const Cell& c, float x, float y) {
  const float dx = x - c.nx, dy = y - c.ny;
  const float u = (dx * c.ncos + dy * c.nsin) / c.na, v = (-dx * c.nsin + dy * c.ncos) / c.nb;
  return std::sqrt(u * u + v * v);
}

struct Point {
  float x, y;
};

// Per-pixel maps of the cell layout, for the owning cell (the one with the smallest
// normalized radius, a Voronoi split where territories overlap).
struct CellMaps {
  std::vector<int8_t> owner;   // -1 background
  std::vector<float> rho;      // owner's normalized radius (< 1 inside)
  std::vector<float> nucleus;  // owner's normalized nucleus radius (< 1 inside)
  std::vector<float> contact;  // 0..1, high on the border between two cells
};

struct Scene {
  int size = 0;
  float scale = 1;
  std::vector<Cell> cells;
  CellMaps maps;
  std::array<std::vector<float>, kNumChannels> planes;  // red, green, blue, yellow in [0, 1]
  std::vector<float> scratch;                           // blur and map temporaries
  int bridge_a = -1, bridge_b = -1;                     // daughter cells for the cytokinetic bridge
  int mitotic_cell = -1;

  float* plane(Stain s) { return planes[static_cast<int>(s)].data(); }
  size_t at(int x, int y) const { return static_cast<size_t>(y) * size + x; }
  bool inside(float x, float y) const { return x >= 0 && y >= 0 && x < size && y < size; }
};

// ---- drawing primitives -----------------------------------------------------------------------

// Adds amp * exp(-d²/2σ²), evaluated separably (two small tables of exps, not one per pixel).
void splat(Scene& s, float* plane, float x, float y, float sigma, float amp) {
  sigma = std::max(sigma, 0.6f);  // thinner than a pixel would alias away at small sizes
  const int radius = static_cast<int>(std::ceil(2.5f * sigma));
  const int xi = static_cast<int>(std::floor(x)), yi = static_cast<int>(std::floor(y));
  const int x0 = std::max(0, xi - radius), x1 = std::min(s.size - 1, xi + radius + 1);
  const int y0 = std::max(0, yi - radius), y1 = std::min(s.size - 1, yi + radius + 1);
  if (x0 > x1 || y0 > y1) return;
  float wx[512], wy[512];
  const int nx = std::min(512, x1 - x0 + 1), ny = std::min(512, y1 - y0 + 1);
  const float k = -0.5f / (sigma * sigma);
  for (int i = 0; i < nx; ++i) wx[i] = std::exp(k * (x0 + i - x) * (x0 + i - x));
  for (int j = 0; j < ny; ++j) wy[j] = amp * std::exp(k * (y0 + j - y) * (y0 + j - y));
  for (int j = 0; j < ny; ++j) {
    float* row = plane + s.at(x0, y0 + j);
    for (int i = 0; i < nx; ++i) row[i] += wy[j] * wx[i];
  }
}

// A line of splats every ~0.6σ along a polyline; amp is the intensity along the line.
void stroke(Scene& s, float* plane, const std::vector<Point>& path, float sigma, float amp) {
  const float step = std::max(0.5f, 0.6f * sigma);
  // Overlapping Gaussians spaced `step` apart sum to about sqrt(2π) σ / step times amp.
  const float per_splat = amp * step / (2.5066f * sigma);
  for (size_t i = 1; i < path.size(); ++i) {
    const float dx = path[i].x - path[i - 1].x, dy = path[i].y - path[i - 1].y;
    const int n = std::max(1, static_cast<int>(std::sqrt(dx * dx + dy * dy) / step));
    for (int k = 0; k < n; ++k) {
      const float t = static_cast<float>(k) / n;
      splat(s, plane, path[i - 1].x + t * dx, path[i - 1].y + t * dy, sigma, per_splat);
    }
  }
}

void segment(Scene& s, float* plane, Point a, Point b, float sigma, float amp) {
  stroke(s, plane, {a, b}, sigma, amp);
}

// A hollow circle: amp * exp(-(d - r)² / 2σ²).
void ring(Scene& s, float* plane, float x, float y, float r, float sigma, float amp) {
  const int extent = static_cast<int>(std::ceil(r + 3 * sigma));
  const int x0 = std::max(0, static_cast<int>(x) - extent),
            x1 = std::min(s.size - 1, static_cast<int>(x) + extent);
  const int y0 = std::max(0, static_cast<int>(y) - extent),
            y1 = std::min(s.size - 1, static_cast<int>(y) + extent);
  const float k = -0.5f / (sigma * sigma);
  for (int py = y0; py <= y1; ++py)
    for (int px = x0; px <= x1; ++px) {
      const float d = std::sqrt((px - x) * (px - x) + (py - y) * (py - y)) - r;
      plane[s.at(px, py)] += amp * std::exp(k * d * d);
    }
}

// A wandering curve: heading changes by a constant curvature plus random wiggle per pixel.
std::vector<Point> curve(Point start, float heading, float length, float curvature, float wiggle, Rng& rng) {
  std::vector<Point> path{start};
  const int steps = std::max(2, static_cast<int>(length / 2.0f));
  Point p = start;
  for (int i = 0; i < steps; ++i) {
    heading += 2.0f * curvature + wiggle * static_cast<float>(rng.normal());
    p.x += 2.0f * std::cos(heading);
    p.y += 2.0f * std::sin(heading);
    path.push_back(p);
  }
  return path;
}

// Smooth value noise in [0, 1): random values on a grid of `cells` x `cells`, smoothstep
// interpolated to size x size.
std::vector<float> value_noise(int size, int cells, Rng& rng) {
  const int g = cells + 2;
  std::vector<float> grid(static_cast<size_t>(g) * g);
  for (float& v : grid) v = static_cast<float>(rng.uniform());
  std::vector<float> out(static_cast<size_t>(size) * size);
  const float f = static_cast<float>(cells) / size;
  std::vector<int> ix(size);
  std::vector<float> tx(size);
  for (int i = 0; i < size; ++i) {
    const float u = i * f;
    ix[i] = static_cast<int>(u);
    const float t = u - ix[i];
    tx[i] = t * t * (3 - 2 * t);
  }
  for (int y = 0; y < size; ++y) {
    const float* r0 = &grid[static_cast<size_t>(ix[y]) * g];
    const float* r1 = r0 + g;
    const float ty = tx[y];
    float* dst = &out[static_cast<size_t>(y) * size];
    for (int x = 0; x < size; ++x) {
      const int i = ix[x];
      const float top = r0[i] + tx[x] * (r0[i + 1] - r0[i]);
      const float bottom = r1[i] + tx[x] * (r1[i + 1] - r1[i]);
      dst[x] = top + ty * (bottom - top);
    }
  }
  return out;
}

// A reticular (net-like) texture: thin ridges along the 0.5 level lines of value noise.
std::vector<float> reticular_noise(int size, int cells, Rng& rng) {
  std::vector<float> n = value_noise(size, cells, rng);
  for (float& v : n) {
    const float d = (v - 0.5f) * 14.0f;
    v = 1.0f / (1.0f + d * d);
  }
  return n;
}

// ---- layout ---------------------------------------------------------------------------------

Cell make_cell(float cx, float cy, float radius, Rng& rng, int size) {
  Cell c{};
  c.cx = cx;
  c.cy = cy;
  c.radius = radius;
  c.a1 = static_cast<float>(rng.uniform(-0.12, 0.12));
  c.b1 = static_cast<float>(rng.uniform(-0.12, 0.12));
  c.a2 = static_cast<float>(rng.uniform(-0.15, 0.15));
  c.b2 = static_cast<float>(rng.uniform(-0.15, 0.15));
  const float offset = radius * static_cast<float>(rng.uniform(0.0, 0.15));
  const float angle = static_cast<float>(rng.uniform(0, 2 * kPi));
  c.nx = cx + offset * std::cos(angle);
  c.ny = cy + offset * std::sin(angle);
  const float nucleus = radius * static_cast<float>(rng.uniform(0.36, 0.46));
  const float aspect = static_cast<float>(rng.uniform(1.0, 1.35));
  c.na = nucleus * aspect;
  c.nb = nucleus / aspect;
  const float orientation = static_cast<float>(rng.uniform(0, kPi));
  c.ncos = std::cos(orientation);
  c.nsin = std::sin(orientation);
  c.expression = static_cast<float>(rng.uniform(0.55, 1.2));
  const float reach = radius * 1.6f;  // the outline stays below +38%, so rho < 1.1 fits
  c.x0 = std::max(0, static_cast<int>(cx - reach));
  c.x1 = std::min(size - 1, static_cast<int>(cx + reach) + 1);
  c.y0 = std::max(0, static_cast<int>(cy - reach));
  c.y1 = std::min(size - 1, static_cast<int>(cy + reach) + 1);
  return c;
}

void layout_cells(Scene& s, LabelMask labels, Rng& rng) {
  const float S = static_cast<float>(s.size);
  const float mean_radius = static_cast<float>(rng.uniform(58, 80)) * s.scale;
  const int wanted = static_cast<int>(rng.range(4, 8));
  // A pair of daughter cells first when the sample shows a cytokinetic bridge.
  if ((labels >> 16) & 1u) {
    const float r = 0.72f * mean_radius;
    const float angle = static_cast<float>(rng.uniform(0, kPi));
    const float cx = static_cast<float>(rng.uniform(0.35, 0.65)) * S,
                cy = static_cast<float>(rng.uniform(0.35, 0.65)) * S;
    const float half = 0.95f * r;
    s.cells.push_back(make_cell(cx - half * std::cos(angle), cy - half * std::sin(angle), r, rng, s.size));
    s.cells.push_back(make_cell(cx + half * std::cos(angle), cy + half * std::sin(angle), r, rng, s.size));
    s.bridge_a = 0;
    s.bridge_b = 1;
  }
  // Dart throwing: centres at least 1.45 mean radii apart, so neighbours touch.
  for (int attempt = 0; attempt < 200 && static_cast<int>(s.cells.size()) < wanted; ++attempt) {
    const float r = mean_radius * static_cast<float>(rng.uniform(0.8, 1.2));
    const float cx = static_cast<float>(rng.uniform(0.04, 0.96)) * S,
                cy = static_cast<float>(rng.uniform(0.04, 0.96)) * S;
    bool free = true;
    for (const Cell& c : s.cells) {
      const float dx = c.cx - cx, dy = c.cy - cy;
      if (dx * dx + dy * dy < (1.45f * mean_radius) * (1.45f * mean_radius)) free = false;
    }
    if (free) s.cells.push_back(make_cell(cx, cy, r, rng, s.size));
  }
  if ((labels >> 17) & 1u) {
    // A metaphase cell: rounder, its chromosomes condensed into a plate.
    s.mitotic_cell = static_cast<int>(s.cells.size()) - 1;
    Cell& m = s.cells[s.mitotic_cell];
    m.mitotic = true;
    m.a1 *= 0.3f;
    m.b1 *= 0.3f;
    m.a2 *= 0.3f;
    m.b2 *= 0.3f;
    m.nx = m.cx;
    m.ny = m.cy;
    m.na = 0.12f * m.radius;
    m.nb = 0.42f * m.radius;
  }
}

void compute_maps(Scene& s) {
  const size_t n = static_cast<size_t>(s.size) * s.size;
  CellMaps& m = s.maps;
  m.owner.assign(n, -1);
  m.rho.assign(n, 9.0f);
  m.nucleus.assign(n, 9.0f);
  m.contact.assign(n, 0.0f);
  std::vector<float>& second = s.scratch;
  second.assign(n, 9.0f);
  for (size_t k = 0; k < s.cells.size(); ++k) {
    const Cell& c = s.cells[k];
    for (int y = c.y0; y <= c.y1; ++y)
      for (int x = c.x0; x <= c.x1; ++x) {
        const float r = cell_rho(c, x + 0.5f, y + 0.5f);
        if (r >= 1.25f) continue;
        const size_t i = s.at(x, y);
        if (r < m.rho[i]) {
          second[i] = m.rho[i];
          m.rho[i] = r;
          m.owner[i] = static_cast<int8_t>(k);
          m.nucleus[i] = nucleus_rho(c, x + 0.5f, y + 0.5f);
        } else if (r < second[i]) {
          second[i] = r;
        }
      }
  }
  for (size_t i = 0; i < n; ++i) {
    if (m.rho[i] >= 1.0f) {
      m.owner[i] = -1;
      continue;
    }
    if (second[i] < 1.1f) {
      const float gap = (second[i] - m.rho[i]) * 18.0f;
      m.contact[i] = 1.0f / (1.0f + gap * gap);
    }
  }
}

// A random point in cell k's cytoplasm with normalized radius in [lo, hi]; falls back to the
// cell centre region if the cell is mostly outside the image.
Point cytoplasm_point(const Scene& s, int k, float lo, float hi, Rng& rng) {
  const Cell& c = s.cells[k];
  Point p{c.cx, c.cy};
  for (int attempt = 0; attempt < 40; ++attempt) {
    const float angle = static_cast<float>(rng.uniform(0, 2 * kPi));
    const float d = c.radius * static_cast<float>(rng.uniform(lo, hi));
    p = {c.cx + d * std::cos(angle), c.cy + d * std::sin(angle)};
    if (!s.inside(p.x, p.y)) continue;
    const size_t i = s.at(static_cast<int>(p.x), static_cast<int>(p.y));
    if (s.maps.owner[i] == k && s.maps.nucleus[i] > 1.08f && s.maps.rho[i] >= lo && s.maps.rho[i] <= hi)
      return p;
  }
  return p;
}

// A random point inside cell k's nucleus at normalized nucleus radius <= reach.
Point nucleus_point(const Cell& c, float reach, Rng& rng) {
  const float r = reach * static_cast<float>(std::sqrt(rng.uniform()));
  const float angle = static_cast<float>(rng.uniform(0, 2 * kPi));
  const float u = r * std::cos(angle) * c.na, v = r * std::sin(angle) * c.nb;
  return {c.nx + u * c.ncos - v * c.nsin, c.ny + u * c.nsin + v * c.ncos};
}

// The point on the nucleus edge (times `factor`) in direction `angle` from its centre.
Point nucleus_edge(const Cell& c, float angle, float factor) {
  const float local = angle - std::atan2(c.nsin, c.ncos);
  const float u = std::cos(local) * c.na, v = std::sin(local) * c.nb;
  const float ca = std::cos(angle), sa = std::sin(angle);
  const float r = factor * std::sqrt(u * u + v * v);
  return {c.nx + r * ca, c.ny + r * sa};
}

bool visible(const Scene& s, const Cell& c) { return c.x0 <= c.x1 && c.y0 <= c.y1 && s.inside(c.cx, c.cy); }

// ---- reference channels ---------------------------------------------------------------------

void draw_nuclei(Scene& s, Rng& rng) {
  float* blue = s.plane(Stain::blue);
  const std::vector<float> texture = value_noise(s.size, std::max(4, s.size / 12), rng);
  std::vector<float> level(s.cells.size());
  for (float& l : level) l = static_cast<float>(rng.uniform(0.45, 0.8));
  const size_t n = static_cast<size_t>(s.size) * s.size;
  for (size_t i = 0; i < n; ++i) {
    const int k = s.maps.owner[i];
    if (k < 0) continue;
    const float r = s.maps.nucleus[i];
    if (r >= 1.15f) continue;
    const float edge = std::clamp((1.1f - r) * 5.0f, 0.0f, 1.0f);  // soft rim
    const float boost = s.cells[k].mitotic ? 1.5f : 1.0f;
    blue[i] += boost * level[k] * edge * (0.65f + 0.5f * texture[i]);
  }
}

void draw_microtubules(Scene& s, Rng& rng) {
  float* red = s.plane(Stain::red);
  const size_t n = static_cast<size_t>(s.size) * s.size;
  for (size_t i = 0; i < n; ++i)
    if (s.maps.owner[i] >= 0) red[i] += 0.12f * (1.15f - s.maps.rho[i]);
  for (size_t k = 0; k < s.cells.size(); ++k) {
    const Cell& c = s.cells[k];
    if (!visible(s, c)) continue;
    const int count = static_cast<int>(rng.range(30, 44));
    for (int f = 0; f < count; ++f) {
      const float angle = static_cast<float>(rng.uniform(0, 2 * kPi));
      const Point start = nucleus_edge(c, angle, 1.05f);
      const float length = c.radius * static_cast<float>(rng.uniform(0.6, 1.1));
      const auto path = curve(start, angle + static_cast<float>(rng.uniform(-0.6, 0.6)), length,
                              static_cast<float>(rng.uniform(-0.012, 0.012)) / s.scale, 0.06f, rng);
      stroke(s, red, path, 0.9f * s.scale, static_cast<float>(rng.uniform(0.18, 0.32)));
    }
  }
}

void draw_er(Scene& s, float* plane, float amplitude, int net_cells, Rng& rng) {
  const std::vector<float> net = reticular_noise(s.size, net_cells, rng);
  const size_t n = static_cast<size_t>(s.size) * s.size;
  for (size_t i = 0; i < n; ++i) {
    const int k = s.maps.owner[i];
    if (k < 0 || s.maps.nucleus[i] < 0.95f) continue;
    const float near_nucleus = std::clamp(1.15f - s.maps.rho[i], 0.0f, 1.0f);
    plane[i] += amplitude * s.cells[k].expression * near_nucleus * (0.25f + net[i]);
  }
}

// ---- the 28 green patterns --------------------------------------------------------------------

void draw_nucleus_fill(Scene& s, float* g, float amp, Rng& rng) {  // 0 nucleoplasm
  const std::vector<float> texture = value_noise(s.size, std::max(4, s.size / 16), rng);
  const size_t n = static_cast<size_t>(s.size) * s.size;
  for (size_t i = 0; i < n; ++i) {
    const int k = s.maps.owner[i];
    if (k < 0 || s.maps.nucleus[i] >= 1.05f) continue;
    const float edge = std::clamp((1.02f - s.maps.nucleus[i]) * 8.0f, 0.0f, 1.0f);
    g[i] += amp * s.cells[k].expression * edge * (0.7f + 0.4f * texture[i]);
  }
}

void draw_nuclear_membrane(Scene& s, float* g, float amp) {  // 1
  const size_t n = static_cast<size_t>(s.size) * s.size;
  for (size_t i = 0; i < n; ++i) {
    const int k = s.maps.owner[i];
    if (k < 0 || s.cells[k].mitotic) continue;
    const float d = (s.maps.nucleus[i] - 1.0f) * 16.0f;
    if (std::abs(d) < 4.0f) g[i] += amp * s.cells[k].expression * std::exp(-d * d);
  }
}

template <typename Fn>
void for_interphase_cells(Scene& s, Fn&& fn) {
  for (size_t k = 0; k < s.cells.size(); ++k)
    if (!s.cells[k].mitotic && visible(s, s.cells[k])) fn(static_cast<int>(k), s.cells[k]);
}

void draw_green(Scene& s, int label, Rng& rng) {
  float* g = s.plane(Stain::green);
  const float sc = s.scale;
  const float amp = static_cast<float>(rng.uniform(0.55, 0.9));
  switch (label) {
    case 0:
      draw_nucleus_fill(s, g, 0.55f * amp, rng);
      break;
    case 1:
      draw_nuclear_membrane(s, g, amp);
      break;
    case 2:  // nucleoli: a few irregular blobs inside each nucleus
      for_interphase_cells(s, [&](int, const Cell& c) {
        const int count = static_cast<int>(rng.range(1, 4));
        for (int i = 0; i < count; ++i) {
          const Point p = nucleus_point(c, 0.6f, rng);
          const float r = static_cast<float>(rng.uniform(3.5, 6.0)) * sc;
          for (int lobe = 0; lobe < 3; ++lobe)
            splat(s, g, p.x + static_cast<float>(rng.normal(0, 0.5 * r)),
                  p.y + static_cast<float>(rng.normal(0, 0.5 * r)), r * 0.8f, 0.45f * amp * c.expression);
        }
      });
      break;
    case 3:  // nucleoli fibrillar center: clusters of small bright dots
      for_interphase_cells(s, [&](int, const Cell& c) {
        const int sites = static_cast<int>(rng.range(1, 3));
        for (int i = 0; i < sites; ++i) {
          const Point p = nucleus_point(c, 0.6f, rng);
          splat(s, g, p.x, p.y, 5.0f * sc, 0.12f * amp * c.expression);  // the faint nucleolus around them
          const int dots = static_cast<int>(rng.range(3, 7));
          for (int d = 0; d < dots; ++d)
            splat(s, g, p.x + static_cast<float>(rng.normal(0, 2.5 * sc)),
                  p.y + static_cast<float>(rng.normal(0, 2.5 * sc)), 1.2f * sc, 1.8f * amp * c.expression);
        }
      });
      break;
    case 4:  // nuclear speckles: many small irregular dots over faint nucleoplasm
      draw_nucleus_fill(s, g, 0.12f * amp, rng);
      for_interphase_cells(s, [&](int, const Cell& c) {
        const int count = static_cast<int>(rng.range(22, 40));
        for (int i = 0; i < count; ++i) {
          const Point p = nucleus_point(c, 0.85f, rng);
          splat(s, g, p.x, p.y, static_cast<float>(rng.uniform(1.4, 2.4)) * sc, 0.55f * amp * c.expression);
        }
      });
      break;
    case 5:  // nuclear bodies: a few distinct round dots
      for_interphase_cells(s, [&](int, const Cell& c) {
        const int count = static_cast<int>(rng.range(2, 6));
        for (int i = 0; i < count; ++i) {
          const Point p = nucleus_point(c, 0.8f, rng);
          splat(s, g, p.x, p.y, 2.3f * sc, 1.5f * amp * c.expression);
        }
      });
      break;
    case 6:  // endoplasmic reticulum
      draw_er(s, g, 0.45f * amp, std::max(6, s.size / 10), rng);
      break;
    case 7:  // golgi: a compact crescent of blobs on one side of the nucleus
      for_interphase_cells(s, [&](int, const Cell& c) {
        const float side = static_cast<float>(rng.uniform(0, 2 * kPi));
        for (int i = 0; i < 10; ++i) {
          const float a = side + static_cast<float>(rng.uniform(-0.5, 0.5));
          const Point p = nucleus_edge(c, a, static_cast<float>(rng.uniform(1.12, 1.35)));
          splat(s, g, p.x, p.y, static_cast<float>(rng.uniform(2.0, 3.5)) * sc, 0.45f * amp * c.expression);
        }
      });
      break;
    case 8:     // peroxisomes: many small uniform dots everywhere in the cytoplasm
    case 9:     // endosomes: medium dots of varied size, more perinuclear
    case 10: {  // lysosomes: fewer, larger dots clustered near the nucleus
      const int lo = label == 8 ? 45 : label == 9 ? 18 : 10, hi = label == 8 ? 70 : label == 9 ? 30 : 18;
      for_interphase_cells(s, [&](int k, const Cell& c) {
        const int count = static_cast<int>(rng.range(lo, hi));
        for (int i = 0; i < count; ++i) {
          const float reach = label == 8 ? 0.95f : label == 9 ? 0.8f : 0.65f;
          const Point p = cytoplasm_point(s, k, 0.15f, reach, rng);
          const float sigma = label == 8   ? 0.9f
                              : label == 9 ? static_cast<float>(rng.uniform(1.2, 2.2))
                                           : static_cast<float>(rng.uniform(2.2, 3.2));
          splat(s, g, p.x, p.y, sigma * sc, (label == 8 ? 0.8f : 0.7f) * amp * c.expression);
        }
      });
      break;
    }
    case 11:  // intermediate filaments: long wavy fibres wrapping around the nucleus
      for_interphase_cells(s, [&](int, const Cell& c) {
        for (int f = 0; f < 14; ++f) {
          const float a = static_cast<float>(rng.uniform(0, 2 * kPi));
          const Point start = nucleus_edge(c, a, static_cast<float>(rng.uniform(1.1, 1.6)));
          const auto path = curve(start, a + kPi / 2, c.radius * static_cast<float>(rng.uniform(0.8, 1.5)),
                                  0.02f / sc, 0.08f, rng);
          stroke(s, g, path, 1.3f * sc, 0.35f * amp * c.expression);
        }
      });
      break;
    case 12:  // actin: straight parallel stress fibres and a bright cortex at the cell edge
      for_interphase_cells(s, [&](int, const Cell& c) {
        const float a = static_cast<float>(rng.uniform(0, kPi));
        const float ca = std::cos(a), sa = std::sin(a);
        for (int f = 0; f < 8; ++f) {
          const float offset = c.radius * static_cast<float>(rng.uniform(-0.8, 0.8));
          const float half =
              c.radius * std::sqrt(std::max(0.05f, 1.0f - (offset / c.radius) * (offset / c.radius))) * 0.9f;
          const Point mid{c.cx - sa * offset, c.cy + ca * offset};
          segment(s, g, {mid.x - ca * half, mid.y - sa * half}, {mid.x + ca * half, mid.y + sa * half},
                  1.0f * sc, 0.4f * amp * c.expression);
        }
      });
      {
        const size_t n = static_cast<size_t>(s.size) * s.size;
        for (size_t i = 0; i < n; ++i) {
          const int k = s.maps.owner[i];
          if (k < 0) continue;
          const float d = (s.maps.rho[i] - 0.95f) * 20.0f;
          g[i] += 0.35f * amp * s.cells[k].expression / (1.0f + d * d);
        }
      }
      break;
    case 13:  // focal adhesions: elongated radial spots at the periphery
      for_interphase_cells(s, [&](int, const Cell& c) {
        for (int i = 0; i < 16; ++i) {
          const float a = static_cast<float>(rng.uniform(0, 2 * kPi));
          const float r = c.radius * static_cast<float>(rng.uniform(0.78, 0.93));
          const float half = static_cast<float>(rng.uniform(2.5, 4.5)) * sc;
          const Point p{c.cx + r * std::cos(a), c.cy + r * std::sin(a)};
          segment(s, g, {p.x - half * std::cos(a), p.y - half * std::sin(a)},
                  {p.x + half * std::cos(a), p.y + half * std::sin(a)}, 1.0f * sc, 0.8f * amp * c.expression);
        }
      });
      break;
    case 14:  // microtubules: fine curved filaments radiating from the nucleus
      for_interphase_cells(s, [&](int, const Cell& c) {
        for (int f = 0; f < 26; ++f) {
          const float a = static_cast<float>(rng.uniform(0, 2 * kPi));
          const auto path =
              curve(nucleus_edge(c, a, 1.05f), a, c.radius * static_cast<float>(rng.uniform(0.5, 0.9)),
                    static_cast<float>(rng.uniform(-0.006, 0.006)), 0.05f, rng);
          stroke(s, g, path, 0.8f * sc, 0.35f * amp * c.expression);
        }
      });
      break;
    case 15:  // microtubule ends: tiny comet dots near the periphery
      for_interphase_cells(s, [&](int, const Cell& c) {
        for (int i = 0; i < 40; ++i) {
          const float a = static_cast<float>(rng.uniform(0, 2 * kPi));
          const float r = c.radius * static_cast<float>(rng.uniform(0.6, 0.92));
          const Point p{c.cx + r * std::cos(a), c.cy + r * std::sin(a)};
          segment(s, g, p, {p.x + 3.0f * sc * std::cos(a), p.y + 3.0f * sc * std::sin(a)}, 0.9f * sc,
                  1.2f * amp * c.expression);
        }
      });
      break;
    case 16:  // cytokinetic bridge between the two daughter cells, with a bright midbody
      if (s.bridge_a >= 0) {
        const Cell &a = s.cells[s.bridge_a], &b = s.cells[s.bridge_b];
        const float angle = std::atan2(b.ny - a.ny, b.nx - a.nx);
        const Point from = nucleus_edge(a, angle, 1.1f), to = nucleus_edge(b, angle + kPi, 1.1f);
        segment(s, g, from, to, 1.3f * sc, 0.9f * amp);
        splat(s, g, 0.5f * (from.x + to.x), 0.5f * (from.y + to.y), 2.5f * sc, 1.2f * amp);
      }
      break;
    case 17:  // mitotic spindle: a fan of fibres from two poles to the chromosome plate
      if (s.mitotic_cell >= 0) {
        const Cell& c = s.cells[s.mitotic_cell];
        const Point axis{c.ncos, c.nsin};  // the plate's short axis: the spindle axis
        const Point perp{-c.nsin, c.ncos};
        for (int side = -1; side <= 1; side += 2) {
          const Point pole{c.nx + side * 0.55f * c.radius * axis.x, c.ny + side * 0.55f * c.radius * axis.y};
          splat(s, g, pole.x, pole.y, 3.0f * sc, 1.4f * amp);
          for (int f = 0; f < 11; ++f) {
            const float t = (f - 5) / 5.0f * c.nb * 0.9f;
            segment(s, g, pole, {c.nx + t * perp.x, c.ny + t * perp.y}, 1.2f * sc, 0.7f * amp);
          }
        }
      }
      break;
    case 18:  // MTOC: one bright dot beside the nucleus with a diffuse aster around it
      for_interphase_cells(s, [&](int, const Cell& c) {
        const Point p = nucleus_edge(c, static_cast<float>(rng.uniform(0, 2 * kPi)), 1.2f);
        splat(s, g, p.x, p.y, 10.0f * sc, 0.3f * amp * c.expression);
        splat(s, g, p.x, p.y, 3.5f * sc, 1.6f * amp * c.expression);
      });
      break;
    case 19:  // centrosome: two small sharp dots close together beside the nucleus
      for_interphase_cells(s, [&](int, const Cell& c) {
        const Point p = nucleus_edge(c, static_cast<float>(rng.uniform(0, 2 * kPi)), 1.2f);
        const float a = static_cast<float>(rng.uniform(0, 2 * kPi));
        const float d = 2.5f * sc;
        splat(s, g, p.x + d * std::cos(a), p.y + d * std::sin(a), 1.4f * sc, 2.2f * amp * c.expression);
        splat(s, g, p.x - d * std::cos(a), p.y - d * std::sin(a), 1.4f * sc, 2.2f * amp * c.expression);
      });
      break;
    case 20:  // lipid droplets: hollow rings in the cytoplasm
      for_interphase_cells(s, [&](int k, const Cell& c) {
        const int count = static_cast<int>(rng.range(4, 9));
        for (int i = 0; i < count; ++i) {
          const Point p = cytoplasm_point(s, k, 0.2f, 0.85f, rng);
          ring(s, g, p.x, p.y, static_cast<float>(rng.uniform(3.0, 5.0)) * sc, 0.9f * sc,
               0.8f * amp * c.expression);
        }
      });
      break;
    case 21:    // plasma membrane: the whole cell outline
    case 22: {  // cell junctions: only where two cells touch
      const size_t n = static_cast<size_t>(s.size) * s.size;
      for (size_t i = 0; i < n; ++i) {
        const int k = s.maps.owner[i];
        if (k < 0) continue;
        const float e = s.cells[k].expression;
        if (label == 21) {
          const float d = (s.maps.rho[i] - 0.96f) * 28.0f;
          g[i] += 0.75f * amp * e / (1.0f + d * d) + 0.5f * amp * e * s.maps.contact[i];
        } else {
          g[i] += 1.0f * amp * e * s.maps.contact[i] * s.maps.contact[i];
        }
      }
      break;
    }
    case 23:  // mitochondria: many short rods, denser around the nucleus
      for_interphase_cells(s, [&](int k, const Cell& c) {
        for (int i = 0; i < 55; ++i) {
          const Point p = cytoplasm_point(s, k, 0.1f, i % 3 == 0 ? 0.9f : 0.65f, rng);
          const float a = static_cast<float>(rng.uniform(0, kPi));
          const float half = static_cast<float>(rng.uniform(2.5, 5.0)) * sc;
          segment(s, g, {p.x - half * std::cos(a), p.y - half * std::sin(a)},
                  {p.x + half * std::cos(a), p.y + half * std::sin(a)}, 1.0f * sc, 0.5f * amp * c.expression);
        }
      });
      break;
    case 24:  // aggresome: one big bright blob beside the nucleus, in most cells
      for_interphase_cells(s, [&](int, const Cell& c) {
        if (!rng.bernoulli(0.75)) return;
        const Point p = nucleus_edge(c, static_cast<float>(rng.uniform(0, 2 * kPi)), 1.35f);
        splat(s, g, p.x, p.y, static_cast<float>(rng.uniform(5.5, 8.0)) * sc, 1.6f * amp * c.expression);
      });
      break;
    case 25: {  // cytosol: diffuse cytoplasm, nucleus excluded
      const size_t n = static_cast<size_t>(s.size) * s.size;
      for (size_t i = 0; i < n; ++i) {
        const int k = s.maps.owner[i];
        if (k < 0) continue;
        const float outside_nucleus = std::clamp((s.maps.nucleus[i] - 0.98f) * 8.0f, 0.0f, 1.0f);
        const float edge = std::clamp((1.0f - s.maps.rho[i]) * 10.0f, 0.0f, 1.0f);
        g[i] += 0.4f * amp * s.cells[k].expression * outside_nucleus * edge;
      }
      break;
    }
    case 26:  // cytoplasmic bodies: one to three distinct round bodies in the cytoplasm
      for_interphase_cells(s, [&](int k, const Cell& c) {
        const int count = static_cast<int>(rng.range(1, 3));
        for (int i = 0; i < count; ++i) {
          const Point p = cytoplasm_point(s, k, 0.25f, 0.8f, rng);
          splat(s, g, p.x, p.y, 3.2f * sc, 1.6f * amp * c.expression);
        }
      });
      break;
    case 27:  // rods & rings: thick straight rods and small rings
      for_interphase_cells(s, [&](int k, const Cell& c) {
        for (int i = 0; i < 3; ++i) {
          const Point p = cytoplasm_point(s, k, 0.25f, 0.8f, rng);
          if (i % 2 == 0) {
            const float a = static_cast<float>(rng.uniform(0, kPi));
            const float half = static_cast<float>(rng.uniform(5.0, 8.0)) * sc;
            segment(s, g, {p.x - half * std::cos(a), p.y - half * std::sin(a)},
                    {p.x + half * std::cos(a), p.y + half * std::sin(a)}, 1.6f * sc,
                    1.0f * amp * c.expression);
          } else {
            ring(s, g, p.x, p.y, 3.2f * sc, 1.1f * sc, 1.0f * amp * c.expression);
          }
        }
      });
      break;
    default:
      break;
  }
}

// ---- finishing --------------------------------------------------------------------------------

// [1 2 1] / 4 separable blur, `passes` times (σ ≈ 0.7 px per pass).
void blur(std::vector<float>& plane, int size, int passes, std::vector<float>& scratch) {
  scratch.resize(plane.size());
  for (int p = 0; p < passes; ++p) {
    for (int y = 0; y < size; ++y) {
      const float* __restrict in = &plane[static_cast<size_t>(y) * size];
      float* __restrict out = &scratch[static_cast<size_t>(y) * size];
      out[0] = (3 * in[0] + in[1]) * 0.25f;
      for (int x = 1; x < size - 1; ++x) out[x] = (in[x - 1] + 2 * in[x] + in[x + 1]) * 0.25f;
      out[size - 1] = (in[size - 2] + 3 * in[size - 1]) * 0.25f;
    }
    for (int y = 0; y < size; ++y) {
      const float* __restrict up = &scratch[static_cast<size_t>(std::max(0, y - 1)) * size];
      const float* __restrict mid = &scratch[static_cast<size_t>(y) * size];
      const float* __restrict down = &scratch[static_cast<size_t>(std::min(size - 1, y + 1)) * size];
      float* __restrict out = &plane[static_cast<size_t>(y) * size];
      for (int x = 0; x < size; ++x) out[x] = (up[x] + 2 * mid[x] + down[x]) * 0.25f;
    }
  }
}

// Approximately standard normal from one 64-bit draw: the sum of four 16-bit uniforms,
// centred and scaled (Irwin-Hall, variance 4/12). Cheap enough for one per pixel.
inline float fast_normal(uint64_t bits) {
  const float sum =
      static_cast<float>((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48));
  return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

// A smooth random profile along one axis (a few cosines), for uneven illumination.
std::vector<float> smooth_profile(int size, Rng& rng) {
  std::vector<float> p(size);
  const float phase1 = static_cast<float>(rng.uniform(0, 2 * kPi)),
              phase2 = static_cast<float>(rng.uniform(0, 2 * kPi));
  for (int i = 0; i < size; ++i) {
    const float t = static_cast<float>(i) / size;
    p[i] = 0.5f + 0.3f * std::cos(2 * kPi * 0.7f * t + phase1) + 0.2f * std::cos(2 * kPi * 1.6f * t + phase2);
  }
  return p;
}

// Gain, background, uneven illumination, blur, then camera noise (read noise plus shot noise
// growing with the signal) and quantization to 8 bits.
void finish(Scene& s, Image& out, Rng& rng) {
  std::vector<float>& scratch = s.scratch;
  const int passes = static_cast<int>(rng.range(1, 2));
  // Noise std as a function of the signal, tabulated on a 1/256 grid of [0, 2).
  float noise_std[512];
  for (int i = 0; i < 512; ++i) noise_std[i] = 0.004f + 0.03f * std::sqrt(i / 256.0f);
  for (int c = 0; c < kNumChannels; ++c) {
    std::vector<float>& plane = s.planes[c];
    const float gain = static_cast<float>(rng.uniform(0.7, 1.25));
    const float background = static_cast<float>(rng.uniform(0.01, 0.04));
    const std::vector<float> across = smooth_profile(s.size, rng), down = smooth_profile(s.size, rng);
    blur(plane, s.size, passes, scratch);
    uint8_t* dst = out.channel(c);
    for (int y = 0; y < s.size; ++y) {
      const float* row = &plane[static_cast<size_t>(y) * s.size];
      uint8_t* out_row = dst + static_cast<size_t>(y) * s.size;
      for (int x = 0; x < s.size; ++x) {
        const float v = gain * row[x] * (0.85f + 0.3f * across[x] * down[y]) + background;
        const int bucket = std::clamp(static_cast<int>(v * 256.0f), 0, 511);
        const float noisy = v + noise_std[bucket] * fast_normal(rng.next_u64());
        out_row[x] = static_cast<uint8_t>(std::clamp(noisy * 255.0f + 0.5f, 0.0f, 255.0f));
      }
    }
  }
}

}  // namespace

std::string synth_id(uint64_t seed, int64_t index) {
  const uint64_t hi = mix_seed(seed, kIdStream, static_cast<uint64_t>(index));
  const uint64_t lo = mix_seed(hi, kIdStream);
  char text[40];
  std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return text;
}

LabelMask synth_labels(uint64_t seed, int64_t index) {
  Rng rng(mix_seed(seed, kLabelStream), static_cast<uint64_t>(index));
  LabelMask mask = 0;
  int count = 0;
  do {
    mask = 0;
    count = 0;
    for (int c = 0; c < kNumClasses; ++c) {
      const double p = kMarginalScale * static_cast<double>(kHpaTrainCounts[c]) / kHpaTrainImages;
      if (rng.bernoulli(p)) {
        mask |= 1u << c;
        ++count;
      }
    }
  } while (count < 1 || count > kMaxLabels);
  for (const Coupling& k : kCouplings) {
    if (count >= kMaxLabels) break;
    if (((mask >> k.given) & 1u) && !((mask >> k.then) & 1u) && rng.bernoulli(k.probability)) {
      mask |= 1u << k.then;
      ++count;
    }
  }
  return mask;
}

Image synth_image(LabelMask labels, int size, uint64_t seed, int64_t index) {
  if (size < 64 || size > 8192) throw data_error("synth: image size ", size, " outside 64..8192");
  const uint64_t sample_seed = mix_seed(seed, static_cast<uint64_t>(index));
  // One scene per thread, reused: its buffers stay allocated (and paged in) between samples.
  thread_local Scene s;
  s.size = size;
  s.scale = size / 512.0f;
  s.cells.clear();
  s.bridge_a = s.bridge_b = s.mitotic_cell = -1;
  for (auto& p : s.planes) p.assign(static_cast<size_t>(size) * size, 0.0f);
  Rng layout(sample_seed, kLayoutStream);
  layout_cells(s, labels, layout);
  compute_maps(s);
  Rng patterns(sample_seed, kPatternStream);
  draw_nuclei(s, patterns);
  draw_microtubules(s, patterns);
  draw_er(s, s.plane(Stain::yellow), 0.35f, std::max(6, size / 10), patterns);
  for (int c = 0; c < kNumClasses; ++c) {
    // Each label draws from its own stream, so adding a label never changes another's drawing.
    Rng label_rng(sample_seed, kPatternStream * 64 + static_cast<uint64_t>(c));
    if ((labels >> c) & 1u) draw_green(s, c, label_rng);
  }
  Image out(kNumChannels, size, size);
  Rng noise(sample_seed, kNoiseStream);
  finish(s, out, noise);
  return out;
}

SynthReport write_synth_dataset(const std::string& dir, const SynthOptions& options) {
  namespace fs = std::filesystem;
  if (options.count <= 0) throw data_error("synth: --count must be positive (got ", options.count, ")");
  if (options.size < 64 || options.size > 8192)
    throw data_error("synth: --size ", options.size, " outside 64..8192");
  const fs::path image_dir = fs::path(dir) / "train";
  std::error_code ec;
  fs::create_directories(image_dir, ec);
  if (ec) throw data_error(image_dir.string(), ": cannot create directory: ", ec.message());

  std::vector<Sample> samples(static_cast<size_t>(options.count));
  for (int64_t i = 0; i < options.count; ++i)
    samples[static_cast<size_t>(i)] = Sample{synth_id(options.seed, i), synth_labels(options.seed, i)};
  {
    std::vector<std::string> ids;
    for (const Sample& sm : samples) ids.push_back(sm.id);
    std::sort(ids.begin(), ids.end());
    if (std::adjacent_find(ids.begin(), ids.end()) != ids.end())
      throw data_error("synth: two samples got the same id (seed ", options.seed, "); choose another seed");
  }

  const auto start = std::chrono::steady_clock::now();
  const int threads = std::max(
      1, options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex mutex;
  auto last_report = start;
  auto worker = [&] {
    try {
      for (int64_t i = next++; i < options.count && !failed; i = next++) {
        const Sample& sample = samples[static_cast<size_t>(i)];
        const Image image = synth_image(sample.labels, options.size, options.seed, i);
        for (Stain stain : kStains) {
          const std::string path =
              (image_dir / (sample.id + "_" + std::string(stain_name(stain)) + ".png")).string();
          write_png_gray(path, image.channel(static_cast<int>(stain)), image.height, image.width,
                         options.png_level);
        }
        const int64_t finished = ++done;
        if (options.progress_seconds > 0) {
          std::lock_guard<std::mutex> lock(mutex);
          const auto now = std::chrono::steady_clock::now();
          if (std::chrono::duration<double>(now - last_report).count() >= options.progress_seconds) {
            last_report = now;
            const double elapsed = std::chrono::duration<double>(now - start).count();
            std::fprintf(stderr, "synth: %lld/%lld samples (%.0f%%), %.1f samples/s\n",
                         static_cast<long long>(finished), static_cast<long long>(options.count),
                         100.0 * finished / options.count, finished / elapsed);
          }
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!first_error) first_error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);

  write_train_csv((fs::path(dir) / "train.csv").string(), samples);
  SynthReport report;
  report.samples = options.count;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace hpa::data
