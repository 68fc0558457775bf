// hpa_data: dataset tools. main() only dispatches to the subcommands (commands.h) and turns
// errors into one clear line and a non-zero exit: 2 for a usage error, 1 for anything else
// (a DataError names the file or the row).
#include "apps/common/subcommands.h"
#include "apps/hpa_data/commands.h"

namespace {

constexpr hpa::cli::Subcommand kCommands[] = {
    {"synth", hpa::cli::synth, "write a synthetic HPA-like dataset (train.csv + 4 PNGs per sample)"},
    {"stats", hpa::cli::stats, "per-channel mean and std of a dataset, as JSON"},
    {"split", hpa::cli::split, "multi-label stratified k-fold split"},
    {"dedupe", hpa::cli::dedupe, "group near-duplicate images by perceptual hash"},
    {"pack", hpa::cli::pack, "pack a dataset into one memory-mappable file"},
};

}  // namespace

int main(int argc, char** argv) { return hpa::cli::run_subcommands("hpa_data", kCommands, argc, argv); }
