// what() of the exception a test expects, for checking messages with Catch matchers:
//   CHECK_THAT(error_message<ShapeError>([&] { op::matmul(a, b); }), Contains("(2,3)"));
#pragma once

#include <string>

namespace zkynet::testing {

// what() of the E that f() throws; a marker text when it throws none.
template <class E, class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no exception of the expected type)";
}

}  // namespace zkynet::testing
