"""verify_grad on every differentiable op of SPEC section 4, over several shapes.

Inputs are drawn away from the points where an op is not differentiable
(kinks of abs/relu/max, discontinuities of mod, ties of maximum) so that
central differences are meaningful there.
"""

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.testing import verify_grad

MODE = "FAST_COMPILE"


def rand(shape, low=-1.0, high=1.0, seed=0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def away_from_zero(shape, seed=0):
    x = rand(shape, 0.2, 1.0, seed)
    signs = np.where(np.random.default_rng(seed + 1).random(shape) < 0.5, -1.0, 1.0)
    return x * signs


def check(fn, *args, **kwargs):
    kwargs.setdefault("mode", MODE)
    verify_grad(fn, list(args), **kwargs)


# -- elementwise ------------------------------------------------------------------------------

UNARY = {
    "neg": (T.neg, rand),
    "abs": (T.abs, away_from_zero),
    "exp": (T.exp, rand),
    "log": (T.log, lambda s, seed=0: rand(s, 0.5, 2.0, seed)),
    "log1p": (T.log1p, lambda s, seed=0: rand(s, -0.5, 2.0, seed)),
    "expm1": (T.expm1, rand),
    "log2": (T.log2, lambda s, seed=0: rand(s, 0.5, 2.0, seed)),
    "log10": (T.log10, lambda s, seed=0: rand(s, 0.5, 2.0, seed)),
    "sqrt": (T.sqrt, lambda s, seed=0: rand(s, 0.5, 2.0, seed)),
    "square": (T.square, rand),
    "sin": (T.sin, rand),
    "cos": (T.cos, rand),
    "tan": (T.tan, rand),
    "arcsin": (T.arcsin, lambda s, seed=0: rand(s, -0.8, 0.8, seed)),
    "arccos": (T.arccos, lambda s, seed=0: rand(s, -0.8, 0.8, seed)),
    "arctan": (T.arctan, rand),
    "sinh": (T.sinh, rand),
    "cosh": (T.cosh, rand),
    "tanh": (T.tanh, rand),
    "erf": (T.erf, rand),
    "sigmoid": (T.sigmoid, lambda s, seed=0: rand(s, -4, 4, seed)),
    "softplus": (T.softplus, lambda s, seed=0: rand(s, -4, 4, seed)),
    "relu": (T.relu, away_from_zero),
    "identity": (lambda x: x.copy(), rand),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_unary_elementwise(name, shape):
    fn, draw = UNARY[name]
    check(fn, draw(shape))


BINARY = {
    "add": (lambda x, y: x + y, rand, rand),
    "sub": (lambda x, y: x - y, rand, rand),
    "mul": (lambda x, y: x * y, rand, rand),
    "true_divide": (lambda x, y: x / y, rand, away_from_zero),
    "mod": (lambda x, y: x % y, lambda s, seed=0: rand(s, 0.1, 0.9, seed),
            lambda s, seed=0: rand(s, 1.5, 2.0, seed)),
    "power": (lambda x, y: x ** y, lambda s, seed=0: rand(s, 0.5, 2.0, seed), rand),
    "maximum": (T.maximum, rand, lambda s, seed=0: rand(s, -1, 1, seed + 7)),
    "minimum": (T.minimum, rand, lambda s, seed=0: rand(s, -1, 1, seed + 7)),
}

BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES)
def test_binary_elementwise_with_broadcasting(name, shapes):
    fn, draw_x, draw_y = BINARY[name]
    check(fn, draw_x(shapes[0], seed=1), draw_y(shapes[1], seed=2))


@pytest.mark.parametrize("name", ["add", "mul", "maximum", "true_divide"])
def test_binary_runtime_broadcasting_of_unknown_lengths(name):
    # (None, None) inputs holding length-1 dimensions: the interpreter
    # broadcasts them as NumPy does, and the gradient must sum them back.
    fn, draw_x, draw_y = BINARY[name]
    check(fn, draw_x((3, 1), seed=1), draw_y((1, 4), seed=2), static_shapes="unknown")
    check(fn, draw_x((4,), seed=1), draw_y((2, 1), seed=2), static_shapes="unknown")


def test_power_with_constant_exponents():
    check(lambda x: x ** 3, rand((4,)))
    check(lambda x: 2.0 ** x, rand((4,)))
    check(lambda x: x ** 0.5, rand((4,), 0.5, 2.0))


def test_variadic_add_and_mul():
    check(lambda a, b, c: T.add(a, b, c), rand((3,)), rand((2, 3), seed=1), rand((), seed=2))
    check(lambda a, b, c: T.mul(a, b, c), rand((3,)), rand((2, 3), seed=1), rand((), seed=2))


def test_clip_and_where():
    x = np.array([-2.0, -0.5, 0.3, 0.7, 2.5])
    check(lambda v: T.clip(v, -1.0, 1.0), x)
    check(lambda v, lo, hi: T.clip(v, lo, hi), x, np.array(-1.0), np.array(1.0))
    check(lambda v: T.clip(v, a_min=0.0), x)
    check(lambda a, b: T.where(a > 0, a * 2, b), rand((3, 4)), rand((4,), seed=3))
    check(lambda a: T.switch(a > 0, T.exp(a), 0.0), rand((5,)))


def test_cast_and_second():
    check(lambda a: T.cast(a, "float32") * 2, rand((4,)), eps=0.1, rtol=1e-3)
    check(lambda a, b: T.second(a, b), rand((3, 2)), rand((2,), seed=4))
    check(lambda a: a * T.ones_like(a) + T.zeros_like(a), rand((3,)))


# -- reductions --------------------------------------------------------------------------------

AXES = [None, 0, 1, (0, 2), -1]


@pytest.mark.parametrize("kind", ["sum", "mean", "prod", "max", "min", "var", "std", "logsumexp"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(kind, axis, keepdims):
    x = rand((2, 3, 4), 0.5, 1.5, seed=5)
    fn = getattr(T, kind)
    check(lambda v: fn(v, axis=axis, keepdims=keepdims), x)


def test_reductions_of_vectors_and_broadcast_dims():
    check(lambda v: v.sum(), rand((5,)))
    check(lambda v: v.max(axis=0), rand((1, 4)))
    check(lambda v: T.prod(v, axis=1), rand((3, 1)))


def test_prod_gradient_is_exact_at_zeros():
    x = T.dvector("x")
    g = tj.function([x], tj.grad(T.prod(x), x), mode=MODE)
    np.testing.assert_allclose(g([2.0, 0.0, 3.0]), [0.0, 6.0, 0.0])
    np.testing.assert_allclose(g([0.0, 0.0, 3.0]), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g([2.0, 5.0, 3.0]), [15.0, 6.0, 10.0])


def test_max_ties_share_the_gradient():
    x = T.dmatrix("x")
    g = tj.function([x], tj.grad(T.max(x, axis=1).sum(), x), mode=MODE)
    out = g([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    np.testing.assert_allclose(out, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


# -- linear algebra ----------------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [
    ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
    ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 2)),
])
def test_matmul(shapes):
    check(lambda a, b: a @ b, rand(shapes[0], seed=1), rand(shapes[1], seed=2))


def test_matmul_batch_broadcasting_of_unknown_lengths():
    check(lambda a, b: T.matmul(a, b), rand((1, 3, 4), seed=1), rand((2, 4, 2), seed=2),
          static_shapes="unknown")


def test_dot_outer_tensordot():
    check(T.dot, rand((3, 4), seed=1), rand((4, 2), seed=2))
    check(T.dot, rand((2, 3, 4), seed=1), rand((5, 4, 2), seed=2))
    check(T.dot, rand((), seed=1), rand((3,), seed=2))
    check(T.outer, rand((3,), seed=1), rand((4,), seed=2))
    check(lambda a, b: T.tensordot(a, b, 2), rand((2, 3, 4), seed=1), rand((3, 4, 5), seed=2))
    check(lambda a, b: T.tensordot(a, b, ([0, 2], [2, 0])), rand((2, 3, 4), seed=1),
          rand((4, 5, 2), seed=2))
    check(lambda a, b: T.tensordot(a, b, 0), rand((2,), seed=1), rand((3,), seed=2))


# -- shape operations ---------------------------------------------------------------------------

def test_shape_operations():
    x = rand((2, 3, 4))
    check(lambda v: v.dimshuffle(2, "x", 0, 1), x)
    check(lambda v: v.transpose(1, 0, 2), x)
    check(lambda v: v.T, x)
    check(lambda v: v.reshape((6, 4)), x)
    check(lambda v: v.reshape((4, -1)), x)
    check(lambda v: T.flatten(v), x)
    check(lambda v: T.flatten(v, 2), x)
    check(lambda v: T.expand_dims(v, 1), x)
    check(lambda v: T.squeeze(v), rand((2, 1, 3)))
    check(lambda v: v.dimshuffle(0, 2), rand((2, 1, 3)))
    check(lambda v: T.broadcast_to(v, (3, 2, 4)), rand((2, 1)))
    check(lambda v: T.alloc(v, 2, 3, 4), rand((3, 1)))
    check(lambda v: T.swapaxes(v, 0, 2), x)


def test_concatenate_and_stack():
    check(lambda a, b: T.concatenate([a, b], axis=0), rand((2, 3), seed=1), rand((4, 3), seed=2))
    check(lambda a, b, c: T.concatenate([a, b, c], axis=1), rand((2, 3), seed=1),
          rand((2, 1), seed=2), rand((2, 2), seed=3))
    check(lambda a, b: T.stack([a, b]), rand((3,), seed=1), rand((3,), seed=2))
    check(lambda a, b: T.stack([a, b], axis=1), rand((2, 3), seed=1), rand((2, 3), seed=2))
    check(lambda a, b: T.stack([a, b]), rand((), seed=1), rand((), seed=2))
    check(lambda a, b: T.concatenate([a, b]), rand((3,), seed=1), rand((2,), seed=2),
          static_shapes="full")


# -- indexing ----------------------------------------------------------------------------------

def test_basic_indexing():
    x = rand((4, 5))
    check(lambda v: v[1], x)
    check(lambda v: v[-1, 2], x)
    check(lambda v: v[1:3], x)
    check(lambda v: v[::-1, ::2], x)
    check(lambda v: v[None, :, 1:], x)
    check(lambda v: v[..., 3], x)


def test_integer_array_indexing():
    x = rand((4, 5))
    rows = np.array([0, 2, 2, 3])
    check(lambda v: v[rows], x)
    check(lambda v: v[:, np.array([1, 1, 4])], x)
    check(lambda v: v[np.array([0, 1, 3]), np.array([4, 4, 0])], x)
    check(lambda v, i: v[i], x, np.array([[0, 3], [3, 3]]))


def test_log_probability_lookup():
    # The idiom of SPEC section 3: log_p[T.arange(n), t].
    def nll(scores, labels):
        log_p = T.log(T.softmax(scores))
        return -T.mean(log_p[T.arange(labels.shape[0]), labels])
    check(nll, rand((4, 3)), np.array([0, 2, 1, 2]))


def test_set_and_inc_subtensor():
    x = rand((4, 5), seed=1)
    check(lambda a, b: T.set_subtensor(a[1:3], b), x, rand((2, 5), seed=2))
    check(lambda a, b: T.set_subtensor(a[1:3], b), x, rand((5,), seed=2))
    check(lambda a, b: T.inc_subtensor(a[:, 2], b), x, rand((4,), seed=2))
    check(lambda a, b: T.inc_subtensor(a[:, 2], b), x, rand((), seed=2))
    check(lambda a, b: T.inc_subtensor(a[np.array([0, 0, 3])], b), x, rand((3, 5), seed=2))
    check(lambda a, b: T.set_subtensor(a[np.array([0, 3])], b), x, rand((2, 5), seed=2))
    check(lambda a, b: T.inc_subtensor(a[1:3], b), x, rand((1, 5), seed=2),
          static_shapes="unknown")


# -- neural-network helpers --------------------------------------------------------------------

def test_softmax_family():
    x = rand((3, 4), -2, 2)
    check(T.softmax, x)
    check(lambda v: T.softmax(v, axis=0), x)
    check(T.log_softmax, x)
    check(lambda v: T.log_softmax(v, axis=0), x)
    check(T.softmax, rand((5,)))
    check(lambda v: T.logsumexp(v, axis=1), x)


def test_cross_entropies():
    scores = rand((4, 3), -2, 2)
    one_hot = np.eye(3)[[0, 2, 1, 1]]
    check(lambda s, t: T.categorical_crossentropy(T.softmax(s), t), scores, one_hot)
    check(lambda s, t: T.categorical_crossentropy(T.softmax(s), t), scores, np.array([0, 2, 1, 1]))
    target = np.random.default_rng(3).random((5,))
    check(lambda o, t: T.binary_crossentropy(T.sigmoid(o), t), rand((5,), -2, 2), target)
    check(lambda o: T.binary_crossentropy(o, 0.3), rand((5,), 0.2, 0.8))


@pytest.mark.parametrize("border_mode", ["valid", "full", "half", (1, 2)])
@pytest.mark.parametrize("subsample", [(1, 1), (2, 3)])
@pytest.mark.parametrize("filter_flip", [True, False])
def test_conv2d(border_mode, subsample, filter_flip):
    x, w = rand((2, 3, 7, 6), seed=1), rand((2, 3, 3, 3), seed=2)
    fn = lambda a, b: T.conv2d(a, b, border_mode=border_mode, subsample=subsample,
                               filter_flip=filter_flip)
    check(fn, x, w)
    check(fn, x, w, static_shapes="full")


def test_conv2d_padding_beyond_the_kernel_and_rectangular_kernels():
    x, w = rand((1, 2, 6, 5), seed=1), rand((3, 2, 2, 3), seed=2)
    for static in ("broadcastable", "full"):
        check(lambda a, b: T.conv2d(a, b, border_mode=(3, 1), subsample=(2, 1)), x, w,
              static_shapes=static)
        check(lambda a, b: T.conv2d(a, b, border_mode="full", subsample=(1, 2)), x, w,
              static_shapes=static)
