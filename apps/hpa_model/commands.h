// hpa_model's subcommands. Each takes the arguments after its name and returns the process
// exit code; main.cpp dispatches and catches errors at the top.
#pragma once

namespace hpa::cli {

int summary(int argc, char** argv);  // hpa_model summary --model M --input CxHxW --classes K --head gap|acp
int check(int argc,
          char** argv);  // hpa_model check --model M --weights W --input X.npy --target Y.npy --out O

}  // namespace hpa::cli
