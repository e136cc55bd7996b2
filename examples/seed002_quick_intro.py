"""Every example of "Theano Quick Intro" (seed 002), written for tracejit.

Run it: ``python examples/seed002_quick_intro.py``. The post's points: a
graph links variables before any number is given; a function applies
numbers to it; shared variables and updates carry state; variables are
strongly typed; and printing a variable shows the graph, not a value.
"""

from __future__ import annotations


import tracejit as tj
import tracejit.tensor as T


def the_graph():
    """x and y are declared, z is an expression of them: nothing is computed yet."""
    x = T.dmatrix("x")
    y = T.dmatrix("y")
    z = x + y
    print("z.owner.op:", z.owner.op, "| z.owner.inputs:", z.owner.inputs)
    # Evaluating z on numbers (4 and 1) needs a function.
    add = tj.function([x, y], z)
    result = add([[4]], [[1]])
    print("z at x=4, y=1:", result)
    return z, result


def y_minus_x_squared():
    """y = x^2; y - x^2 is zero for every x, which the graph knows without numbers."""
    x = T.dscalar("x")
    y = x ** 2
    difference = y - x ** 2
    f = tj.function([x], difference)
    values = [float(f(v)) for v in (-3.0, 0.5, 7.0)]
    print("y - x**2 at -3, 0.5, 7:", values)
    tj.debugprint(f)
    return values


def logistic_function():
    x = T.dmatrix("x")
    sigmoid = 1 / (1 + T.exp(-x))
    logistic = tj.function([x], sigmoid)
    example = [[0, 1], [-1, -2]]
    result = logistic(example)
    print(repr(result))
    return result


def default_values_with_in():
    """Theano's Param, here tj.In: an argument with a default value and a name."""
    x, y = T.dscalar("x"), T.dscalar("y")
    z = x + y
    f = tj.function([x, tj.In(y, value=1)], z)
    results = (f(33), f(33, 2), f(33, y=0.5))
    print("f(33), f(33, 2), f(33, y=0.5):", *results)
    return results


def shared_variables_and_updates():
    """The accumulator: state lives in a shared variable, updates change it after each call."""
    state = tj.shared(0)
    inc = T.iscalar("inc")
    accumulator = tj.function([inc], state, updates=[(state, state + inc)])
    returned = [int(accumulator(1)), int(accumulator(300))]
    print("accumulator(1), accumulator(300) returned", returned,
          "| state:", state.get_value())
    state.set_value(-1)
    accumulator(3)
    print("after set_value(-1) and accumulator(3):", state.get_value())
    decrementor = tj.function([inc], state, updates=[(state, state - inc)])
    decrementor(2)
    print("after decrementor(2):", state.get_value())
    return returned, int(state.get_value())


def fully_typed_constructors():
    """Names say dimensionality and dtype: b/w/i/l/f/d + scalar/vector/matrix/tensor3/tensor4."""
    table = {}
    for prefix in "bwilfd":
        for kind in ("scalar", "vector", "matrix", "tensor3", "tensor4"):
            variable = getattr(T, prefix + kind)(prefix + kind)
            table[prefix + kind] = (variable.dtype, variable.ndim)
    for name in ("iscalar", "fvector", "dmatrix", "btensor3", "ltensor4"):
        print(f"T.{name}: dtype {table[name][0]}, {table[name][1]} dimensions")
    return table


def readable_errors():
    """A wrong input says which input and what is wrong, not a C traceback."""
    x = T.dmatrix("x")
    logistic = tj.function([x], 1 / (1 + T.exp(-x)))
    try:
        logistic([0.0, 1.0])  # a vector where a matrix is expected
    except TypeError as error:
        print("TypeError:", error)
        return error
    raise AssertionError("the wrong input was accepted")


def printing_variables():
    """print() shows the graph, not a value: ask for the value with eval()."""
    x = T.dmatrix("x")
    sigmoid = 1 / (1 + T.exp(-x))
    print("print(sigmoid):", sigmoid)
    print("pp(sigmoid):", tj.printing.pp(sigmoid))
    value = sigmoid.eval({x: [[0.0]]})
    print("sigmoid.eval({x: [[0.]]}):", value)
    return value


SECTIONS = [the_graph, y_minus_x_squared, logistic_function, default_values_with_in,
            shared_variables_and_updates, fully_typed_constructors, readable_errors,
            printing_variables]


def main() -> None:
    for section in SECTIONS:
        print(f"\n== {section.__name__} ==")
        section()


if __name__ == "__main__":
    main()
