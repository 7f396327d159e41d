// zkynet errors as Python exceptions: ShapeError (a ValueError), DTypeError (a TypeError),
// IndexError (an IndexError) and UsageError (a RuntimeError), with the C++ message.
#pragma once

#include <zkynet/framework/error.h>

#include <pybind11/pybind11.h>

namespace zkynet::python {

namespace py = pybind11;

// Creates the exception types in `m` and translates C++ errors into them.
void init_errors(py::module_& m);

// A zkynet error raised by Python code inside a module's call() that has no module path yet
// comes back as the C++ error, so the module call in progress can prefix its path (as for
// C++ modules). Returns when `error` is anything else.
void rethrow_unlocated(py::error_already_set& error);

}  // namespace zkynet::python
