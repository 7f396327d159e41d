#include "convert.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/graph.h>

#include <dlpack/dlpack.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>

namespace zkynet::python {
namespace {

// Drops a Python reference with the GIL held: tensors may die on threads that do not hold it.
void release_python(PyObject* obj) {
  if (!Py_IsInitialized()) return;
  py::gil_scoped_acquire gil;
  Py_DECREF(obj);
}

Tensor over_memory(void* data, const Shape& shape, const Shape& strides, DType dtype, std::size_t span_bytes,
                   std::function<void(void*)> release, Device device = Device::cpu()) {
  auto storage = std::make_shared<Storage>(data, span_bytes, device, std::move(release));
  return Tensor::view_of(std::move(storage), shape, strides, 0, dtype);
}

// The zkynet.Tensor inside `obj`, or null: an exact type check first (the hot path of every
// operand), then pybind11's isinstance for subclasses.
const Tensor* zkynet_tensor(py::handle obj) {
  static PyTypeObject* const tensor_type = reinterpret_cast<PyTypeObject*>(py::type::of<Tensor>().ptr());
  PyObject* raw = obj.ptr();
  if (Py_TYPE(raw) != tensor_type && !py::isinstance<Tensor>(obj)) return nullptr;
  return reinterpret_cast<py::detail::instance*>(raw)->get_value_and_holder().value_ptr<Tensor>();
}

std::optional<DType> numpy_dtype(const py::dtype& dt) {
  if (dt.is(py::dtype::of<float>())) return DType::Float32;
  if (dt.is(py::dtype::of<double>())) return DType::Float64;
  if (dt.is(py::dtype::of<std::int64_t>())) return DType::Int64;
  if (dt.kind() == 'f' && dt.itemsize() == 4) return DType::Float32;
  if (dt.kind() == 'f' && dt.itemsize() == 8) return DType::Float64;
  if (dt.kind() == 'i' && dt.itemsize() == 8) return DType::Int64;
  return std::nullopt;
}

// uint64 values above 2**63 - 1 have no int64 equal: refused rather than wrapped to negatives.
void check_uint64_range(const py::array& array) {
  if (array.dtype().kind() != 'u' || array.itemsize() < 8 || array.size() == 0) return;
  const auto largest = py::int_(array.attr("max")()).cast<std::uint64_t>();
  if (largest > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    throw TypeError("zkynet: a numpy array of dtype " + std::string(py::str(array.dtype())) + " holds " +
                    std::to_string(largest) + ", beyond int64's range [-2**63, 2**63 - 1] that unsigned integers " +
                    "are converted to; convert it to float64 (or reduce it) first");
  }
}

Tensor from_numpy(py::array array, bool converted = false) {
  auto dtype = numpy_dtype(array.dtype());
  if (!dtype) {
    // bool, int32, float16 ...: converted once to the nearest zkynet dtype. Complex numbers
    // (their imaginary part would be dropped), strings and objects are refused.
    const char kind = array.dtype().kind();
    if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') {
      throw TypeError("zkynet: cannot use a numpy array of dtype " + std::string(py::str(array.dtype())) +
                      " as a tensor (expected float32, float64 or int64, or bool/int/float to convert)");
    }
    check_uint64_range(array);
    array = py::array(array.attr("astype")(kind == 'f' ? "float64" : "int64"));
    dtype = numpy_dtype(array.dtype());
  }
  const auto itemsize = static_cast<std::int64_t>(array.itemsize());
  bool usable = array.dtype().attr("isnative").cast<bool>();
  Shape shape, strides;
  for (py::ssize_t i = 0; i < array.ndim(); ++i) {
    shape.push_back(array.shape(i));
    const auto stride = static_cast<std::int64_t>(array.strides(i));
    usable = usable && stride >= 0 && stride % itemsize == 0;
    strides.push_back(stride / itemsize);
  }
  if (!usable) {
    // Byte-swapped ('>f8' here), negatively strided or unaligned: one native, contiguous copy.
    if (converted) throw TypeError("zkynet: cannot convert a numpy array of dtype " + std::string(py::str(array.dtype())));
    py::object native = array.dtype().attr("newbyteorder")("=");
    // astype, not ascontiguousarray: that one makes 0-d arrays 1-d.
    return from_numpy(py::array(array.attr("astype")(native, py::arg("order") = "C")), true);
  }
  PyObject* owner = array.ptr();
  Py_INCREF(owner);
  // Read-only arrays (zkynet's own values, np.broadcast_to views) are used in place too:
  // zkynet never writes into the tensors of its inputs.
  return over_memory(const_cast<void*>(array.data()), shape, strides, *dtype, static_cast<std::size_t>(array.nbytes()),
                     [owner](void*) { release_python(owner); });
}

std::optional<DType> dlpack_dtype(const DLDataType& t) {
  if (t.lanes != 1) return std::nullopt;
  if (t.code == kDLFloat && t.bits == 32) return DType::Float32;
  if (t.code == kDLFloat && t.bits == 64) return DType::Float64;
  if (t.code == kDLInt && t.bits == 64) return DType::Int64;
  return std::nullopt;
}

// A DLPack dtype's name, as numpy spells it ("" for those zkynet cannot take).
std::string dlpack_dtype_name(const DLDataType& t) {
  constexpr std::uint8_t kBool = 6;  // kDLBool (DLPack >= 0.8; not in the header we build against)
  const int bits = t.bits;
  if (t.lanes != 1) return "";
  if (t.code == kDLInt && (bits == 8 || bits == 16 || bits == 32 || bits == 64)) return "int" + std::to_string(bits);
  if (t.code == kDLUInt && (bits == 8 || bits == 16 || bits == 32 || bits == 64)) return "uint" + std::to_string(bits);
  if (t.code == kDLFloat && (bits == 16 || bits == 32 || bits == 64)) return "float" + std::to_string(bits);
  if (t.code == kDLBfloat && bits == 16) return "bfloat16";
  if (t.code == kBool && bits == 8) return "bool";
  return "";
}

// bool, int8/16/32, uint8..64, float16, bfloat16 DLPack tensors on the CPU: converted like
// numpy arrays of those dtypes (to int64 or float64), through a numpy array over the tensor's
// memory (that array's base owns the DLPack tensor and calls its deleter). Complex numbers are
// refused. float32/float64/int64 tensors with negative strides come here too (numpy copies them).
Tensor from_dlpack_converted(py::capsule capsule) {
  auto* managed = capsule.get_pointer<DLManagedTensor>();
  const DLTensor& t = managed->dl_tensor;
  const int bits = t.dtype.bits;
  std::string name = dlpack_dtype_name(t.dtype);
  if (name == "bfloat16") name = "uint16";  // its bits; widened below
  if (name.empty()) {
    throw TypeError("zkynet: cannot use a DLPack tensor of dtype code " + std::to_string(t.dtype.code) + ", " +
                    std::to_string(bits) + " bits, " + std::to_string(t.dtype.lanes) + " lanes (expected " +
                    "float32, float64 or int64, or bool/int/uint/float16/bfloat16 to convert)");
  }
  const py::dtype dt(name);
  std::vector<py::ssize_t> shape(t.shape, t.shape + t.ndim), strides;
  for (int i = 0; i < t.ndim; ++i) {
    const std::int64_t step = t.strides ? t.strides[i] : 1;
    strides.push_back(static_cast<py::ssize_t>(step * dt.itemsize()));
  }
  if (!t.strides) {  // row-major
    py::ssize_t step = dt.itemsize();
    for (int i = t.ndim - 1; i >= 0; --i) {
      strides[i] = step;
      step *= std::max<py::ssize_t>(shape[i], 1);
    }
  }
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  py::capsule owner(managed, [](void* p) {
    auto* m = static_cast<DLManagedTensor*>(p);
    if (m->deleter) m->deleter(m);
  });
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  py::array view(dt, shape, strides, data, owner);
  if (t.dtype.code == kDLBfloat) {  // bfloat16 is the high half of a float32
    py::object wide = view.attr("astype")("uint32");
    wide = wide.attr("__lshift__")(16);
    view = py::array(wide.attr("view")("float32").attr("astype")("float64"));  // as float16
  }
  return from_numpy(view);
}

// The zkynet device of a DLPack device type (CUDA host memory is host memory; managed memory
// is used as its device's), or TypeError for devices zkynet has no kernels for.
Device dlpack_device(int type, int index) {
  if (type == kDLCPU || type == kDLCUDAHost) return Device::cpu();
  if (type == kDLCUDA || type == kDLCUDAManaged) return Device::cuda(index);
  throw TypeError("zkynet: cannot use a DLPack tensor on device type " + std::to_string(type) +
                  " (zkynet runs on the CPU and on CUDA devices); copy it to the CPU first");
}

}  // namespace

Tensor tensor_from_dlpack(py::handle obj) {
  // Where the memory is, asked before the export (the array API's protocol), so that a CUDA
  // consumer can hand the producer its stream.
  std::optional<Device> announced;
  if (py::hasattr(obj, "__dlpack_device__")) {
    const py::tuple where = obj.attr("__dlpack_device__")();
    announced = dlpack_device(where[0].cast<int>(), where[1].cast<int>());
  }
  py::capsule capsule;
  if (announced && announced->is_cuda()) {
    require_device(*announced, "a DLPack tensor");
    // The consumer's stream (array API, __dlpack__(stream=...)): the producer makes it wait for
    // the work that writes the tensor (PyTorch records an event on its current stream and has
    // this stream wait for it). zkynet runs every kernel of a device on that device's one stream.
    const auto stream = reinterpret_cast<std::uintptr_t>(cuda::stream(announced->index));
    capsule = obj.attr("__dlpack__")(py::arg("stream") = py::int_(stream));
  } else {
    try {
      capsule = obj.attr("__dlpack__")();
    } catch (py::error_already_set&) {
      // Some producers cannot export every dtype (torch 1.13 refuses bool): their numpy view.
      if (!py::hasattr(obj, "__array__")) throw;
      return from_numpy(py::array(py::module_::import("numpy").attr("asarray")(obj)));
    }
  }
  if (std::string(capsule.name()) != "dltensor") throw TypeError("__dlpack__ returned a capsule already consumed");
  // Until the capsule is renamed below, its own destructor frees the tensor if we throw.
  auto* managed = capsule.get_pointer<DLManagedTensor>();
  const DLTensor& t = managed->dl_tensor;
  const Device device = dlpack_device(t.device.device_type, t.device.device_id);
  if (device.is_cuda() && !(announced && announced->is_cuda())) {
    throw TypeError("zkynet: a DLPack tensor on " + device.str() + " from an object without __dlpack_device__: "
                    "its producer could not be given zkynet's stream, so its pending writes would be unordered");
  }
  if (device.is_cuda() && device != *announced) require_device(device, "a DLPack tensor");
  const auto dtype = dlpack_dtype(t.dtype);
  bool negative_strides = false;
  for (int i = 0; t.strides != nullptr && i < t.ndim; ++i) negative_strides = negative_strides || t.strides[i] < 0;
  if (!dtype || negative_strides) {
    if (device.is_cpu()) return from_dlpack_converted(capsule);
    const std::string name = dlpack_dtype_name(t.dtype);
    throw TypeError("zkynet: cannot use a DLPack tensor on " + device.str() + " of " +
                    (dtype ? std::string("negative strides") : "dtype " + (name.empty() ? "code " + std::to_string(t.dtype.code) : name)) +
                    " without a copy: zkynet's CUDA tensors are float32, float64 or int64 with non-negative strides; "
                    "convert it on its device first (PyTorch: t.float(), t.double(), t.long(), t.contiguous())");
  }
  Shape shape(t.shape, t.shape + t.ndim);
  Shape strides = t.strides ? Shape(t.strides, t.strides + t.ndim) : contiguous_strides(shape);
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  // The bytes the view reaches: the last element's offset plus one element.
  std::size_t span = 0;
  if (shape_numel(shape) > 0) {
    std::int64_t last = 0;
    for (std::size_t i = 0; i < shape.size(); ++i) last += (shape[i] - 1) * strides[i];
    span = static_cast<std::size_t>(last + 1) * dtype_size(*dtype);
  }
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  if (device.is_cpu()) {
    return over_memory(data, shape, strides, *dtype, span, [managed](void*) {
      if (managed->deleter) managed->deleter(managed);
    });
  }
  return over_memory(data, shape, strides, *dtype, span, [managed, device](void*) {
    // Kernels still queued on zkynet's stream may read the memory: they finish before the
    // producer gets it back (and may reuse it on its own streams). One host-side wait when the
    // last view dies: conservative, and never an exception out of a destructor.
    try {
      cuda::synchronize(device.index);
    } catch (...) {
    }
    if (managed->deleter) managed->deleter(managed);
  }, device);
}

std::int64_t int64_from_python(py::handle obj, const std::string& what) {
  // ints, bools, numpy integers and 0-d integer arrays have __index__; floats do not.
  auto value = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!value) {
    PyErr_Clear();
    throw TypeError("zkynet: " + what + " expects an integer, got '" +
                    std::string(py::str(obj.get_type().attr("__name__"))) + "'");
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow != 0) {
    throw TypeError("zkynet: " + what + " expects an integer in int64 range [-2**63, 2**63 - 1], got " +
                    std::string(py::str(value)));
  }
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return static_cast<std::int64_t>(v);
}

Shape int64s_from_python(py::handle obj, const std::string& what) {
  const bool single = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj).ndim() == 0
                                                     : PyIndex_Check(obj.ptr()) != 0;
  if (single) return {int64_from_python(obj, what)};
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || !py::isinstance<py::iterable>(obj)) {
    throw TypeError("zkynet: " + what + " expects an integer or a sequence of integers, got '" +
                    std::string(py::str(obj.get_type().attr("__name__"))) + "'");
  }
  Shape out;
  for (auto item : obj) out.push_back(int64_from_python(item, what));
  return out;
}

Tensor tensor_from_python(py::handle obj) {
  if (const Tensor* t = zkynet_tensor(obj)) return *t;  // no copy, on its device
  if (py::isinstance<py::bool_>(obj)) return Tensor::scalar(obj.cast<bool>() ? 1.0 : 0.0, DType::Int64);
  // Python ints are int64 and floats float64, as in PyTorch; mixed with floats, ints promote.
  if (py::isinstance<py::int_>(obj)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow != 0) {
      throw TypeError("zkynet: Python ints become int64 values: expected an integer in int64 range "
                      "[-2**63, 2**63 - 1], got " + std::string(py::str(obj)) + " (use a float for larger numbers)");
    }
    Tensor t = Tensor::empty({}, DType::Int64);  // exact: no detour through double
    *t.data<std::int64_t>() = static_cast<std::int64_t>(v);
    return t;
  }
  if (py::isinstance<py::float_>(obj)) return Tensor(obj.cast<double>());
  if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj));
  if (py::hasattr(obj, "__dlpack__") && !py::isinstance<py::array>(obj)) return tensor_from_dlpack(obj);
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj) || py::hasattr(obj, "__array__")) {
    py::object array = py::module_::import("numpy").attr("asarray")(obj);
    return from_numpy(py::reinterpret_borrow<py::array>(array));
  }
  throw TypeError("zkynet: cannot use a value of type '" + std::string(py::str(obj.get_type().attr("__name__"))) +
                  "' as a tensor (expected a number, list, numpy array, zkynet.Tensor or an object with __dlpack__)");
}

Device device_from_python(py::handle obj) {
  if (py::isinstance<py::str>(obj)) return Device::parse(obj.cast<std::string>());
  if (py::isinstance<py::int_>(obj) && !py::isinstance<py::bool_>(obj)) {  // torch's .to(1): cuda:1
    const std::int64_t index = int64_from_python(obj, "device");
    if (index < 0 || index > INT_MAX) {
      throw TypeError("unknown device " + std::string(py::str(obj)) + ": a device index is a non-negative integer");
    }
    return Device::cuda(static_cast<int>(index));
  }
  // torch.device('cuda:1') prints as cuda:1.
  if (!py::isinstance<py::type>(obj) && py::hasattr(obj, "type") && py::hasattr(obj, "index")) {
    return Device::parse(std::string(py::str(obj)));
  }
  throw TypeError("unknown device of type '" + std::string(py::str(obj.get_type().attr("__name__"))) +
                  "': expected \"cpu\", \"cuda\", \"cuda:N\" or a device index");
}

std::optional<DType> dtype_from_python(py::handle obj) {
  if (obj.is_none()) return std::nullopt;
  std::string name;
  if (py::isinstance<py::str>(obj)) {
    name = obj.cast<std::string>();
  } else if (const std::string text = py::str(obj); text.rfind("torch.", 0) == 0) {
    name = text.substr(6);  // torch.float32
  } else {
    try {  // numpy dtypes and types: np.float32, np.dtype('int64')
      name = py::str(py::module_::import("numpy").attr("dtype")(obj).attr("name"));
    } catch (py::error_already_set&) {
      name = text;
    }
  }
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  if (name == "int64") return DType::Int64;
  throw TypeError("unknown dtype '" + name + "': zkynet tensors are 'float32', 'float64' or 'int64'");
}

void require_device(Device device, const std::string& what) {
  if (device.is_cpu()) return;
  if (!cuda::built()) {
    throw UsageError(what + ": device " + device.str() + " is not available: this build of zkynet has no CUDA");
  }
  const int count = cuda::device_count();
  if (device.index >= count) {
    throw UsageError(what + ": device " + device.str() + " is not available (" + std::to_string(count) +
                     " CUDA device(s) answer on this machine)");
  }
}

namespace {

// The ndarray subclass values are returned as (cg.ValueArray, registered by the package).
PyObject* value_array_type = nullptr;

// A numpy array exported through DLPack: the DLManagedTensor, its shape and strides, and a
// reference to the array that keeps the memory alive until the consumer calls the deleter.
struct ExportedArray {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape, strides;
  PyObject* owner = nullptr;
};

void delete_exported(DLManagedTensor* managed) {
  auto* exported = static_cast<ExportedArray*>(managed->manager_ctx);
  release_python(exported->owner);
  delete exported;
}

// A zkynet tensor exported through DLPack: the tensor itself keeps its storage alive (CPU or
// device memory) until the consumer calls the deleter, from any thread.
struct ExportedTensor {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape, strides;
  Tensor keep;
};

void delete_exported_tensor(DLManagedTensor* managed) { delete static_cast<ExportedTensor*>(managed->manager_ctx); }

// Frees a capsule's tensor unless a consumer took it (and renamed the capsule "used_dltensor").
void dlpack_capsule_destructor(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, "dltensor")) return;
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
}

}  // namespace

void set_value_array_type(py::handle type) {
  PyObject* next = type.is_none() ? nullptr : type.ptr();  // None: plain numpy arrays
  Py_XINCREF(next);
  Py_XDECREF(value_array_type);
  value_array_type = next;
}

py::capsule numpy_to_dlpack(py::array array) {
  const py::dtype dt = array.dtype();
  DLDataType dl{};
  dl.bits = static_cast<std::uint8_t>(dt.itemsize() * 8);
  dl.lanes = 1;
  switch (dt.kind()) {
    case 'f': dl.code = kDLFloat; break;
    case 'i': dl.code = kDLInt; break;
    case 'u': dl.code = kDLUInt; break;
    case 'c': dl.code = kDLComplex; break;
    default: throw py::buffer_error("zkynet: cannot export an array of dtype " + std::string(py::str(py::handle(dt))) + " through DLPack");
  }
  if (!dt.attr("isnative").cast<bool>()) throw py::buffer_error("zkynet: cannot export a byte-swapped array through DLPack");
  auto exported = std::make_unique<ExportedArray>();
  for (py::ssize_t i = 0; i < array.ndim(); ++i) {
    const auto stride = static_cast<std::int64_t>(array.strides(i));
    if (stride < 0 || stride % dt.itemsize() != 0) {
      throw py::buffer_error("zkynet: cannot export an array with negative or unaligned strides through DLPack; "
                             "export a copy() of it");
    }
    exported->shape.push_back(array.shape(i));
    exported->strides.push_back(stride / dt.itemsize());
  }
  DLTensor& t = exported->managed.dl_tensor;
  t.data = const_cast<void*>(array.data());
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<std::int32_t>(array.ndim());
  t.dtype = dl;
  t.shape = exported->shape.data();
  t.strides = exported->strides.data();
  t.byte_offset = 0;
  exported->owner = array.ptr();
  Py_INCREF(exported->owner);
  exported->managed.manager_ctx = exported.get();
  exported->managed.deleter = delete_exported;
  PyObject* capsule = PyCapsule_New(&exported->managed, "dltensor", dlpack_capsule_destructor);
  if (capsule == nullptr) {
    Py_DECREF(exported->owner);
    throw py::error_already_set();
  }
  exported.release();
  return py::reinterpret_steal<py::capsule>(capsule);
}

py::capsule tensor_to_dlpack(const Tensor& source) {
  if (!source.defined()) throw UsageError("zkynet: cannot export an undefined tensor through DLPack");
  Tensor t = source;
  if (std::any_of(t.strides().begin(), t.strides().end(), [](std::int64_t s) { return s < 0; })) t = t.clone();
  auto exported = std::make_unique<ExportedTensor>();
  exported->shape.assign(t.shape().begin(), t.shape().end());
  exported->strides.assign(t.strides().begin(), t.strides().end());
  DLTensor& dl = exported->managed.dl_tensor;
  // The first element itself, byte_offset 0, as PyTorch exports (torch 1.13's fromDLPack ignores
  // byte_offset).
  dl.data = t.device_raw_data();
  dl.device = t.device().is_cpu() ? DLDevice{kDLCPU, 0} : DLDevice{kDLCUDA, t.device().index};
  dl.ndim = static_cast<std::int32_t>(t.dim());
  dl.dtype = t.dtype() == DType::Int64 ? DLDataType{kDLInt, 64, 1}
                                       : DLDataType{kDLFloat, static_cast<std::uint8_t>(dtype_size(t.dtype()) * 8), 1};
  dl.shape = exported->shape.data();
  dl.strides = exported->strides.data();
  dl.byte_offset = 0;
  exported->keep = std::move(t);
  exported->managed.manager_ctx = exported.get();
  exported->managed.deleter = delete_exported_tensor;
  PyObject* capsule = PyCapsule_New(&exported->managed, "dltensor", dlpack_capsule_destructor);
  if (capsule == nullptr) throw py::error_already_set();
  exported.release();
  return py::reinterpret_steal<py::capsule>(capsule);
}

py::array tensor_to_numpy(const Tensor& t_any, bool value_array) {
  // numpy reads host memory: a device value is copied to the host here, explicitly.
  const Tensor t = t_any.device().is_cpu() ? t_any : t_any.cpu();
  const py::dtype dtype = t.dtype() == DType::Float32   ? py::dtype::of<float>()
                          : t.dtype() == DType::Float64 ? py::dtype::of<double>()
                                                        : py::dtype::of<std::int64_t>();
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  // numpy refuses shapes whose nonzero sizes multiply past 2**63 bytes, even with a zero among
  // them (zkynet and torch allow (0, 2**63 - 1)): a clear error rather than numpy's.
  const auto itemsize = static_cast<std::int64_t>(dtype_size(t.dtype()));
  std::int64_t span = itemsize;
  for (auto n : t.shape()) {
    if (n != 0 && __builtin_mul_overflow(span, n, &span)) {
      throw ShapeError("zkynet: a value of shape " + shape_str(t.shape()) +
                       " cannot be a numpy array: its nonzero sizes multiply beyond numpy's limit of 2**63 bytes");
    }
  }
  std::vector<py::ssize_t> strides;  // in bytes; an empty value's strides are never used
  for (auto s : t.strides()) strides.push_back(t.numel() == 0 ? 0 : static_cast<py::ssize_t>(s * itemsize));
  auto* keep = new Tensor(t);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  py::array array(dtype, shape, strides, t.raw_data(), owner);
  // NOTE: graph values are shared with the graph; writing through them would corrupt it.
  py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  // As cg.ValueArray: still read-only, and exportable through __dlpack__ (numpy's own refuses
  // read-only arrays).
  if (value_array && value_array_type != nullptr) {
    return py::reinterpret_borrow<py::array>(array.attr("view")(py::handle(value_array_type)));
  }
  return array;
}

NodeRef noderef_from_python(py::handle obj) {
  // Hot path (every operand of every operator): exact type checks before pybind11's
  // isinstance, which looks the type up by name and goes through __instancecheck__.
  static PyTypeObject* const node_type = reinterpret_cast<PyTypeObject*>(py::type::of<NodeRef>().ptr());
  PyObject* raw = obj.ptr();
  if (Py_TYPE(raw) == node_type) {
    return *reinterpret_cast<py::detail::instance*>(raw)->get_value_and_holder().value_ptr<NodeRef>();
  }
  if (PyFloat_CheckExact(raw)) return NodeRef(PyFloat_AS_DOUBLE(raw));
  if (const Tensor* t = zkynet_tensor(obj)) return NodeRef(*t);
  if (py::isinstance<NodeRef>(obj)) return obj.cast<NodeRef>();
  if (py::isinstance<ModuleGraph>(obj)) return obj.cast<ModuleGraph&>().root();
  if (py::isinstance<Input>(obj)) return NodeRef(obj.cast<const Input&>());
  return NodeRef(tensor_from_python(obj));
}

namespace {

// A Python object shared by C++ copies of a std::function, released with the GIL held (the
// last copy may go while the GIL is released).
struct SharedPythonObject {
  py::object obj;
  explicit SharedPythonObject(py::object o) : obj(std::move(o)) {}
  SharedPythonObject(const SharedPythonObject&) = delete;
  SharedPythonObject& operator=(const SharedPythonObject&) = delete;
  ~SharedPythonObject() {
    if (!Py_IsInitialized()) {
      obj.release();
      return;
    }
    py::gil_scoped_acquire gil;
    obj = py::object();
  }
};

}  // namespace

std::function<NodeRef(const NodeRef&, const NodeRef&)> loss_from_python(py::object callable) {
  auto fn = std::make_shared<SharedPythonObject>(std::move(callable));
  return [fn](const NodeRef& prediction, const NodeRef& target) {
    py::gil_scoped_acquire gil;
    return noderef_from_python(fn->obj(py::cast(prediction), py::cast(target)));
  };
}

}  // namespace zkynet::python
