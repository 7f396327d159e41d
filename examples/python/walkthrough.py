"""zkynet's walkthrough in Python: SimpleModel f(x) = (x + w) x^2, its values, gradients and
Jacobians, the four composite models (weight sharing x input sharing), and their graphs.

    .venv/bin/python examples/python/walkthrough.py [--graphs zkynet-graphs]

Every number printed is also worked out by hand next to it: df/dx = 3x^2 + 2wx, df/dw = x^2.
"""
import argparse

import numpy as np

from zkynet.framework import cg, op
from zkynet.visual import plot_cg


class SimpleModel(cg.Module):
    """A rather simple function that represents:

    f(x,w) = (x+w)*x^2

    where x is an input and w is a parameter.
    """
    def __init__(self, w0=1):
        super().__init__(inputs=(cg.Variable("x"),),
                         params=(cg.Parameter("w", w0),))

    def call(self, x):
        a = op.add(x, self.param("w"))
        b = op.square(x)
        c = op.mult(a, b)
        return c


class CompositeModel_NoWeightSharing_DifferentInputs(cg.Module):
    """m1(x1) + m2(x2): two SimpleModels, two weights."""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),
                                 cg.Variable("x2")))
        self._m1 = SimpleModel()
        self._m2 = SimpleModel()

    def call(self, x1, x2):
        a = self._m1(x1)
        b = self._m2(x2)
        return op.add(a, b)


class CompositeModel_WeightSharing_DifferentInputs(cg.Module):
    """m1(x1) + m1(x2): one SimpleModel (w = 2) applied twice."""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),
                                 cg.Variable("x2")))
        self._m1 = SimpleModel(w0=2)

    def call(self, x1, x2):
        a = self._m1(x1)
        b = self._m1(x2)
        return op.add(a, b)


class CompositeModel_NoWeightSharing_SameInputs(cg.Module):
    """m1(x1) + m2(x1): two weights, one input."""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),))
        self._m1 = SimpleModel()
        self._m2 = SimpleModel()

    def call(self, x1):
        a = self._m1(x1)
        b = self._m2(x1)
        return op.add(a, b)


class CompositeModel_WeightSharing_SameInputs(cg.Module):
    """m1(x1) + m1(x1): one weight, one input."""
    def __init__(self):
        super().__init__(inputs=(cg.Variable("x1"),))
        self._m1 = SimpleModel()

    def call(self, x1):
        a = self._m1(x1)
        b = self._m1(x1)
        return op.add(a, b)


def show(label, value, by_hand=None):
    text = np.array2string(np.asarray(value), prefix=" " * 16)
    print(f"  {label:<13} {text}" + (f"    (by hand: {by_hand})" if by_hand is not None else ""))


def simple_model():
    print("SimpleModel f(x) = (x + w) * x^2, w = 1")
    m = SimpleModel()
    result = m(3)
    print(f"  m(3) grounds {result!r}")
    show("value", result.value, "(3 + 1) * 9 = 36")
    result.back()
    show("df/dw", result.grad(m.param("w")), "x^2 = 9")
    show("df/dx", result.grad(m.input("x")), "3x^2 + 2wx = 33")

    result1, result2 = m(3), m(3)
    print(f"  two calls, two graphs: call ids {result1.call_id} and {result2.call_id}, "
          f"result1 != result2: {result1 != result2}, roots differ: {result1.root != result2.root}")

    print("at x = [3, 4, 5]: a vector value and full Jacobians (output shape + input shape)")
    result = m(np.array([3., 4., 5.]))
    result.back()
    show("value", result.value, "[36, 80, 150]")
    show("df/dx", result.grad(m.input("x")), "diag(33, 56, 85)")
    show("df/dw", result.grad(m.param("w")), "[9, 16, 25]")

    print("at x = [[1, 2], [3, 4]]: the Jacobian df/dx has shape (2, 2, 2, 2)")
    result = m(np.array([[1., 2.], [3., 4.]]))
    result.back()
    jac = result.grad(m.input("x"))
    print(f"  df/dx shape   {jac.shape}")
    show("df_ij/dx_ij", np.einsum("ijij->ij", jac), "3x^2 + 2x = [[5, 16], [33, 56]]")
    print(f"  the other {jac.size - 4} entries are all 0: {bool(np.count_nonzero(jac) == 4)}")
    return m(3)


def composites():
    print("Composite models: weight sharing and input sharing")
    cases = []

    m = CompositeModel_NoWeightSharing_DifferentInputs()
    result = m(3, 4)
    result.back()
    print("NO weight sharing, NO input sharing: m1(x1) + m2(x2) at (3, 4)")
    show("value", result.value, "36 + 80 = 116")
    show("d/d m1.w", result.grad(m._m1.param("w")), "9")
    show("d/d m2.w", result.grad(m._m2.param("w")), "16")
    show("d/dx1, d/dx2", [result.grad(m.input("x1")), result.grad(m.input("x2"))], "33, 56")
    cases.append((result, "NoWeightSharing_DifferentInputs"))

    m = CompositeModel_WeightSharing_DifferentInputs()
    result = m(3, 3)
    result.back()
    print("YES weight sharing, NO input sharing: m1(x1) + m1(x2) at (3, 3), w = 2")
    show("value", result.value, "45 + 45 = 90")
    show("d/d m1.w", result.grad(m._m1.param("w")), "9 + 9 = 18 (both uses of w)")
    show("d/dx1, d/dx2", [result.grad(m.input("x1")), result.grad(m.input("x2"))], "39, 39")
    cases.append((result, "WeightSharing_DifferentInputs"))

    m = CompositeModel_NoWeightSharing_SameInputs()
    result = m(3)
    result.back()
    print("NO weight sharing, YES input sharing: m1(x1) + m2(x1) at 3")
    show("value", result.value, "36 + 36 = 72")
    show("d/d m1.w", result.grad(m._m1.param("w")), "9")
    show("d/d m2.w", result.grad(m._m2.param("w")), "9")
    show("d/dx1", result.grad(m.input("x1")), "33 + 33 = 66 (both uses of x1)")
    cases.append((result, "NoWeightSharing_SameInputs"))

    m = CompositeModel_WeightSharing_SameInputs()
    result = m(3)
    result.back()
    print("YES weight sharing, YES input sharing: m1(x1) + m1(x1) at 3")
    show("value", result.value, "72")
    show("d/d m1.w", result.grad(m._m1.param("w")), "18")
    show("d/dx1", result.grad(m.input("x1")), "66")
    print(f"  named_parameters: {[name for name, _ in m.named_parameters()]}")
    cases.append((result, "WeightSharing_SameInputs"))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", default="zkynet-graphs", help="where plot_cg writes the graphs")
    args = parser.parse_args()

    simple = simple_model()
    print()
    cases = composites()
    print()
    print(f"Graphs (Graphviz; one cluster per module invocation) under {args.graphs}/")
    for result, title in [(simple, "simple model")] + cases:
        for path in plot_cg(result.root, wait=2, title=title, directory=args.graphs):
            print(f"  wrote {path}")


if __name__ == "__main__":
    main()
