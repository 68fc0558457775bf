// hpa_data pack: flags -> data/pack.h (the dataset at one size in one memory-mappable file).
#include "data/pack.h"

#include <chrono>
#include <cstdio>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"
#include "data/csv.h"

namespace hpa::cli {

int pack(int argc, char** argv) {
  Args args(argc, argv, {"skip-bad", "quiet", "verify", "transposed-copy"});
  if (args.help()) {
    std::printf(
        "usage: hpa_data pack --data DIR --size S --out FILE [--csv train.csv] [--images train]\n"
        "                     [--threads N] [--skip-bad] [--transposed-copy] [--verify] [--quiet]\n"
        "  Decodes every sample of DIR/<csv>, resizes it to S x S (area averaging when shrinking)\n"
        "  and writes one memory-mappable file: a header, uint8 4 x S x S per sample (R, G, B, Y),\n"
        "  labels, ids and XXH64 checksums (layout in data/pack.h). Written to a temporary file and\n"
        "  renamed, so FILE is complete or absent. --verify reopens it and checks every checksum.\n"
        "  --transposed-copy also stores each sample's planes transposed: the file (and the page\n"
        "  cache it takes) doubles, and in exchange the loader copies every random dihedral element\n"
        "  as whole rows, reading one of the two copies (the transposing elements otherwise run\n"
        "  at 0.7-0.9 of a row copy). Measured on 2 cores: batches 1.03-1.22x as fast as from a\n"
        "  plain pack, at memory-copy speed with one or two loader threads (docs/PERFORMANCE.md).\n"
        "  Batches are bit-identical to those of a plain pack.\n");
    return 0;
  }
  const std::string dir = args.required("data");
  const std::string out = args.required("out");
  data::PackDatasetOptions options;
  options.size = static_cast<int>(args.integer("size", 512));
  options.threads = static_cast<int>(args.integer("threads", 2));
  options.skip_bad = args.flag("skip-bad");
  options.transposed_copy = args.flag("transposed-copy");
  const std::string csv = args.str("csv", "train.csv");
  const std::string images = args.str("images", "train");
  const bool quiet = args.flag("quiet");
  const bool verify = args.flag("verify");
  args.finish();
  if (options.size < 1 || options.size > 65535) throw UsageError("--size must be in 1..65535");
  if (options.threads < 1) throw UsageError("--threads must be >= 1");

  const data::DatasetIndex index = data::DatasetIndex::open(dir, csv, images);
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  if (!quiet)
    options.progress = [&](int64_t done, int64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report < std::chrono::seconds(2) && done != total) return;
      last_report = now;
      const double seconds = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "pack: %lld / %lld samples (%.0f samples/s)\n", static_cast<long long>(done),
                   static_cast<long long>(total), seconds > 0 ? static_cast<double>(done) / seconds : 0.0);
    };
  const int64_t written = data::pack_dataset(index, out, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (written < static_cast<int64_t>(index.size()))
    std::fprintf(stderr, "pack: skipped %lld bad sample%s\n", static_cast<long long>(index.size()) - written,
                 index.size() - static_cast<size_t>(written) == 1 ? "" : "s");
  const double planes = options.transposed_copy ? 8.0 : 4.0;
  const double gib =
      static_cast<double>(written) * planes * options.size * options.size / (1024.0 * 1024 * 1024);
  std::printf("pack: %lld samples at %dx%d%s (%.2f GiB) in %.1f s -> %s\n", static_cast<long long>(written),
              options.size, options.size, options.transposed_copy ? " with the transposed copy" : "", gib,
              seconds, out.c_str());
  if (verify) {
    const auto check_start = std::chrono::steady_clock::now();
    const data::PackReader reader = data::PackReader::open(out, /*verify_checksum=*/true);
    for (int64_t i = 0; i < reader.count(); ++i) reader.verify_sample(i);
    std::printf("pack: verified %lld samples and the payload checksum in %.1f s\n",
                static_cast<long long>(reader.count()),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - check_start).count());
  }
  return 0;
}

}  // namespace hpa::cli
