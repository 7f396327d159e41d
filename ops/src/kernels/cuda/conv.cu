// conv2d on CUDA through cuDNN's legacy convolution API, which takes float64 as well as float32
// (the graph API has no float64). One cuDNN handle per device, bound to zkynet's stream for it.
// Each (device, dtype, TF32 mode, shapes, options) has its algorithms benchmarked once per
// direction with cudnnFind*AlgorithmEx (PyTorch's cudnn.benchmark) and the winner cached; the
// workspaces come from zkynet's caching allocator. float32 runs without TF32 (CUDNN_FMA_MATH,
// no tensor-op algorithm accepted) unless zkynet::cuda::allow_tf32(), as cuBLAS does in linalg.cu;
// float64 runs in CUDNN_DEFAULT_MATH. The bias is added by a kernel of our own, and its gradient
// is cuda::sum over (N, H, W), summed in double as every zkynet reduction.
// A build whose toolkit has no cuDNN compiles the stubs at the end: conv2d on CUDA then throws
// DeviceError.
#include "api.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <string>

#if ZKYNET_HAVE_CUDNN
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <compare>
#include <map>
#include <mutex>
#include <type_traits>
#endif

namespace zkynet::kernels::cuda {

namespace {

// NOTE: messages are built by appending to a std::string: `"literal" + std::to_string(...)`
// trips GCC 12's -Wrestrict false positive under nvcc (the .cpp files silence it, .cu cannot).
std::string pair_str(const std::array<std::int64_t, 2>& p) {
  std::string s = "(";
  s += std::to_string(p[0]);
  s += ", ";
  s += std::to_string(p[1]);
  s += ")";
  return s;
}

// "conv2d: input (2, 3, 5, 5) float32, weight (4, 3, 3, 3), stride (1, 1), ...": the start of every
// message, so that an error on the GPU names the call that failed.
std::string context(const Tensor& input, const Tensor& weight, const op::Conv2dOptions& opt) {
  std::string s = "conv2d on ";
  s += input.device().str();
  s += ": input ";
  s += shape_str(input.shape());
  s += " ";
  s += dtype_name(input.dtype());
  s += ", weight ";
  s += shape_str(weight.shape());
  s += ", stride ";
  s += pair_str(opt.stride);
  s += ", padding ";
  s += pair_str(opt.padding);
  s += ", dilation ";
  s += pair_str(opt.dilation);
  s += ", groups ";
  s += std::to_string(opt.groups);
  return s;
}

}  // namespace

#if ZKYNET_HAVE_CUDNN

namespace {

constexpr int kMaxDevices = 16;
constexpr int kThreads = 256;
// The most workspace the benchmark offers the algorithms (those needing more are skipped).
constexpr std::size_t kMaxFindWorkspace = std::size_t{1} << 30;

std::string version_note() {
  std::string s = " (cuDNN runtime ";
  s += std::to_string(cudnnGetVersion());
  s += ", built against ";
  s += std::to_string(CUDNN_VERSION);
  s += ")";
  return s;
}

void check(cudnnStatus_t status, const char* call, const std::string& ctx) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));
  throw Error(ctx + ": " + call + " failed: " + cudnnGetErrorString(status) + (detail[0] ? std::string(": ") + detail : "") +
              version_note());
}

void check_launch(const char* what, const std::string& ctx) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(ctx + ": " + what + " kernel launch failed: " + cudaGetErrorString(status));
}

// The device's handle on zkynet's stream for it; the device made current.
cudnnHandle_t handle(Device device, const std::string& ctx) {
  struct Slot {
    std::once_flag once;
    cudnnHandle_t handle = nullptr;
  };
  static std::array<Slot, kMaxDevices> slots;
  if (device.index < 0 || device.index >= kMaxDevices) throw UsageError(ctx + ": no device " + device.str());
  Slot& slot = slots[static_cast<std::size_t>(device.index)];
  const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device));  // makes it current
  std::call_once(slot.once, [&] {
    check(cudnnCreate(&slot.handle), "cudnnCreate", ctx);
    check(cudnnSetStream(slot.handle, stream), "cudnnSetStream", ctx);
  });
  // NOTE: the handle is never destroyed: the CUDA runtime may be gone at static destruction.
  return slot.handle;
}

// ---- descriptors ---------------------------------------------------------------------------

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  explicit TensorDesc(const std::string& ctx) { check(cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor", ctx); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const std::string& ctx) { check(cudnnCreateFilterDescriptor(&d), "cudnnCreateFilterDescriptor", ctx); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  explicit ConvDesc(const std::string& ctx) {
    check(cudnnCreateConvolutionDescriptor(&d), "cudnnCreateConvolutionDescriptor", ctx);
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// A size as cuDNN's int, or a ShapeError naming it.
int as_int(std::int64_t v, const char* what, const std::string& ctx) {
  if (v < 0 || v > INT_MAX) throw ShapeError(ctx + ": " + what + " " + std::to_string(v) + " exceeds cuDNN's int range");
  return static_cast<int>(v);
}

// Everything one convolution call needs: the descriptors of x, w, y (NCHW, contiguous) and of
// the convolution, the data type, and the cache key.
struct Key {
  int device, dtype, tf32;
  std::array<int, 13> dims;  // n, c, h, w, o, kh, kw, then stride, padding and dilation (h, w)
  int groups;
  auto operator<=>(const Key&) const = default;
};

struct Setup {
  std::string ctx;
  cudnnDataType_t type;
  bool fma_only;  // float32 without TF32
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Key key;

  Setup(const Tensor& input, const Tensor& weight, const op::Conv2dOptions& opt, const Shape& out_shape)
      : ctx(context(input, weight, opt)),
        type(input.dtype() == DType::Float64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT),
        fma_only(input.dtype() == DType::Float32 && !zkynet::cuda::allow_tf32()),
        x(ctx), y(ctx), w(ctx), conv(ctx), key{} {
    for (const Shape* s : {&input.shape(), &weight.shape(), &out_shape}) {
      as_int(shape_numel(*s), "a tensor of this many elements", ctx);
    }
    const auto i = [&](std::int64_t v, const char* what) { return as_int(v, what, ctx); };
    check(cudnnSetTensor4dDescriptor(x.d, CUDNN_TENSOR_NCHW, type, i(input.size(0), "batch size"),
                                     i(input.size(1), "channels"), i(input.size(2), "height"), i(input.size(3), "width")),
          "cudnnSetTensor4dDescriptor (input)", ctx);
    check(cudnnSetTensor4dDescriptor(y.d, CUDNN_TENSOR_NCHW, type, i(out_shape[0], "batch size"),
                                     i(out_shape[1], "output channels"), i(out_shape[2], "output height"),
                                     i(out_shape[3], "output width")),
          "cudnnSetTensor4dDescriptor (output)", ctx);
    check(cudnnSetFilter4dDescriptor(w.d, type, CUDNN_TENSOR_NCHW, i(weight.size(0), "output channels"),
                                     i(weight.size(1), "channels per group"), i(weight.size(2), "kernel height"),
                                     i(weight.size(3), "kernel width")),
          "cudnnSetFilter4dDescriptor", ctx);
    check(cudnnSetConvolution2dDescriptor(conv.d, i(opt.padding[0], "padding"), i(opt.padding[1], "padding"),
                                          i(opt.stride[0], "stride"), i(opt.stride[1], "stride"),
                                          i(opt.dilation[0], "dilation"), i(opt.dilation[1], "dilation"),
                                          CUDNN_CROSS_CORRELATION, type),
          "cudnnSetConvolution2dDescriptor", ctx);
    check(cudnnSetConvolutionGroupCount(conv.d, i(opt.groups, "groups")), "cudnnSetConvolutionGroupCount", ctx);
    set_math(fma_only ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH);
    // cuDNN's output size must be ours (conv.cpp's, PyTorch's formula).
    int on = 0, oc = 0, oh = 0, ow = 0;
    check(cudnnGetConvolution2dForwardOutputDim(conv.d, x.d, w.d, &on, &oc, &oh, &ow),
          "cudnnGetConvolution2dForwardOutputDim", ctx);
    if (Shape{on, oc, oh, ow} != out_shape) {
      throw Error(ctx + ": cuDNN computes output " + shape_str(Shape{on, oc, oh, ow}) + ", zkynet " +
                  shape_str(out_shape));
    }
    key = Key{input.device().index,
              static_cast<int>(type),
              fma_only ? 0 : 1,
              {i(input.size(0), ""), i(input.size(1), ""), i(input.size(2), ""), i(input.size(3), ""),
               i(weight.size(0), ""), i(weight.size(2), ""), i(weight.size(3), ""), i(opt.stride[0], ""),
               i(opt.stride[1], ""), i(opt.padding[0], ""), i(opt.padding[1], ""), i(opt.dilation[0], ""),
               i(opt.dilation[1], "")},
              i(opt.groups, "")};
  }

  void set_math(cudnnMathType_t math) { check(cudnnSetConvolutionMathType(conv.d, math), "cudnnSetConvolutionMathType", ctx); }
};

// A device buffer of at least `bytes` from the caching allocator (empty for 0).
Tensor workspace(std::size_t bytes, Device device) {
  return Tensor::empty({static_cast<std::int64_t>((bytes + 7) / 8)}, DType::Int64, device);
}
void* pointer(const Tensor& ws) { return ws.numel() > 0 ? ws.device_raw_data() : nullptr; }

// One direction's chosen algorithm: its number, math type and workspace.
struct Choice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
};

// The fastest successful algorithm of a cudnnFind* result (sorted by time). Without TF32 one
// reported with tensor-op math is skipped, and the choice runs in CUDNN_FMA_MATH whatever math
// type the benchmark reports (PyTorch expects FMA there).
template <class Perf>
Choice pick(const Perf* perf, int count, const Setup& s, const char* direction) {
  for (int k = 0; k < count; ++k) {
    if (perf[k].status != CUDNN_STATUS_SUCCESS) continue;
    const bool tensor_op =
        perf[k].mathType == CUDNN_TENSOR_OP_MATH || perf[k].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (s.fma_only && tensor_op) continue;
    return {static_cast<int>(perf[k].algo), s.fma_only ? CUDNN_FMA_MATH : perf[k].mathType, perf[k].memory};
  }
  throw Error(s.ctx + ": cuDNN has no " + direction + " algorithm for these shapes" +
              (s.fma_only ? " without TF32" : "") + version_note());
}

// The cache: one choice per direction and key.
enum class Direction { Forward, BackwardData, BackwardFilter };

std::mutex cache_mutex;
std::map<std::pair<Direction, Key>, Choice> cache;

// The largest workspace any algorithm of the direction asks (0 where one fails to say), capped.
template <class SizeOf>
std::size_t largest_workspace(int algorithms, const SizeOf& size_of) {
  std::size_t most = 0;
  for (int a = 0; a < algorithms; ++a) {
    std::size_t bytes = 0;
    if (size_of(a, &bytes) == CUDNN_STATUS_SUCCESS) most = std::max(most, bytes);
  }
  return std::min(most, kMaxFindWorkspace);
}

// The benchmark's workspace: `bytes` from the caching allocator, or none when the device has
// not that much to spare (the algorithms needing one are then skipped).
Tensor find_workspace(std::size_t bytes, Device device) {
  try {
    return workspace(bytes, device);
  } catch (const OutOfMemoryError&) {
    return workspace(0, device);
  }
}

// The cached choice for (direction, key), or find() benchmarks the algorithms and caches it; the
// descriptor's math type is set to the choice's either way.
template <class Find>
Choice choose(Direction direction, Setup& s, const Find& find) {
  Choice c;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    const auto it = cache.find({direction, s.key});
    if (it != cache.end()) {
      c = it->second;
    } else {
      c = find();
      cache.emplace(std::pair{direction, s.key}, c);
    }
  }
  s.set_math(c.math);
  return c;
}

template <class T>
__global__ void add_bias(T* y, const T* b, std::int64_t channels, std::int64_t plane, std::int64_t total) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] += b[(i / plane) % channels];
  }
}

// conv2d's output shape by PyTorch's formula (conv.cpp has checked that it is positive).
Shape output_shape(const Tensor& x, const Tensor& w, const op::Conv2dOptions& opt) {
  Shape out{x.size(0), w.size(0), 0, 0};
  for (int a = 0; a < 2; ++a) {
    out[2 + a] = (x.size(2 + a) + 2 * opt.padding[a] - opt.dilation[a] * (w.size(2 + a) - 1) - 1) / opt.stride[a] + 1;
  }
  return out;
}

// alpha = 1 and beta = 0 in the data's type (cuDNN reads double for float64 data, else float).
struct Scales {
  double d1 = 1.0, d0 = 0.0;
  float f1 = 1.0f, f0 = 0.0f;
  const void* one(const Setup& s) const { return s.type == CUDNN_DATA_DOUBLE ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(const Setup& s) const { return s.type == CUDNN_DATA_DOUBLE ? static_cast<const void*>(&d0) : &f0; }
};

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const op::Conv2dOptions& options) {
  const Tensor x = input.contiguous();
  const Tensor w = weight.contiguous();
  const Shape out_shape = output_shape(x, w, options);
  const Device device = x.device();
  if (shape_numel(out_shape) == 0) return Tensor::zeros(out_shape, x.dtype(), device);
  Tensor y = Tensor::empty(out_shape, x.dtype(), device);
  Setup s(x, w, options, out_shape);
  const cudnnHandle_t h = handle(device, s.ctx);
  const Choice c = choose(Direction::Forward, s, [&] {
    const std::size_t offer = largest_workspace(CUDNN_CONVOLUTION_FWD_ALGO_COUNT, [&](int a, std::size_t* bytes) {
      return cudnnGetConvolutionForwardWorkspaceSize(h, s.x.d, s.w.d, s.conv.d, s.y.d,
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(a), bytes);
    });
    const Tensor ws = find_workspace(offer, device);
    std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
    int found = 0;
    check(cudnnFindConvolutionForwardAlgorithmEx(h, s.x.d, x.device_raw_data(), s.w.d, w.device_raw_data(), s.conv.d,
                                                 s.y.d, y.device_raw_data(), static_cast<int>(perf.size()), &found,
                                                 perf.data(), pointer(ws), static_cast<std::size_t>(ws.numel()) * 8),
          "cudnnFindConvolutionForwardAlgorithmEx", s.ctx);
    return pick(perf.data(), found, s, "forward");
  });
  const Tensor ws = workspace(c.workspace, device);
  const Scales k;
  check(cudnnConvolutionForward(h, k.one(s), s.x.d, x.device_raw_data(), s.w.d, w.device_raw_data(), s.conv.d,
                                static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), pointer(ws), c.workspace, k.zero(s),
                                s.y.d, y.device_raw_data()),
        "cudnnConvolutionForward", s.ctx);
  if (bias.defined()) {
    const Tensor b = bias.contiguous();
    const std::int64_t total = y.numel();
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((total + kThreads - 1) / kThreads, 65535 * 32));
    const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device));
    dispatch_floating(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      add_bias<T><<<blocks, kThreads, 0, stream>>>(y.device_data<T>(), b.device_data<T>(), out_shape[1],
                                                    out_shape[2] * out_shape[3], total);
    });
    check_launch("bias", s.ctx);
  }
  return y;
}

Conv2dGrads conv2d_backward(const Tensor& grad, const Tensor& input, const Tensor& weight, bool has_bias,
                            const op::Conv2dOptions& options, std::array<bool, 3> needs) {
  Conv2dGrads r;
  const Device device = input.device();
  if (needs[2] && has_bias) r.bias = cuda::sum(grad, Shape{0, 2, 3}, false, 1.0);
  if (!needs[0] && !needs[1]) return r;
  const Tensor x = input.contiguous();
  const Tensor w = weight.contiguous();
  const Tensor dy = grad.contiguous();
  if (dy.numel() == 0) {  // no outputs: nothing flows back
    if (needs[0]) r.input = Tensor::zeros(x.shape(), x.dtype(), device);
    if (needs[1]) r.weight = Tensor::zeros(w.shape(), w.dtype(), device);
    return r;
  }
  Setup s(x, w, options, dy.shape());
  const cudnnHandle_t h = handle(device, s.ctx);
  const Scales k;
  if (needs[0]) {
    r.input = Tensor::empty(x.shape(), x.dtype(), device);
    const Choice c = choose(Direction::BackwardData, s, [&] {
      const std::size_t offer = largest_workspace(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, [&](int a, std::size_t* bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, s.w.d, s.y.d, s.conv.d, s.x.d,
                                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(a), bytes);
      });
      const Tensor ws = find_workspace(offer, device);
      std::array<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT> perf{};
      int found = 0;
      check(cudnnFindConvolutionBackwardDataAlgorithmEx(h, s.w.d, w.device_raw_data(), s.y.d, dy.device_raw_data(),
                                                        s.conv.d, s.x.d, r.input.device_raw_data(),
                                                        static_cast<int>(perf.size()), &found, perf.data(), pointer(ws),
                                                        static_cast<std::size_t>(ws.numel()) * 8),
            "cudnnFindConvolutionBackwardDataAlgorithmEx", s.ctx);
      return pick(perf.data(), found, s, "backward-data");
    });
    const Tensor ws = workspace(c.workspace, device);
    check(cudnnConvolutionBackwardData(h, k.one(s), s.w.d, w.device_raw_data(), s.y.d, dy.device_raw_data(), s.conv.d,
                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), pointer(ws), c.workspace,
                                       k.zero(s), s.x.d, r.input.device_raw_data()),
          "cudnnConvolutionBackwardData", s.ctx);
  }
  if (needs[1]) {
    r.weight = Tensor::empty(w.shape(), w.dtype(), device);
    const Choice c = choose(Direction::BackwardFilter, s, [&] {
      const std::size_t offer =
          largest_workspace(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, [&](int a, std::size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, s.x.d, s.y.d, s.conv.d, s.w.d,
                                                                  static_cast<cudnnConvolutionBwdFilterAlgo_t>(a), bytes);
          });
      const Tensor ws = find_workspace(offer, device);
      std::array<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT> perf{};
      int found = 0;
      check(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, s.x.d, x.device_raw_data(), s.y.d, dy.device_raw_data(),
                                                          s.conv.d, s.w.d, r.weight.device_raw_data(),
                                                          static_cast<int>(perf.size()), &found, perf.data(),
                                                          pointer(ws), static_cast<std::size_t>(ws.numel()) * 8),
            "cudnnFindConvolutionBackwardFilterAlgorithmEx", s.ctx);
      return pick(perf.data(), found, s, "backward-filter");
    });
    const Tensor ws = workspace(c.workspace, device);
    check(cudnnConvolutionBackwardFilter(h, k.one(s), s.x.d, x.device_raw_data(), s.y.d, dy.device_raw_data(),
                                         s.conv.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), pointer(ws),
                                         c.workspace, k.zero(s), s.w.d, r.weight.device_raw_data()),
          "cudnnConvolutionBackwardFilter", s.ctx);
  }
  return r;
}

#else  // no cuDNN in this build's toolkit

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor&, const op::Conv2dOptions& options) {
  throw DeviceError(context(input, weight, options) + ": this build found no cuDNN, which conv2d on CUDA needs");
}

Conv2dGrads conv2d_backward(const Tensor&, const Tensor& input, const Tensor& weight, bool,
                            const op::Conv2dOptions& options, std::array<bool, 3>) {
  throw DeviceError(context(input, weight, options) + ": this build found no cuDNN, which conv2d on CUDA needs");
}

#endif

}  // namespace zkynet::kernels::cuda
