// Optimizer steps on CUDA: one fused kernel per optimizer applies the rule of ../optim.h (the
// CPU's, statement for statement) to every element of a parameter and its state. The parameters
// of one device and dtype are packed into tables passed by value as kernel arguments (PyTorch's
// multi_tensor_apply): up to kTensors parameters and kBlocks chunks of kChunk elements per
// launch, so a model's hundreds of small parameters cost a few launches, not hundreds.
#include "../optim.h"
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTensors = 32;
constexpr int kBlocks = 256;
constexpr std::int64_t kChunk = 16 * 1024;  // elements per block: 64 per thread

// One launch's parameters. ptr[d][t] is operand d (value, gradient, then state in the rule's
// order; null when the rule does without it) of parameter t; block b updates chunk chunk_of[b]
// of parameter tensor_of[b]. At most ~3.4 KB: under the 4 KB every CUDA version accepts.
template <class T, int Depth>
struct Table {
  T* ptr[Depth][kTensors];
  std::int64_t numel[kTensors];
  T scalar[2][kTensors];  // per-parameter numbers of the rule (Adam's step size, SGD's first step)
  std::uint8_t tensor_of[kBlocks];
  std::int32_t chunk_of[kBlocks];
};
static_assert(sizeof(Table<double, 5>) < 3600);

// A parameter's entry before packing.
template <class T, int Depth>
struct Entry {
  T* ptr[Depth];
  std::int64_t numel;
  T scalar[2];
};

// Each block loads its parameter's pointers once, then walks its chunk; `apply` gets operand
// pointers already offset to element i (null stays null).
template <class T, int Depth, class Apply>
__global__ void step_kernel(Table<T, Depth> table, Apply apply) {
  const int t = table.tensor_of[blockIdx.x];
  T* p[Depth];
#pragma unroll
  for (int d = 0; d < Depth; ++d) p[d] = table.ptr[d][t];
  const T s0 = table.scalar[0][t], s1 = table.scalar[1][t];
  const std::int64_t begin = static_cast<std::int64_t>(table.chunk_of[blockIdx.x]) * kChunk;
  const std::int64_t end = begin + kChunk < table.numel[t] ? begin + kChunk : table.numel[t];
  for (std::int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    T* at[Depth];
#pragma unroll
    for (int d = 0; d < Depth; ++d) at[d] = p[d] ? p[d] + i : nullptr;
    apply(at, s0, s1);
  }
}

void check_launch(std::string_view op) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string(op) + ": CUDA kernel launch failed: " + cudaGetErrorString(status));
}

// Packs `entries` (one device, one dtype) into tables and launches step_kernel per table.
template <class T, int Depth, class Apply>
void launch(Device device, const std::vector<Entry<T, Depth>>& entries, const Apply& apply, std::string_view op) {
  const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device));
  Table<T, Depth> table{};
  int tensors = 0, blocks = 0;
  auto flush = [&] {
    if (blocks > 0) {
      step_kernel<<<blocks, kThreads, 0, stream>>>(table, apply);
      check_launch(op);
    }
    tensors = blocks = 0;
  };
  for (const Entry<T, Depth>& e : entries) {
    if (e.numel == 0) continue;
    if (tensors == kTensors) flush();
    int t = tensors++;
    auto place = [&](int slot) {
      for (int d = 0; d < Depth; ++d) table.ptr[d][slot] = e.ptr[d];
      table.numel[slot] = e.numel;
      table.scalar[0][slot] = e.scalar[0];
      table.scalar[1][slot] = e.scalar[1];
    };
    place(t);
    const std::int64_t chunks = (e.numel + kChunk - 1) / kChunk;
    for (std::int64_t c = 0; c < chunks; ++c) {
      if (blocks == kBlocks) {  // the table is full: launch it, this parameter continues in slot 0
        flush();
        t = tensors++;
        place(t);
      }
      table.tensor_of[blocks] = static_cast<std::uint8_t>(t);
      table.chunk_of[blocks] = static_cast<std::int32_t>(c);
      ++blocks;
    }
  }
  flush();
}

// Calls body(device, T{}, group) for each (device, dtype) group of slots, in first-seen order.
template <class Slot, class Body>
void for_groups(std::span<const Slot> slots, Body&& body) {
  std::vector<bool> done(slots.size(), false);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (done[i]) continue;
    const Device device = slots[i].value.device();
    const DType dtype = slots[i].value.dtype();
    std::vector<const Slot*> group;
    for (std::size_t j = i; j < slots.size(); ++j) {
      if (!done[j] && slots[j].value.device() == device && slots[j].value.dtype() == dtype) {
        group.push_back(&slots[j]);
        done[j] = true;
      }
    }
    dispatch_floating(dtype, [&](auto zero) { body(device, zero, group); });
  }
}

template <class T>
T* ptr(const Tensor& t, bool used) {
  return used ? t.device_data<T>() : nullptr;
}

// The rules of ../optim.h on the operand pointers of step_kernel.
template <class T>
struct SgdApply {
  rule::Sgd<T> rule;
  __device__ void operator()(T* const* at, T first, T) const { rule(*at[0], *at[1], at[2], first != T(0)); }
};
template <class T>
struct AdamApply {
  rule::Adam<T> rule;
  __device__ void operator()(T* const* at, T neg_step, T bc2_sqrt) const {
    rule(*at[0], *at[1], *at[2], *at[3], at[4], neg_step, bc2_sqrt);
  }
};
template <class T>
struct RmspropApply {
  rule::Rmsprop<T> rule;
  __device__ void operator()(T* const* at, T, T) const { rule(*at[0], *at[1], *at[2], at[3], at[4]); }
};

}  // namespace

void sgd_step(std::span<const SgdSlot> slots, const SgdHyper& h) {
  const bool momentum = h.momentum != 0;
  for_groups(slots, [&](Device device, auto zero, const std::vector<const SgdSlot*>& group) {
    using T = decltype(zero);
    std::vector<Entry<T, 3>> entries;
    for (const SgdSlot* s : group) {
      entries.push_back({{s->value.device_data<T>(), s->grad.device_data<T>(), ptr<T>(s->momentum_buffer, momentum)},
                         s->value.numel(),
                         {s->first_step ? T(1) : T(0), T(0)}});
    }
    launch(device, entries, SgdApply<T>{rule::Sgd<T>::from(h)}, "SGD step");
  });
}

void adam_step(std::span<const AdamSlot> slots, const AdamHyper& h) {
  for_groups(slots, [&](Device device, auto zero, const std::vector<const AdamSlot*>& group) {
    using T = decltype(zero);
    std::vector<Entry<T, 5>> entries;
    for (const AdamSlot* s : group) {
      T neg_step, bc2_sqrt;
      rule::Adam<T>::scalars(h, s->step, neg_step, bc2_sqrt);
      entries.push_back({{s->value.device_data<T>(), s->grad.device_data<T>(), s->exp_avg.device_data<T>(),
                          s->exp_avg_sq.device_data<T>(), ptr<T>(s->max_exp_avg_sq, h.amsgrad)},
                         s->value.numel(),
                         {neg_step, bc2_sqrt}});
    }
    launch(device, entries, AdamApply<T>{rule::Adam<T>::from(h)}, h.decoupled_weight_decay ? "AdamW step" : "Adam step");
  });
}

void rmsprop_step(std::span<const RmspropSlot> slots, const RmspropHyper& h) {
  const bool momentum = h.momentum > 0;
  for_groups(slots, [&](Device device, auto zero, const std::vector<const RmspropSlot*>& group) {
    using T = decltype(zero);
    std::vector<Entry<T, 5>> entries;
    for (const RmspropSlot* s : group) {
      entries.push_back({{s->value.device_data<T>(), s->grad.device_data<T>(), s->square_avg.device_data<T>(),
                          ptr<T>(s->grad_avg, h.centered), ptr<T>(s->momentum_buffer, momentum)},
                         s->value.numel(),
                         {T(0), T(0)}});
    }
    launch(device, entries, RmspropApply<T>{rule::Rmsprop<T>::from(h)}, "RMSprop step");
  });
}

}  // namespace zkynet::kernels::cuda
