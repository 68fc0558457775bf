// hpa_data stats: flags -> data/stats.h.
#include "data/stats.h"

#include <cstdio>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"
#include "data/bad_samples.h"
#include "data/csv.h"

namespace hpa::cli {

int stats(int argc, char** argv) {
  Args args(argc, argv, {"skip-bad", "quiet"});
  if (args.help()) {
    std::printf(
        "usage: hpa_data stats --data DIR --out stats.json [--csv train.csv] [--images train] [--size S]\n"
        "                      [--threads T] [--skip-bad] [--quiet]\n"
        "  Per-channel mean and std on the [0, 1] scale over every pixel of every sample listed in\n"
        "  DIR/<csv>, written as {\"mean\":[r,g,b,y],\"std\":[r,g,b,y]}. --size S requires S x S images.\n"
        "  --skip-bad skips unreadable samples with one warning each instead of failing.\n");
    return 0;
  }
  const std::string dir = args.required("data");
  const std::string out = args.required("out");
  const std::string csv = args.str("csv", "train.csv");
  const std::string images = args.str("images", "train");
  data::StatsOptions options;
  options.expected_size = static_cast<int>(args.integer("size", 0));
  options.threads = static_cast<int>(args.integer("threads", 0));
  const bool skip_bad = args.flag("skip-bad");
  options.progress_seconds = args.flag("quiet") ? 0 : 5;
  args.finish();

  const data::DatasetIndex index = data::DatasetIndex::open(dir, csv, images);
  data::BadSamples bad(skip_bad);
  const data::StatsResult result = data::compute_channel_stats(index, bad, options);
  data::write_stats_json(out, result.stats);
  bad.print_summary("stats");
  const auto& m = result.stats.mean;
  const auto& s = result.stats.std;
  std::printf("stats: %lld samples -> %s\n  mean %.4f %.4f %.4f %.4f\n  std  %.4f %.4f %.4f %.4f\n",
              static_cast<long long>(result.samples_used), out.c_str(), m[0], m[1], m[2], m[3], s[0], s[1],
              s[2], s[3]);
  return 0;
}

}  // namespace hpa::cli
