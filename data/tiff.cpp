// TIFF decoding through libtiff, from memory (so the fuzzers and the file path share one
// reader). Supported: 8- or 16-bit unsigned samples, 1-4 samples per pixel, min-is-black,
// min-is-white (inverted on read) or RGB (YCbCr JPEG converted to RGB by libtiff), strips or
// tiles, contiguous or separate planes, any compression this libtiff was built with. The
// first directory (page) is read. libtiff's error text goes into the DataError, its
// warnings (unknown tags and the like) are dropped.
//
// Hostile headers: nothing is allocated for the pixels until the file is shown able to hold
// them. The compression must be one this libtiff decodes, and the image's bytes must fit in
// the strip/tile bytes the file declares (clamped to the file's size) times the codec's
// largest possible expansion: 1 uncompressed, 64 PackBits, kMaxExpansion for the others
// (above Deflate's 1032 and LZW's ~2730; a ZSTD/LZMA image that packs better than that
// is all but constant and is refused). So a 150-byte file cannot ask for 400 MB.
#include <tiffio.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

#include "data/error.h"
#include "data/image.h"
#include "data/image_limits.h"

namespace hpa::data {
namespace {

struct MemoryFile {
  const uint8_t* bytes;
  toff_t size;
  toff_t offset;
};

tmsize_t memory_read(thandle_t handle, void* out, tmsize_t length) {
  auto* f = static_cast<MemoryFile*>(handle);
  if (length < 0 || f->offset >= f->size) return 0;
  const toff_t n = std::min<toff_t>(static_cast<toff_t>(length), f->size - f->offset);
  std::memcpy(out, f->bytes + f->offset, n);
  f->offset += n;
  return static_cast<tmsize_t>(n);
}
tmsize_t memory_write(thandle_t, void*, tmsize_t) { return -1; }
toff_t memory_seek(thandle_t handle, toff_t offset, int whence) {
  auto* f = static_cast<MemoryFile*>(handle);
  toff_t base = 0;
  if (whence == SEEK_CUR) base = f->offset;
  if (whence == SEEK_END) base = f->size;
  f->offset = base + offset;  // past the end is allowed; reads there return 0 bytes
  return f->offset;
}
int memory_close(thandle_t) { return 0; }
toff_t memory_size(thandle_t handle) { return static_cast<MemoryFile*>(handle)->size; }
int memory_map(thandle_t handle, void** base, toff_t* size) {
  auto* f = static_cast<MemoryFile*>(handle);
  *base = const_cast<uint8_t*>(f->bytes);  // read-only: the file is opened with mode "r"
  *size = f->size;
  return 1;
}
void memory_unmap(thandle_t, void*, toff_t) {}

int collect_error(TIFF*, void* user_data, const char* module, const char* format, va_list args) {
  auto* text = static_cast<std::string*>(user_data);
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, format, args);
  if (!text->empty()) *text += "; ";
  if (module) *text += std::string(module) + ": ";
  *text += buffer;
  return 1;  // handled: libtiff must not also print it
}
int ignore_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

constexpr uint64_t kMaxExpansion = 4096;

// The most decoded bytes that the file's pixel data can hold (see the header comment).
uint64_t decodable_bytes(TIFF* tif, uint16_t compression, uint64_t file_size) {
  const uint32_t chunks = TIFFIsTiled(tif) ? TIFFNumberOfTiles(tif) : TIFFNumberOfStrips(tif);
  uint64_t stored = 0;
  for (uint32_t i = 0; i < chunks && stored < file_size; ++i)
    stored += std::min<uint64_t>(TIFFGetStrileByteCount(tif, i), file_size);  // no wrap-around
  stored = std::min(stored, file_size);
  const uint64_t expansion = compression == COMPRESSION_NONE       ? 1
                             : compression == COMPRESSION_PACKBITS ? 64
                                                                   : kMaxExpansion;
  return stored * expansion;
}

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};
struct OptionsFree {
  void operator()(TIFFOpenOptions* o) const { TIFFOpenOptionsFree(o); }
};

}  // namespace

DecodedImage decode_tiff_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  std::string error;
  std::unique_ptr<TIFFOpenOptions, OptionsFree> options(TIFFOpenOptionsAlloc());
  TIFFOpenOptionsSetErrorHandlerExtR(options.get(), collect_error, &error);
  TIFFOpenOptionsSetWarningHandlerExtR(options.get(), ignore_warning, nullptr);
  TIFFOpenOptionsSetMaxSingleMemAlloc(options.get(), static_cast<tmsize_t>(kMaxImageBytes));
  MemoryFile file{bytes, static_cast<toff_t>(size), 0};
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFClientOpenExt(name.c_str(), "r", &file, memory_read, memory_write,
                                                          memory_seek, memory_close, memory_size, memory_map,
                                                          memory_unmap, options.get()));
  auto fail = [&](const std::string& what) {
    return data_error(name, ": ", what, error.empty() ? "" : " (libtiff: " + error + ")");
  };
  if (!tif) throw fail("not a readable TIFF");

  uint32_t width = 0, height = 0;
  uint16_t bits = 0, samples_per_pixel = 1, sample_format = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG;
  uint16_t photometric = PHOTOMETRIC_MINISBLACK, compression = COMPRESSION_NONE;
  if (!TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &width) ||
      !TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &height))
    throw fail("TIFF without image size");
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &samples_per_pixel);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &sample_format);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_COMPRESSION, &compression);
  if (!TIFFGetField(tif.get(), TIFFTAG_PHOTOMETRIC, &photometric)) photometric = PHOTOMETRIC_MINISBLACK;

  if (bits != 8 && bits != 16)
    throw fail("unsupported TIFF bit depth " + std::to_string(bits) + " (8 or 16)");
  if (sample_format != SAMPLEFORMAT_UINT)
    throw fail("unsupported TIFF sample format " + std::to_string(sample_format) +
               " (unsigned integers only)");
  if (samples_per_pixel < 1 || samples_per_pixel > 4)
    throw fail("unsupported TIFF samples per pixel " + std::to_string(samples_per_pixel) + " (1 to 4)");
  if (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG) {
    TIFFSetField(tif.get(), TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    photometric = PHOTOMETRIC_RGB;
  }
  if (photometric != PHOTOMETRIC_MINISBLACK && photometric != PHOTOMETRIC_MINISWHITE &&
      photometric != PHOTOMETRIC_RGB)
    throw fail("unsupported TIFF photometric interpretation " + std::to_string(photometric));
  const int bytes_per_sample = bits / 8;
  check_image_dimensions(width, height, samples_per_pixel, bytes_per_sample, name);
  if (!TIFFIsCODECConfigured(compression))
    throw fail("unsupported TIFF compression " + std::to_string(compression));
  const uint64_t image_bytes = uint64_t{width} * height * samples_per_pixel * bytes_per_sample;
  const uint64_t decodable = decodable_bytes(tif.get(), compression, size);
  if (image_bytes > decodable)
    throw fail("TIFF pixel data too short: " + std::to_string(width) + "x" + std::to_string(height) + "x" +
               std::to_string(samples_per_pixel) + " at " + std::to_string(bits) +
               " bits cannot come from the strip/tile bytes of a " + std::to_string(size) +
               "-byte file with compression " + std::to_string(compression));

  DecodedImage out;
  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  out.channels = samples_per_pixel;
  out.bit_depth = bits;
  const size_t total = static_cast<size_t>(width) * height * samples_per_pixel;
  uint8_t* base;
  if (bits == 16) {
    out.samples16.assign(total, 0);
    base = reinterpret_cast<uint8_t*>(out.samples16.data());
  } else {
    out.samples8.assign(total, 0);
    base = out.samples8.data();
  }
  const bool separate = planar == PLANARCONFIG_SEPARATE && samples_per_pixel > 1;
  const int planes = separate ? samples_per_pixel : 1;
  const size_t pixel_bytes = static_cast<size_t>(samples_per_pixel) * bytes_per_sample;  // in `out`
  const size_t chunk_pixel_bytes = separate ? bytes_per_sample : pixel_bytes;            // in a strip/tile

  // Copies `rows` x `cols` pixels of one plane from a decoded strip or tile into `out`.
  auto place = [&](const uint8_t* src, size_t src_stride, uint32_t y0, uint32_t x0, uint32_t rows,
                   uint32_t cols, int plane) {
    for (uint32_t r = 0; r < rows; ++r) {
      const uint8_t* s = src + r * src_stride;
      uint8_t* d = base + ((static_cast<size_t>(y0) + r) * width + x0) * pixel_bytes;
      if (!separate) {
        std::memcpy(d, s, cols * pixel_bytes);
      } else {
        d += static_cast<size_t>(plane) * bytes_per_sample;
        for (uint32_t c = 0; c < cols; ++c)
          std::memcpy(d + c * pixel_bytes, s + c * bytes_per_sample, bytes_per_sample);
      }
    }
  };

  if (TIFFIsTiled(tif.get())) {
    uint32_t tile_width = 0, tile_height = 0;
    TIFFGetField(tif.get(), TIFFTAG_TILEWIDTH, &tile_width);
    TIFFGetField(tif.get(), TIFFTAG_TILELENGTH, &tile_height);
    const tmsize_t tile_bytes = TIFFTileSize(tif.get());
    if (tile_width == 0 || tile_height == 0 || tile_bytes <= 0 ||
        static_cast<uint64_t>(tile_width) * tile_height * chunk_pixel_bytes !=
            static_cast<uint64_t>(tile_bytes))
      throw fail("corrupt TIFF tile layout");
    // Tile sizes come from the header independently of the image size: bound them before
    // allocating, so a hostile header cannot ask for gigabytes.
    if (tile_width > static_cast<uint32_t>(kMaxImageSide) ||
        tile_height > static_cast<uint32_t>(kMaxImageSide) ||
        static_cast<int64_t>(tile_bytes) > kMaxImageBytes || static_cast<uint64_t>(tile_bytes) > decodable)
      throw fail("TIFF tile too large (" + std::to_string(tile_width) + "x" + std::to_string(tile_height) +
                 ")");
    std::vector<uint8_t> tile(static_cast<size_t>(tile_bytes));
    for (int plane = 0; plane < planes; ++plane)
      for (uint32_t y = 0; y < height; y += tile_height)
        for (uint32_t x = 0; x < width; x += tile_width) {
          const uint32_t index = TIFFComputeTile(tif.get(), x, y, 0, static_cast<uint16_t>(plane));
          if (TIFFReadEncodedTile(tif.get(), index, tile.data(), tile_bytes) != tile_bytes)
            throw fail("corrupt or truncated TIFF tile " + std::to_string(index));
          place(tile.data(), tile_width * chunk_pixel_bytes, y, x, std::min(tile_height, height - y),
                std::min(tile_width, width - x), plane);
        }
  } else {
    uint32_t rows_per_strip = height;
    TIFFGetFieldDefaulted(tif.get(), TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
    if (rows_per_strip == 0 || rows_per_strip > height) rows_per_strip = height;
    const size_t row_bytes = static_cast<size_t>(width) * chunk_pixel_bytes;
    const tmsize_t strip_bytes = TIFFStripSize(tif.get());
    if (strip_bytes <= 0 || static_cast<uint64_t>(strip_bytes) < row_bytes * rows_per_strip)
      throw fail("corrupt TIFF strip layout");
    // Interleaved strips are whole rows of `out`: decoded in place. Separate planes go
    // through one strip buffer.
    std::vector<uint8_t> strip(separate ? static_cast<size_t>(strip_bytes) : 0);
    for (int plane = 0; plane < planes; ++plane)
      for (uint32_t y = 0; y < height; y += rows_per_strip) {
        const uint32_t rows = std::min(rows_per_strip, height - y);
        const uint32_t index = TIFFComputeStrip(tif.get(), y, static_cast<uint16_t>(plane));
        const tmsize_t wanted = static_cast<tmsize_t>(rows * row_bytes);
        uint8_t* into = separate ? strip.data() : base + static_cast<size_t>(y) * row_bytes;
        if (TIFFReadEncodedStrip(tif.get(), index, into, wanted) != wanted)
          throw fail("corrupt or truncated TIFF strip " + std::to_string(index));
        if (separate) place(strip.data(), row_bytes, y, 0, rows, width, plane);
      }
  }
  if (!error.empty()) throw fail("TIFF decoding error");

  if (photometric == PHOTOMETRIC_MINISWHITE) {
    if (bits == 16) {
      for (uint16_t& v : out.samples16) v = static_cast<uint16_t>(65535 - v);
    } else {
      for (uint8_t& v : out.samples8) v = static_cast<uint8_t>(255 - v);
    }
  }
  return out;
}

}  // namespace hpa::data
