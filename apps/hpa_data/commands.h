// hpa_data's subcommands. Each takes the arguments after its name and returns the process
// exit code; main.cpp dispatches and catches errors at the top.
#pragma once

namespace hpa::cli {

int synth(int argc, char** argv);    // hpa_data synth --out DIR --count N --size S --seed K
int stats(int argc, char** argv);    // hpa_data stats --data DIR --out stats.json
int split(int argc, char** argv);    // hpa_data split --data DIR --folds K --seed S --out folds.csv
int dedupe(int argc, char** argv);   // hpa_data dedupe --data DIR --out groups.csv
int pack(int argc, char** argv);     // hpa_data pack --data DIR --size S --out FILE

}  // namespace hpa::cli
