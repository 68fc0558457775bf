// hpa_bench: end-to-end timings of the engine (one whole training step of a model), the
// counterpart of tools/torch_step_bench.py. main() only dispatches to the subcommands
// (commands.h) and turns errors into one clear line and a non-zero exit: 2 for a usage
// error, 1 for anything else.
#include <cstdio>
#include <exception>
#include <string_view>

#include "apps/hpa_bench/commands.h"
#include "apps/common/args.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"step", hpa::cli::step, "time training steps (forward, BCE, backward, SGD) of a model on one batch"},
};

void print_usage(std::FILE* out) {
  std::fprintf(
      out, "usage: hpa_bench <command> [flags]   (hpa_bench <command> --help for its flags)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-6s %s\n", c.name, c.summary);
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
      std::fprintf(stderr, "hpa_bench %s: %s (see hpa_bench %s --help)\n", c.name, e.what(), c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpa_bench %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "hpa_bench: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
