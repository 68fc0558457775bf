// hpa_bench: end-to-end timings of the engine (one whole training step of a model), the
// counterpart of tools/torch_step_bench.py. main() only dispatches to the subcommands
// (commands.h) and turns errors into one clear line and a non-zero exit: 2 for a usage
// error, 1 for anything else.
#include "apps/common/subcommands.h"
#include "apps/hpa_bench/commands.h"

namespace {

constexpr hpa::cli::Subcommand kCommands[] = {
    {"step", hpa::cli::step, "time training steps (forward, BCE, backward, SGD) of a model on one batch"},
};

}  // namespace

int main(int argc, char** argv) { return hpa::cli::run_subcommands("hpa_bench", kCommands, argc, argv); }
