// Effects outside the graph that a compiled step replays (compile.h).
//
// A training step is more than its operators: back() adds gradients into the parameters, an
// optimizer updates them in place, zero_grad() refills gradients, a scheduler changes the
// learning rate. None of these is a node of the tape, so a replay of the tape alone would skip
// them. Library code with such an effect announces it here before doing its work:
//
//   void SGD::step() {
//     if (capturing_effects()) record_effect("SGD.step", [this] { step(); });
//     ...
//
// While a compiled call is being captured on this thread, record_effect() keeps `effect` in the
// schedule at the current position of the tape; every replay runs it there, reading its
// object's state at that time (an optimizer reads its learning rate then: a scheduler's change
// between steps is honoured). The capture itself runs the work as a dynamic call does. The
// objects an effect refers to must outlive the compiled call's schedules. Effects of user code
// (writing a value in place by hand, reading grad()) are not recorded: they happen once, at
// capture.
#pragma once

#include <functional>
#include <string>

namespace zkynet {

// True while a compiled call is being captured on this thread (one thread-local load).
bool capturing_effects();
// Records `effect` into the schedule being captured; a no-op when none is.
void record_effect(std::string name, std::function<void()> effect);

}  // namespace zkynet
