#include "convert.h"

#include <zkynet/framework/error.h>
#include <zkynet/framework/graph.h>

#include <dlpack/dlpack.h>

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
                   std::function<void(void*)> release) {
  auto storage = std::make_shared<Storage>(data, span_bytes, Device::cpu(), std::move(release));
  return Tensor::view_of(std::move(storage), shape, strides, 0, dtype);
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

// bool, int8/16/32, uint8..64, float16, bfloat16 DLPack tensors: converted like numpy arrays
// of those dtypes (to int64 or float64), through a numpy array over the tensor's memory (that
// array's base owns the DLPack tensor and calls its deleter). Complex numbers are refused.
Tensor from_dlpack_converted(py::capsule capsule) {
  constexpr std::uint8_t kBool = 6;  // kDLBool (DLPack >= 0.8; not in the header we build against)
  auto* managed = capsule.get_pointer<DLManagedTensor>();
  const DLTensor& t = managed->dl_tensor;
  const int bits = t.dtype.bits;
  std::string name;
  if (t.dtype.lanes == 1) {
    if (t.dtype.code == kDLInt && (bits == 8 || bits == 16 || bits == 32)) name = "int" + std::to_string(bits);
    if (t.dtype.code == kDLUInt && (bits == 8 || bits == 16 || bits == 32 || bits == 64)) name = "uint" + std::to_string(bits);
    if (t.dtype.code == kDLFloat && bits == 16) name = "float16";
    if (t.dtype.code == kDLBfloat && bits == 16) name = "uint16";  // its bits; widened below
    if (t.dtype.code == kBool && bits == 8) name = "bool";
  }
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

Tensor from_dlpack(py::handle obj) {
  py::capsule capsule;
  try {
    capsule = obj.attr("__dlpack__")();
  } catch (py::error_already_set&) {
    // Some producers cannot export every dtype (torch 1.13 refuses bool): their numpy view.
    if (!py::hasattr(obj, "__array__")) throw;
    return from_numpy(py::array(py::module_::import("numpy").attr("asarray")(obj)));
  }
  if (std::string(capsule.name()) != "dltensor") throw TypeError("__dlpack__ returned a capsule already consumed");
  auto* managed = capsule.get_pointer<DLManagedTensor>();
  const DLTensor& t = managed->dl_tensor;
  if (t.device.device_type != kDLCPU) {
    throw TypeError("zkynet: a DLPack tensor on device type " + std::to_string(t.device.device_type) +
                    " cannot be used by this CPU-only build; copy it to the CPU first");
  }
  const auto dtype = dlpack_dtype(t.dtype);
  if (!dtype) return from_dlpack_converted(capsule);
  Shape shape(t.shape, t.shape + t.ndim);
  Shape strides = t.strides ? Shape(t.strides, t.strides + t.ndim) : contiguous_strides(shape);
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(*dtype);
  return over_memory(data, shape, strides, *dtype, bytes, [managed](void*) {
    if (managed->deleter) managed->deleter(managed);
  });
}

}  // namespace

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
  if (py::hasattr(obj, "__dlpack__") && !py::isinstance<py::array>(obj)) return from_dlpack(obj);
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj) || py::hasattr(obj, "__array__")) {
    py::object array = py::module_::import("numpy").attr("asarray")(obj);
    return from_numpy(py::reinterpret_borrow<py::array>(array));
  }
  throw TypeError("zkynet: cannot use a value of type '" + std::string(py::str(obj.get_type().attr("__name__"))) +
                  "' as a tensor (expected a number, list, numpy array or an object with __dlpack__)");
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

py::array tensor_to_numpy(const Tensor& t_any) {
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
  if (value_array_type != nullptr) return py::reinterpret_borrow<py::array>(array.attr("view")(py::handle(value_array_type)));
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
