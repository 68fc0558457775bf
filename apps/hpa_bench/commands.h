// hpa_bench's subcommands. Each takes the arguments after its name and returns the process
// exit code; main.cpp dispatches and catches errors at the top.
#pragma once

namespace hpa::cli {

int step(int argc, char** argv);  // hpa_bench step --model M --batch B --size S --device cpu|cuda

}  // namespace hpa::cli
