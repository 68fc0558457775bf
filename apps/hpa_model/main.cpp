// hpa_model: inspect and verify the models of models/ (the registry's names). main() only
// dispatches to the subcommands (commands.h) and turns errors into one clear line and a
// non-zero exit: 2 for a usage error (bad flag, unknown model or head), 1 for anything
// else (an hpa::Error naming the file, key or op).
#include <cstdio>
#include <exception>
#include <string_view>

#include "apps/common/args.h"
#include "apps/hpa_model/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"summary", hpa::cli::summary, "layer table, parameter count, forward FLOPs and activation memory"},
    {"check", hpa::cli::check, "one forward/backward on given weights and data, results to a .safetensors"},
};

void print_usage(std::FILE* out) {
  std::fprintf(
      out, "usage: hpa_model <command> [flags]   (hpa_model <command> --help for its flags)\n\ncommands:\n");
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
      std::fprintf(stderr, "hpa_model %s: %s (see hpa_model %s --help)\n", c.name, e.what(), c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpa_model %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "hpa_model: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
