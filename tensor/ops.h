// Umbrella header for the functional API: every op checks its arguments (errors name the
// op and the shapes), allocates its output on the input's device, dispatches to the
// kernel of that device, and records a backward node when a gradient is needed.
#pragma once

#include "tensor/autograd.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/linear.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/pool.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape_ops.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
