// hpa_data synth: flags -> data/synth.h.
#include "data/synth.h"

#include <cstdio>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"

namespace hpa::cli {

int synth(int argc, char** argv) {
  Args args(argc, argv, {"quiet"});
  if (args.help()) {
    std::printf(
        "usage: hpa_data synth --out DIR --count N [--size S] [--seed K] [--threads T] [--png-level L] "
        "[--quiet]\n"
        "  Writes DIR/train.csv and DIR/train/{Id}_{red,green,blue,yellow}.png (8-bit gray, S x S,\n"
        "  default 512). The same seed gives byte-identical files. --threads 0 (default) uses every\n"
        "  core; --png-level is libdeflate's level 0..12 (default 1).\n");
    return 0;
  }
  data::SynthOptions options;
  const std::string out = args.required("out");
  options.count = args.integer("count", 0);
  options.size = static_cast<int>(args.integer("size", 512));
  options.seed = args.unsigned_integer("seed", 0);
  options.threads = static_cast<int>(args.integer("threads", 0));
  options.png_level = static_cast<int>(args.integer("png-level", 1));
  options.progress_seconds = args.flag("quiet") ? 0 : 2;
  args.finish();
  if (options.count <= 0) throw UsageError("--count must be a positive number of samples");
  if (options.png_level < 0 || options.png_level > 12) throw UsageError("--png-level must be in 0..12");
  const data::SynthReport report = data::write_synth_dataset(out, options);
  std::printf("synth: wrote %lld samples of %dx%d to %s in %.1f s (%.0f samples/min)\n",
              static_cast<long long>(report.samples), options.size, options.size, out.c_str(), report.seconds,
              60.0 * report.samples / report.seconds);
  return 0;
}

}  // namespace hpa::cli
