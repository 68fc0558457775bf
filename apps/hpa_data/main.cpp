// hpa_data: dataset tools. main() only dispatches to the subcommands (commands.h) and turns
// errors into one clear line and a non-zero exit: 2 for a usage error, 1 for anything else
// (a DataError names the file or the row).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"synth", hpa::cli::synth, "write a synthetic HPA-like dataset (train.csv + 4 PNGs per sample)"},
    {"stats", hpa::cli::stats, "per-channel mean and std of a dataset, as JSON"},
    {"split", hpa::cli::split, "multi-label stratified k-fold split"},
    {"dedupe", hpa::cli::dedupe, "group near-duplicate images by perceptual hash"},
    {"pack", hpa::cli::pack, "pack a dataset into one memory-mappable file"},
};

void print_usage(std::FILE* out) {
  std::fprintf(
      out, "usage: hpa_data <command> [flags]   (hpa_data <command> --help for its flags)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const hpa::cli::UsageError& e) {
      std::fprintf(stderr, "hpa_data %s: %s (see hpa_data %s --help)\n", c.name, e.what(), c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpa_data %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "hpa_data: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
