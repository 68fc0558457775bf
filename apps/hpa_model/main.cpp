// hpa_model: inspect and verify the models of models/ (the registry's names). main() only
// dispatches to the subcommands (commands.h) and turns errors into one clear line and a
// non-zero exit: 2 for a usage error (bad flag, unknown model or head), 1 for anything
// else (an hpa::Error naming the file, key or op).
#include "apps/common/subcommands.h"
#include "apps/hpa_model/commands.h"

namespace {

constexpr hpa::cli::Subcommand kCommands[] = {
    {"summary", hpa::cli::summary, "layer table, parameter count, forward FLOPs and activation memory"},
    {"check", hpa::cli::check, "one forward/backward on given weights and data, results to a .safetensors"},
};

}  // namespace

int main(int argc, char** argv) { return hpa::cli::run_subcommands("hpa_model", kCommands, argc, argv); }
