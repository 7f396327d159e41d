#include "errors.h"

namespace zkynet::python {
namespace {

struct ErrorTypes {
  PyObject* shape = nullptr;  // ValueError
  PyObject* type = nullptr;   // TypeError
  PyObject* index = nullptr;  // IndexError
  PyObject* usage = nullptr;  // RuntimeError
  PyObject* memory = nullptr;  // MemoryError
};

ErrorTypes& types() {
  static ErrorTypes t;
  return t;
}

void raise(PyObject* type, const Error& e) {
  py::object error = py::reinterpret_borrow<py::object>(type)(e.what());
  error.attr("zkynet_located") = e.has_location();
  PyErr_SetObject(type, error.ptr());
}

}  // namespace

void init_errors(py::module_& m) {
  auto make = [&](const char* name, PyObject* base, const char* doc) {
    PyObject* type = PyErr_NewExceptionWithDoc((std::string("zkynet.") + name).c_str(), doc, base, nullptr);
    m.add_object(name, py::reinterpret_borrow<py::object>(type));
    return type;
  };
  auto& t = types();
  t.shape = make("ShapeError", PyExc_ValueError, "Operand shapes that do not fit.");
  t.type = make("DTypeError", PyExc_TypeError, "An operand of the wrong dtype or kind.");
  t.index = make("IndexError", PyExc_IndexError, "An unknown name or an index out of range.");
  t.usage = make("UsageError", PyExc_RuntimeError, "A graph, module or input used in a way zkynet does not allow.");
  t.memory = make("OutOfMemoryError", PyExc_MemoryError,
                  "A device allocation that failed even after zkynet's cache was emptied.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ShapeError& e) {
      raise(types().shape, e);
    } catch (const TypeError& e) {
      raise(types().type, e);
    } catch (const IndexError& e) {
      raise(types().index, e);
    } catch (const OutOfMemoryError& e) {
      raise(types().memory, e);
    } catch (const Error& e) {
      raise(types().usage, e);
    }
  });
}

void rethrow_unlocated(py::error_already_set& error) {
  const auto& t = types();
  const py::object value = error.value();
  if (py::hasattr(value, "zkynet_located") && value.attr("zkynet_located").cast<bool>()) return;
  const std::string message = py::str(value);
  if (error.matches(t.shape)) throw ShapeError(message);
  if (error.matches(t.type)) throw TypeError(message);
  if (error.matches(t.index)) throw IndexError(message);
  if (error.matches(t.usage)) throw UsageError(message);
  if (error.matches(t.memory)) throw OutOfMemoryError(message);
}

}  // namespace zkynet::python
