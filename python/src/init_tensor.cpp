// zkynet.Tensor: a value on the CPU or a CUDA device, handed between Python and zkynet without a
// copy; its factories (the cores of zkynet.zeros, ones, ... in zkynet/tensors.py) and DLPack in
// and out. Values reach numpy (host memory) only through an explicit copy: .numpy(), __array__,
// repr.
#include "convert.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>

#include <pybind11/stl.h>

#include <dlpack/dlpack.h>

#include <cmath>
#include <cstdint>
#include <optional>

namespace zkynet::python {
namespace {

py::tuple shape_tuple(const Shape& shape) { return py::tuple(py::cast(std::vector<std::int64_t>(shape.begin(), shape.end()))); }

// A shape from torch's forms: zeros(2, 3), zeros((2, 3)), zeros([2, 3]), zeros(()).
Shape shape_from(const py::tuple& size, const char* what) {
  if (size.size() == 1 && !PyIndex_Check(size[0].ptr())) return int64s_from_python(size[0], what);
  return int64s_from_python(size, what);
}

Device device_or_cpu(py::handle device) { return device.is_none() ? Device::cpu() : device_from_python(device); }

// `t` on `device` and of `dtype` (each optional), copied only when something changes or `copy`.
Tensor converted(const Tensor& t, std::optional<DType> dtype, std::optional<Device> device, bool copy,
                 const char* what = "Tensor.to()", bool non_blocking = false) {
  Tensor out = t;
  if (device && *device != out.device()) {
    require_device(*device, what);
    // The smaller of the two dtypes crosses the bus.
    if (dtype && dtype_size(*dtype) < dtype_size(out.dtype())) out = out.to(*dtype);
    out = out.to(*device, non_blocking);
    copy = false;
  }
  if (dtype && *dtype != out.dtype()) {
    out = out.to(*dtype);
    copy = false;
  }
  return copy ? out.clone() : out;
}

// Whether a positional argument of to() names a device rather than a dtype: strings other than
// dtype names, device indices and torch.device objects.
bool names_device(py::handle arg) {
  if (py::isinstance<py::str>(arg)) {
    const std::string s = arg.cast<std::string>();
    if (s == "float32" || s == "float64" || s == "int64") return false;
    if (s == "cpu" || s == "cuda" || s.rfind("cuda:", 0) == 0) return true;
    throw TypeError("Tensor.to(): unknown device '" + s + "' (nor a dtype): expected \"cpu\", \"cuda\", \"cuda:N\", "
                    "\"float32\", \"float64\" or \"int64\"");
  }
  if (py::isinstance<py::int_>(arg) && !py::isinstance<py::bool_>(arg)) return true;
  return !py::isinstance<py::type>(arg) && py::hasattr(arg, "type") && py::hasattr(arg, "index");  // torch.device
}

// torch.Tensor.to's forms: to(device), to(dtype), to(device, dtype), to(other), and the keywords
// device=, dtype=, copy=. Returns this tensor itself when nothing changes (copy=False).
Tensor tensor_to(const Tensor& t, const py::args& args, const py::kwargs& kwargs) {
  std::optional<Device> device;
  std::optional<DType> dtype;
  bool copy = false;
  bool non_blocking = false;
  if (args.size() > 2) throw TypeError("Tensor.to() takes at most 2 positional arguments (device, dtype)");
  for (auto arg : args) {
    if (const auto* other = py::isinstance<Tensor>(arg) ? &arg.cast<const Tensor&>() : nullptr) {
      device = other->device();
      dtype = other->dtype();
    } else if (names_device(arg)) {
      if (device) throw TypeError("Tensor.to(): two devices given");
      device = device_from_python(arg);
    } else {
      if (dtype) throw TypeError("Tensor.to(): two dtypes given");
      dtype = dtype_from_python(arg);
    }
  }
  for (auto [key, value] : kwargs) {
    const std::string name = py::str(key);
    if (name == "device") {
      if (device) throw TypeError("Tensor.to(): device given twice");
      if (!value.is_none()) device = device_from_python(value);
    } else if (name == "dtype") {
      if (dtype) throw TypeError("Tensor.to(): dtype given twice");
      dtype = dtype_from_python(value);
    } else if (name == "copy") {
      copy = value.cast<bool>();
    } else if (name == "non_blocking") {
      non_blocking = value.cast<bool>();
    } else {
      throw TypeError("Tensor.to() got an unexpected keyword argument '" + name + "'");
    }
  }
  return converted(t, dtype, device, copy, "Tensor.to()", non_blocking);
}

// The host values of `t` as a numpy array (a read-only view on the CPU, a copy from a device).
py::array host_array(const Tensor& t) { return tensor_to_numpy(t, false); }

// __dlpack__(stream=None, max_version=None, dl_device=None, copy=None), the array API's form.
py::capsule export_dlpack(const Tensor& t, py::object stream, py::object max_version, py::object dl_device,
                          py::object copy) {
  (void)max_version;  // the capsule is the unversioned DLManagedTensor, which every consumer takes
  Tensor out = t;
  const bool may_copy = copy.is_none() || copy.cast<bool>();
  if (!dl_device.is_none()) {
    const py::tuple where = py::reinterpret_borrow<py::tuple>(dl_device);
    const int type = where[0].cast<int>(), index = where[1].cast<int>();
    Device target;
    if (type == kDLCPU) {
      target = Device::cpu();
    } else if (type == kDLCUDA) {
      target = Device::cuda(index);
    } else {
      throw py::buffer_error("zkynet.Tensor.__dlpack__: cannot export to DLPack device type " + std::to_string(type));
    }
    if (target != out.device()) {
      if (!may_copy) {
        throw py::buffer_error("zkynet.Tensor.__dlpack__: the tensor is on " + out.device().str() + ", not " +
                               target.str() + ", and copy=False");
      }
      require_device(target, "Tensor.__dlpack__");
      out = out.to(target);  // a new tensor: nothing to order but the copy itself, below
    }
  }
  if (!copy.is_none() && copy.cast<bool>() && out.shares_storage_with(t)) out = out.clone();
  if (out.device().is_cpu()) {
    if (!stream.is_none() && !(py::isinstance<py::int_>(stream) && stream.cast<std::int64_t>() == -1)) {
      throw py::value_error("zkynet.Tensor.__dlpack__: a CPU tensor takes stream=None, got " + std::string(py::str(stream)));
    }
  } else {
    if (!stream.is_none() && !py::isinstance<py::int_>(stream)) {
      throw py::type_error("zkynet.Tensor.__dlpack__: stream must be an int or None");
    }
    // The consumer reads on its stream (None: the legacy default stream); zkynet's work on the
    // tensor is queued on zkynet's own stream. Without a CUDA event API here, zkynet waits on the
    // host for its stream to finish, which orders it before any consumer stream. stream=-1: the
    // consumer asked for no synchronization.
    if (stream.is_none() || stream.cast<std::int64_t>() != -1) {
      py::gil_scoped_release release;
      cuda::synchronize(out.device().index);
    }
  }
  return tensor_to_dlpack(out);
}

py::tuple dlpack_device_of(const Tensor& t) {
  if (t.device().is_cpu()) return py::make_tuple(static_cast<int>(kDLCPU), 0);
  return py::make_tuple(static_cast<int>(kDLCUDA), t.device().index);
}

// Numba's and CuPy's __cuda_array_interface__ (version 3), which torch.as_tensor also reads: the
// device pointer, and zkynet's stream for the consumer to order its work after (no host wait).
py::dict cuda_array_interface(const Tensor& t) {
  if (!t.device().is_cuda()) throw py::attribute_error("__cuda_array_interface__: the tensor is on the CPU");
  const auto itemsize = static_cast<std::int64_t>(dtype_size(t.dtype()));
  py::list strides;
  for (auto s : t.strides()) strides.append(s * itemsize);
  py::dict out;
  out["shape"] = shape_tuple(t.shape());
  out["typestr"] = t.dtype() == DType::Int64 ? "<i8" : t.dtype() == DType::Float32 ? "<f4" : "<f8";
  out["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(t.device_raw_data()), false);
  out["strides"] = py::tuple(strides);
  out["version"] = 3;
  out["stream"] = reinterpret_cast<std::uintptr_t>(cuda::stream(t.device().index));
  return out;
}

py::object item_of(const Tensor& t) {
  if (t.numel() != 1) {
    throw ShapeError("Tensor.item(): a tensor of shape " + shape_str(t.shape()) + " has " + std::to_string(t.numel()) +
                     " elements, not one");
  }
  return host_array(t).attr("reshape")(-1).attr("item")(0);
}

std::string tensor_repr(const Tensor& t) {
  std::string values;
  try {
    py::object np = py::module_::import("numpy");
    values = py::str(np.attr("array2string")(host_array(t), py::arg("separator") = ", ", py::arg("prefix") = "Tensor("));
  } catch (const Error& e) {  // a device that went away: the metadata still prints
    values = "<unreadable: " + std::string(e.what()) + ">";
  }
  return "Tensor(" + values + ", shape=" + std::string(py::str(shape_tuple(t.shape()))) + ", dtype=" +
         std::string(dtype_name(t.dtype())) + ", device='" + t.device().str() + "')";
}

// A row-major host tensor of `n` values from `value(i)`, then moved to `device`.
template <class F>
Tensor filled_on_host(const Shape& shape, DType dtype, Device device, F value) {
  require_device(device, "zkynet tensor factory");
  Tensor t = Tensor::empty(shape, dtype);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(value(i));
  });
  return t.to(device);
}

}  // namespace

void init_tensor(py::module_& m) {
  py::class_<Tensor>(m, "Tensor", R"doc(A tensor on the CPU or a CUDA device (zkynet.tensor, zkynet.zeros, ... make one).

Operators and module calls take it without a copy, on its device; node.tensor and
graph.grad_tensor(p) give results as Tensors without a copy. Host copies are explicit:
.numpy(), .cpu(), numpy.asarray(t), repr. DLPack in and out shares memory on both devices
(torch.from_dlpack(t), zkynet.from_dlpack(torch_tensor)).)doc")
      .def_property_readonly("shape", [](const Tensor& t) { return shape_tuple(t.shape()); })
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); }, "'cpu' or 'cuda:N'")
      .def_property_readonly("is_cuda", [](const Tensor& t) { return t.device().is_cuda(); })
      .def_property_readonly("ndim", &Tensor::dim)
      .def("dim", &Tensor::dim)
      .def("numel", &Tensor::numel)
      .def("size", [](const Tensor& t, py::object dim) -> py::object {
             if (dim.is_none()) return shape_tuple(t.shape());
             return py::int_(t.size(int64_from_python(dim, "Tensor.size: dim")));
           }, py::arg("dim") = py::none())
      .def("__len__", [](const Tensor& t) {
        if (t.dim() == 0) throw py::type_error("len() of a 0-d tensor");
        return t.shape()[0];
      })
      .def("to", &tensor_to,
           "to(device) / to(dtype) / to(device, dtype) / to(other) / to(device=, dtype=, copy=False, "
           "non_blocking=False): this tensor itself when nothing changes, else a copy. non_blocking: the host does "
           "not wait for a host<->GPU copy (kernels queued later do); a copy to the host then lands in pinned "
           "memory, readable once cuda.synchronize() has returned")
      .def("cuda", [](const Tensor& t, py::object device) {
             Device d = device.is_none() ? Device::cuda() : device_from_python(device);
             if (!d.is_cuda()) throw TypeError("Tensor.cuda(): expected a CUDA device, got '" + d.str() + "'");
             return converted(t, std::nullopt, d, false, "Tensor.cuda()");
           }, py::arg("device") = py::none(), "a copy on cuda:N (N from device: an index or 'cuda:N'; default 0)")
      .def("cpu", [](const Tensor& t) { return t.cpu(); }, "a copy on the host (this tensor itself when there already)")
      .def("pin_memory", &Tensor::pin_memory,
           "a copy in pinned (page-locked) host memory, so that to(device, non_blocking=True) runs asynchronously; "
           "this tensor itself when pinned already. RuntimeError without a CUDA device, as in torch")
      .def("is_pinned", &Tensor::is_pinned, "whether the tensor lives in pinned host memory (False without CUDA)")
      .def("clone", [](const Tensor& t) { return t.clone(); })
      .def("contiguous", [](const Tensor& t) { return t.contiguous(); })
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("data_ptr", [](const Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.device_raw_data()); },
           "the address of the first element, on the tensor's device")
      .def("numpy", [](const Tensor& t, bool force) -> py::array {
             if (force) return py::array(py::module_::import("numpy").attr("array")(host_array(t)));
             return tensor_to_numpy(t);
           }, py::arg("force") = false,
           "the values as a read-only numpy array: a view of CPU memory, a host copy of device memory; "
           "force=True: a writable copy")
      .def("__array__", [](const Tensor& t, py::object dtype, py::object copy) -> py::object {
             if (!copy.is_none() && !copy.cast<bool>() && !t.device().is_cpu()) {
               throw py::value_error("__array__(copy=False): the tensor is on " + t.device().str() +
                                     "; numpy needs a host copy");
             }
             py::object a = host_array(t);
             if (!dtype.is_none()) a = a.attr("astype")(dtype);
             if (!copy.is_none() && copy.cast<bool>() && t.device().is_cpu()) a = py::module_::import("numpy").attr("array")(a);
             return a;
           }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("tolist", [](const Tensor& t) { return host_array(t).attr("tolist")(); })
      .def("item", &item_of, "the one element as a Python int or float (a host copy)")
      .def("__float__", [](const Tensor& t) { return py::float_(item_of(t)); })
      .def("__int__", [](const Tensor& t) { return py::int_(item_of(t)); })
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def("__dlpack__", &export_dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
           "a DLPack capsule over this tensor's memory, on its device (CUDA: zkynet's queued work on it is "
           "finished first unless stream=-1)")
      .def("__dlpack_device__", &dlpack_device_of, "(1, 0) for the CPU (kDLCPU), (2, N) for cuda:N (kDLCUDA)")
      .def("__repr__", &tensor_repr);

  m.def("from_dlpack", [](py::handle obj) { return tensor_from_dlpack(obj); }, py::arg("obj"),
        "a zkynet.Tensor over a DLPack producer's memory (torch, CuPy, JAX, numpy ...), CPU or CUDA, "
        "without a copy");
  m.def("_as_tensor", [](py::handle data) { return tensor_from_python(data); }, py::arg("data"));
  m.def("_convert", [](const Tensor& t, py::handle dtype, py::handle device, bool copy) {
    std::optional<Device> d;
    if (!device.is_none()) d = device_from_python(device);
    return converted(t, dtype_from_python(dtype), d, copy, "zkynet.tensor(device=...)");
  }, py::arg("tensor"), py::arg("dtype"), py::arg("device"), py::arg("copy"));

  // The factories' cores: shapes as tuples of size arguments, dtype and device already chosen.
  m.def("_empty", [](const py::tuple& size, py::handle dtype, py::handle device) {
    const Device d = device_or_cpu(device);
    require_device(d, "zkynet.empty");
    return Tensor::empty(shape_from(size, "empty: size"), dtype_from_python(dtype).value_or(DType::Float32), d);
  });
  m.def("_full", [](const py::tuple& size, double value, py::handle dtype, py::handle device) {
    const Device d = device_or_cpu(device);
    require_device(d, "zkynet.full");
    return Tensor::full(shape_from(size, "full: size"), value, dtype_from_python(dtype).value_or(DType::Float32), d);
  });
  m.def("_full_int", [](const py::tuple& size, std::int64_t value, py::handle dtype, py::handle device) {
    // int64 fill values beyond 2**53 stay exact: filled on the host, not through a double.
    const DType dt = dtype_from_python(dtype).value_or(DType::Int64);
    const Shape shape = shape_from(size, "full: size");
    if (dt != DType::Int64) {
      const Device d = device_or_cpu(device);
      require_device(d, "zkynet.full");
      return Tensor::full(shape, static_cast<double>(value), dt, d);
    }
    return filled_on_host(shape, dt, device_or_cpu(device), [value](std::int64_t) { return value; });
  });
  m.def("_arange", [](double start, double end, double step, bool integral, py::handle dtype, py::handle device) {
    if (step == 0) throw ShapeError("arange: step must be nonzero");
    const double n = std::ceil((end - start) / step);
    const auto count = static_cast<std::int64_t>(std::max(0.0, n));
    const DType dt = dtype_from_python(dtype).value_or(integral ? DType::Int64 : DType::Float32);
    return filled_on_host({count}, dt, device_or_cpu(device), [start, step](std::int64_t i) { return start + step * i; });
  });
  m.def("_eye", [](std::int64_t n, std::int64_t cols, py::handle dtype, py::handle device) {
    if (n < 0 || cols < 0) throw ShapeError("eye: n and m must be non-negative, got " + std::to_string(n) + ", " + std::to_string(cols));
    return filled_on_host({n, cols}, dtype_from_python(dtype).value_or(DType::Float32), device_or_cpu(device),
                          [cols](std::int64_t i) { return i / cols == i % cols ? 1.0 : 0.0; });
  });
  m.def("_randn", [](const py::tuple& size, py::handle dtype, py::handle device) {
    const Device d = device_or_cpu(device);
    require_device(d, "zkynet.randn");
    const DType dt = dtype_from_python(dtype).value_or(DType::Float32);
    if (!is_floating(dt)) throw TypeError("randn: dtype must be float32 or float64, got int64");
    return Tensor::randn(shape_from(size, "randn: size"), nn::default_generator(), dt, d);
  });
  m.def("_rand", [](const py::tuple& size, py::handle dtype, py::handle device) {
    const Device d = device_or_cpu(device);
    require_device(d, "zkynet.rand");
    const DType dt = dtype_from_python(dtype).value_or(DType::Float32);
    if (!is_floating(dt)) throw TypeError("rand: dtype must be float32 or float64, got int64");
    return Tensor::uniform(shape_from(size, "rand: size"), 0.0, 1.0, nn::default_generator(), dt, d);
  });
}

}  // namespace zkynet::python
