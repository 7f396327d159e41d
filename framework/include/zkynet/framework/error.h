// zkynet's exceptions. Every error names what failed: the operator, the operand shapes and,
// when raised inside a module call, the module path ("MLP.l1 (Linear): matmul ...").
//
//   try { model(x); } catch (const zkynet::ShapeError& e) { std::cerr << e.what(); }
#pragma once

#include <stdexcept>
#include <string>

namespace zkynet {

// Base of every zkynet error; what() carries the whole message.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}

  // True once the message starts with the module path where the error arose.
  bool has_location() const { return located_; }
  // Throws a copy of this error, of the same type, with "location: " prepended.
  [[noreturn]] virtual void rethrow_at(const std::string& location) const { throw at<Error>(location); }

 protected:
  template <class E>
  E at(const std::string& location) const {
    E located(location + ": " + what());
    located.located_ = true;
    return located;
  }

 private:
  bool located_ = false;
};

#define ZKYNET_ERROR_KIND(Kind)                                                   \
  class Kind : public Error {                                                    \
   public:                                                                       \
    explicit Kind(const std::string& message) : Error(message) {}                \
    [[noreturn]] void rethrow_at(const std::string& location) const override {   \
      throw at<Kind>(location);                                                  \
    }                                                                            \
  }

// Operand shapes that do not fit (Python: ValueError).
ZKYNET_ERROR_KIND(ShapeError);
// An operand of the wrong dtype or device, or a value of the wrong kind (Python: TypeError).
ZKYNET_ERROR_KIND(TypeError);
// An unknown name or an index out of range (Python: IndexError).
ZKYNET_ERROR_KIND(IndexError);
// A graph, module or input used in a way the framework does not allow (Python: RuntimeError).
ZKYNET_ERROR_KIND(UsageError);
// A device allocation that failed even after the allocator's cache was emptied; the message
// names the device, the bytes requested, in use, cached and free (Python: MemoryError).
ZKYNET_ERROR_KIND(OutOfMemoryError);

#undef ZKYNET_ERROR_KIND

// Host code reached memory on a device, or operands sit on two devices (Python: TypeError).
class DeviceError : public TypeError {
 public:
  explicit DeviceError(const std::string& message) : TypeError(message) {}
  [[noreturn]] void rethrow_at(const std::string& location) const override { throw at<DeviceError>(location); }
};

}  // namespace zkynet
