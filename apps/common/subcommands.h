// The `<program> <command> [flags]` front end shared by the apps: prints the command list
// for --help, dispatches to the command, and turns errors into one line and an exit code:
// 2 for a usage error (UsageError: bad flag, unknown name), 1 for anything else (an
// hpa::Error or DataError naming the file, row, key or op).
#pragma once

#include <cstdio>
#include <exception>
#include <string_view>

#include "apps/common/args.h"

namespace hpa::cli {

struct Subcommand {
  const char* name;
  int (*run)(int, char**);  // gets the arguments from the command's name on; returns the exit code
  const char* summary;
};

template <size_t N>
int run_subcommands(const char* program, const Subcommand (&commands)[N], int argc, char** argv) {
  auto usage = [&](std::FILE* out) {
    std::fprintf(out, "usage: %s <command> [flags]   (%s <command> --help for its flags)\n\ncommands:\n", program,
                 program);
    for (const Subcommand& c : commands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  };
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(stdout);
    return 0;
  }
  for (const Subcommand& c : commands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const UsageError& e) {
      std::fprintf(stderr, "%s %s: %s (see %s %s --help)\n", program, c.name, e.what(), program, c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s %s: error: %s\n", program, c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "%s: unknown command '%s'\n", program, argv[1]);
  usage(stderr);
  return 2;
}

}  // namespace hpa::cli
