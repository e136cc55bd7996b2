"""W3: one SGD training step of an MLP (784-256-10, tanh, softmax cross-entropy, L2).

Batch 128, float32, learning rate 0.1, L2 weight 1e-4. A call runs the
forward pass, the gradient and the update of all four parameters; the first
call's loss and updated parameters are compared with a float64 NumPy step
from the same starting point.

tracejit appears twice: ``tracejit.function`` is the Theano form (shared
weights, ``tj.grad``, ``updates=``, integer labels), the primary one;
``tracejit`` is the traced form (``tj.compile`` of a plain NumPy step using
``tj.value_and_grad`` over a dict of parameters, one-hot labels).
W6 reuses these builders. On the GPU (``--device cuda``) the same steps run
with the parameters and the batch in device memory (``GPU_IMPLEMENTATIONS``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from benchmarks import gpu, peers, tracejit_api
from benchmarks.harness import Case, Impl

BATCH, INPUTS, HIDDEN, CLASSES = 128, 784, 256, 10
LEARNING_RATE, L2 = 0.1, 1e-4
PARAMETERS = ("W1", "b1", "W2", "b2")


def variants(quick: bool) -> list[str]:
    return ["float32"]


def row_max(logits):
    """Row maxima kept as a column (NumPy, JAX and tracejit spelling)."""
    return logits.max(axis=1, keepdims=True)


def loss_onehot(ns, params, X, Y, max_keepdims=row_max):
    """Cross-entropy with one-hot targets plus L2, for numpy, jax.numpy and torch.

    ``max_keepdims`` is the one spelling that differs (torch: ``amax``).
    """
    hidden = ns.tanh(X @ params["W1"] + params["b1"])
    logits = hidden @ params["W2"] + params["b2"]
    shifted = logits - max_keepdims(logits)
    log_sum = ns.log(ns.exp(shifted).sum(axis=1))
    picked = (Y * shifted).sum(axis=1)
    return ns.mean(log_sum - picked) + L2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())


def step_by_hand(params, X, Y):
    """The NumPy step with the hand-written gradient: the reference (in float64) and the NumPy peer."""
    W1, b1, W2, b2 = (params[k] for k in PARAMETERS)
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(sums[:, 0]) - (Y * shifted).sum(axis=1)) + L2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
    d_logits = (exps / sums - Y) / X.shape[0]
    d_hidden = (d_logits @ W2.T) * (1 - hidden * hidden)
    grads = {"W1": X.T @ d_hidden + 2 * L2 * W1, "b1": d_hidden.sum(axis=0),
             "W2": hidden.T @ d_logits + 2 * L2 * W2, "b2": d_logits.sum(axis=0)}
    return loss, {k: params[k] - LEARNING_RATE * grads[k] for k in PARAMETERS}


def setup(variant: str, quick: bool) -> Case:
    rng = np.random.default_rng(0)
    params = {
        "W1": (rng.standard_normal((INPUTS, HIDDEN)) / np.sqrt(INPUTS)).astype(variant),
        "b1": np.zeros(HIDDEN, dtype=variant),
        "W2": (rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN)).astype(variant),
        "b2": np.zeros(CLASSES, dtype=variant),
    }
    X = rng.random((BATCH, INPUTS)).astype(variant)
    labels = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    Y = np.eye(CLASSES, dtype=variant)[labels]
    inputs = {"params": params, "X": X, "labels": labels, "Y": Y}

    def reference():
        params64 = {k: v.astype(np.float64) for k, v in params.items()}
        loss, new = step_by_hand(params64, X.astype(np.float64), Y.astype(np.float64))
        return [loss, *(new[k] for k in PARAMETERS)]

    return Case(inputs, reference, dtype=variant, repeats=3 if quick else 9,
                min_sample_seconds=0.01 if quick else 0.1,
                description=f"batch {BATCH}, {INPUTS}-{HIDDEN}-{CLASSES}")


def _fresh_params(case: Case) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in case.inputs["params"].items()}


def _functional(step, params, *args, note: str = "", device: str = "", describe=None) -> Impl:
    """An Impl for a step that returns (loss, new params) and is fed its own output next time."""
    state = {"params": params}

    def call():
        loss, state["params"] = step(state["params"], *args)
        return loss, state["params"]

    def read(result):
        loss, new = result
        return [loss, *(new[k] for k in PARAMETERS)]

    return Impl(call, read=read, note=note, device=device, describe=describe)


def build_numpy(case: Case) -> Impl:
    return _functional(step_by_hand, _fresh_params(case), case.inputs["X"], case.inputs["Y"],
                       note="hand-written gradient")


def build_numba(case: Case) -> Impl:
    from benchmarks.workloads import mlp_numba
    dtype = np.dtype(case.dtype).type
    constants = (dtype(LEARNING_RATE), dtype(L2), dtype(1.0 / BATCH))

    def step(params, X, Y):
        loss, *new = mlp_numba.mlp_step(*(params[k] for k in PARAMETERS), X, Y, *constants)
        return loss, dict(zip(PARAMETERS, new))

    return _functional(step, _fresh_params(case), case.inputs["X"], case.inputs["Y"],
                       note="hand-written gradient, njit(cache=True)")


def build_jax(case: Case, gpu_device=None, device_name: str = "") -> Impl:
    """``gpu_device``: the JAX device to commit the inputs to (None: JAX's default, the CPU)."""
    jax, jnp = peers.import_jax()

    @jax.jit
    def step(params, X, Y):
        loss, grads = jax.value_and_grad(lambda p: loss_onehot(jnp, p, X, Y))(params)
        new = {k: params[k] - LEARNING_RATE * grads[k] for k in PARAMETERS}
        return loss, new

    def blocking_step(params, X, Y):
        loss, new = step(params, X, Y)
        jax.block_until_ready(new)
        return loss, new

    params = {k: jax.device_put(v, gpu_device) for k, v in _fresh_params(case).items()}
    return _functional(blocking_step, params, jax.device_put(case.inputs["X"], gpu_device),
                       jax.device_put(case.inputs["Y"], gpu_device), device=device_name)


def _torch_step(case: Case, compiled: bool, cuda: bool = False) -> Impl:
    """The autograd step; ``cuda``: tensors on the GPU and a synchronize ending each call."""
    if cuda:
        torch, device, device_name = gpu.torch_cuda()
    else:
        torch, device, device_name = peers.import_torch(), None, ""

    def tensor(host: np.ndarray):
        return torch.from_numpy(host) if device is None else gpu.torch_on_device(torch, host, device)

    params = {k: tensor(v).requires_grad_(True) for k, v in _fresh_params(case).items()}
    X, Y = tensor(case.inputs["X"]), tensor(case.inputs["Y"])

    def forward(W1, b1, W2, b2, X, Y):
        return loss_onehot(torch, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, X, Y,
                           max_keepdims=lambda logits: logits.amax(axis=1, keepdims=True))

    if compiled:
        forward = torch.compile(forward)
    ordered = [params[k] for k in PARAMETERS]

    def call():
        loss = forward(*ordered, X, Y)
        grads = torch.autograd.grad(loss, ordered)
        with torch.no_grad():
            for parameter, gradient in zip(ordered, grads):
                parameter.sub_(LEARNING_RATE * gradient)
        return loss

    if device is not None:
        call = gpu.synchronized(call, torch.cuda.synchronize)
    return Impl(call, read=lambda loss: [loss, *ordered],
                note="compiled forward, AOTAutograd backward" if compiled else "autograd",
                device=device_name)


def build_torch(case: Case) -> Impl:
    return _torch_step(case, compiled=False)


def build_torch_compile(case: Case) -> Impl:
    return _torch_step(case, compiled=True)


def _theano_style(case: Case, tensor, shared, grad, function, matrix, labels_vector,
                  on_device: "gpu.TracejitDevice | None" = None) -> Impl:
    """The Theano program both PyTensor and tracejit.function run: shared weights, updates.

    ``on_device``: the batch is put there once and each call waits for the
    device (``function`` must then compile for it; the shared weights live
    on the device after the first call).
    """
    params = {k: shared(v, name=k) for k, v in _fresh_params(case).items()}
    X, t = matrix("X"), labels_vector("t")
    hidden = tensor.tanh(X @ params["W1"] + params["b1"])
    logits = hidden @ params["W2"] + params["b2"]
    nll = tensor.mean(tensor.logsumexp(logits, axis=1) - logits[tensor.arange(t.shape[0]), t])
    cost = nll + L2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())
    ordered = [params[k] for k in PARAMETERS]
    grads = grad(cost, ordered)
    train = function([X, t], cost,
                     updates=[(p, p - LEARNING_RATE * g) for p, g in zip(ordered, grads)])
    X_value, labels = case.inputs["X"], case.inputs["labels"]
    if on_device is not None:
        X_value, labels = on_device.put(X_value), on_device.put(labels)
    call = lambda: train(X_value, labels)  # noqa: E731
    if on_device is not None:
        call = gpu.synchronized(call, on_device.synchronize)
    return Impl(call, read=lambda loss: [loss, *(p.get_value() for p in ordered)],
                note="shared weights + updates",
                device=on_device.name if on_device is not None else "",
                describe=(lambda: gpu.round_trips(train)) if on_device is not None else None)


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    pytensor.config.floatX = case.dtype  # so Python float constants do not upcast float32 to float64
    return _theano_style(case, pt, pytensor.shared, pytensor.grad, pytensor.function,
                         lambda name: pt.matrix(name, dtype=case.dtype), pt.lvector)


def build_tracejit_function(case: Case, on_device: "gpu.TracejitDevice | None" = None) -> Impl:
    tj = tracejit_api.tracejit()
    import tracejit.tensor as T
    grad = tracejit_api.transform("grad")
    with tj.config.change(device="cuda") if on_device is not None else contextlib.nullcontext():
        return _theano_style(case, T, tj.shared, grad, tj.function,
                             lambda name: T.matrix(name, dtype=case.dtype), T.lvector,
                             on_device=on_device)


def _tracejit_step(device: str | None):
    """The traced step (tj.compile of value_and_grad over the parameter dict) for ``device``
    (None: ``config.device`` at call time)."""
    compile_ = tracejit_api.compile_function()
    value_and_grad = tracejit_api.transform("value_and_grad")

    def step(params, X, Y):
        loss, grads = value_and_grad(lambda p: loss_onehot(np, p, X, Y))(params)
        return loss, {k: params[k] - LEARNING_RATE * grads[k] for k in PARAMETERS}

    return compile_(step, device=device)


def build_tracejit(case: Case) -> Impl:
    return _functional(_tracejit_step(None), _fresh_params(case), case.inputs["X"],
                       case.inputs["Y"], note="tj.compile + tj.value_and_grad")


# -- on the GPU (--device cuda): parameters and batch on the device, every call waits for it -------

def build_tracejit_cuda(case: Case) -> Impl:
    device = gpu.TracejitDevice()
    compiled = _tracejit_step("cuda")
    params = {k: device.put(v) for k, v in _fresh_params(case).items()}
    X, Y = device.put(case.inputs["X"]), device.put(case.inputs["Y"])
    return _functional(gpu.synchronized(compiled, device.synchronize), params, X, Y,
                       note="tj.compile + tj.value_and_grad", device=device.name,
                       describe=lambda: gpu.compiled_round_trips(compiled, params, X, Y))


def build_jax_gpu(case: Case) -> Impl:
    _, _, device, name = gpu.jax_gpu()
    return build_jax(case, gpu_device=device, device_name=name)


GPU_IMPLEMENTATIONS = {
    "tracejit.function": lambda case: build_tracejit_function(case, on_device=gpu.TracejitDevice()),
    "tracejit": build_tracejit_cuda,
    "numpy": build_numpy,  # the CPU baseline row
    "jax": build_jax_gpu,
    "torch": lambda case: _torch_step(case, compiled=False, cuda=True),
    "torch.compile": lambda case: _torch_step(case, compiled=True, cuda=True),
}


IMPLEMENTATIONS = {
    "tracejit.function": build_tracejit_function,
    "tracejit": build_tracejit,
    "numpy": build_numpy,
    "numba": build_numba,
    "jax": build_jax,
    "pytensor": build_pytensor,
    "torch": build_torch,
    "torch.compile": build_torch_compile,
}
