"""The text every CUDA module starts with: types, the tj_* helpers, block reductions.

The helpers are the C backend's own source text (tracejit/codegen/c_prelude.py),
with ``static inline`` turned into ``TJ_FN`` (``__host__ __device__``), so
the two backends share one definition of NumPy's semantics (integer
division by zero, ``npy_divmod``, NaN-propagating maximum, float to integer
conversion...). C11's ``_Generic`` has no C++ equivalent; each generic
helper becomes a set of C++ overloads forwarding to the per-dtype functions.

The same text compiles three ways:

- nvcc (the standard headers are there);
- NVRTC (``__CUDACC_RTC__``: no standard headers, so the fixed-width types
  and the limits macros are defined here; math functions are built in);
- g++ for the host shim (``TJ_HOST_SHIM``: ``__device__`` & co. are empty,
  thread indices and warp shuffles are emulated, see tracejit/cuda/shim.py).
"""

from __future__ import annotations

import functools

from tracejit.codegen import c_prelude

_INTS = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
_FLOATS = ["float32", "float64"]
_NUMBERS = _INTS + _FLOATS

# name, arity, dtypes: the same table as c_prelude._generics().
_GENERIC_HELPERS = [
    ("tj_floor_divide", 2, _NUMBERS),
    ("tj_mod", 2, _NUMBERS),
    ("tj_abs", 1, _NUMBERS + ["bool"]),
    ("tj_sign", 1, _NUMBERS),
    ("tj_power", 3, _NUMBERS),
    ("tj_maximum", 2, _NUMBERS + ["bool"]),
    ("tj_minimum", 2, _NUMBERS + ["bool"]),
    ("tj_round", 1, _NUMBERS + ["bool"]),
    ("tj_invert", 1, _INTS + ["bool"]),
    ("tj_isnan", 1, _NUMBERS + ["bool"]),
    ("tj_isinf", 1, _NUMBERS + ["bool"]),
    ("tj_sigmoid", 1, _FLOATS),
    ("tj_softplus", 1, _FLOATS),
    ("tj_floor", 1, _NUMBERS + ["bool"]),
    ("tj_ceil", 1, _NUMBERS + ["bool"]),
]

_TYPES = """\
#if defined(TJ_HOST_SHIM)
#include <stdint.h>
#include <math.h>
#elif defined(__CUDACC_RTC__)
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#else
#include <stdint.h>
#include <math.h>
#endif
#ifndef INT64_C
#define INT64_C(c) c ## LL
#define UINT64_C(c) c ## ULL
#endif
#ifndef INT8_MIN
#define INT8_MIN (-128)
#define INT8_MAX 127
#define INT16_MIN (-32768)
#define INT16_MAX 32767
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define INT64_MIN (-INT64_C(9223372036854775807) - 1)
#define INT64_MAX INT64_C(9223372036854775807)
#endif

typedef bool bool_t;
typedef float float32_t;
typedef double float64_t;

#ifdef TJ_HOST_SHIM
#define TJ_FN inline
#else
#define TJ_FN __host__ __device__ __forceinline__
#endif
"""

_CLIP_RELU = """\
/* NumPy's clip keeps x on ties (clip(-0.0, 0.0, 1.0) is -0.0), unlike maximum. */
#define tj_clip(x, lo, hi) tj_clip_upper(tj_clip_lower((x), (lo)), (hi))
#define tj_clip_lower(x, lo) (((x) >= (lo) || (x) != (x)) ? (x) : (lo))
#define tj_clip_upper(x, hi) (((x) <= (hi) || (x) != (x)) ? (x) : (hi))
template <class T> TJ_FN T tj_relu(T x) { return tj_maximum(x, (T)0); }
"""

# Block reductions: a warp-shuffle tree inside each warp, then the warps'
# partial results through shared memory. Any block size works: lanes past
# the block's end are left out of the shuffle mask and their (undefined)
# values are never combined.
_BLOCK_REDUCE = """\
__device__ __forceinline__ float tj_shfl_down(unsigned mask, float v, int offset) {
    return __shfl_down_sync(mask, v, offset);
}
__device__ __forceinline__ double tj_shfl_down(unsigned mask, double v, int offset) {
    return __shfl_down_sync(mask, v, offset);
}
/* Integers and bools travel as int or long long (a bit-preserving round trip). */
template <class T> __device__ __forceinline__ T tj_shfl_down(unsigned mask, T v, int offset) {
    if (sizeof(T) == 8) return (T)__shfl_down_sync(mask, (long long)v, offset);
    return (T)__shfl_down_sync(mask, (int)v, offset);
}

/* Combine `value` over the first `active` lanes of the calling warp; lane 0 gets the result. */
template <class T, class Combine>
__device__ __forceinline__ T tj_warp_reduce(T value, unsigned active, Combine combine) {
    const unsigned lane = threadIdx.x % 32u;
    const unsigned mask = active >= 32u ? 0xffffffffu : ((1u << active) - 1u);
    for (unsigned offset = 16; offset > 0; offset /= 2) {
        const T other = tj_shfl_down(mask, value, (int)offset);
        if (lane + offset < active) value = combine(value, other);
    }
    return value;
}

/* Combine `value` over the whole block; thread 0 gets the result. Every
   thread of the block must call it (it synchronizes the block). */
template <class T, class Combine>
__device__ __forceinline__ T tj_block_reduce(T value, T identity, T *partials,
                                                    Combine combine) {
    const unsigned lane = threadIdx.x % 32u, warp = threadIdx.x / 32u;
    const unsigned warps = (blockDim.x + 31u) / 32u;
    const unsigned in_warp = blockDim.x - warp * 32u;
    value = tj_warp_reduce(value, in_warp < 32u ? in_warp : 32u, combine);
    if (warps == 1) return value;
    if (lane == 0) partials[warp] = value;
    __syncthreads();
    if (warp == 0) {
        value = lane < warps ? partials[lane] : identity;
        value = tj_warp_reduce(value, blockDim.x < 32u ? blockDim.x : 32u, combine);
    }
    __syncthreads();  /* `partials` may be reused by the caller's next round */
    return value;
}
"""


def _overloads() -> str:
    """C++ overloads standing in for the C prelude's _Generic macros."""
    lines = []
    for name, arity, dtypes in _GENERIC_HELPERS:
        for dtype in dtypes:
            ctype = c_prelude.C_TYPES[dtype]
            if name == "tj_power":
                params, args = f"{ctype} a0, {ctype} a1, int *a2", "a0, a1, a2"
            else:
                params = ", ".join(f"{ctype} a{i}" for i in range(arity))
                args = ", ".join(f"a{i}" for i in range(arity))
            lines.append(f"TJ_FN auto {name}({params}) {{ return {name}_{dtype}({args}); }}")
    return "\n".join(lines)


def _shared_helpers() -> str:
    """The C backend's helper functions, marked for both host and device."""
    text = "".join([c_prelude._integer_helpers(), c_prelude._float_helpers(),
                    c_prelude._bool_helpers(), c_prelude._float_to_integer_casts()])
    text = text.replace("static inline ", "TJ_FN ")
    # An integer 0 would pick the host-only std::copysign template under nvcc.
    return text.replace("copysign(0, ", "copysign(0.0, ").replace("copysignf(0, ", "copysignf(0.0f, ")


# The softmax row kernels' body (tracejit/cuda/rows.py), templated on the
# element and accumulator types; each module instantiates the ones it uses.
_SOFTMAX_ROWS = """\
template <class T, class Acc>
__device__ __forceinline__ void tj_softmax_rows(char *out, const char *in, int64_t rows,
                                                int64_t n, int log_output) {
    __shared__ Acc partials[32];
    __shared__ Acc row_shift, row_sum;
    const auto nan_max = [](Acc a, Acc b) -> Acc {
        return a != a ? a : (b != b ? b : (a > b ? a : b));
    };
    const auto add = [](Acc a, Acc b) -> Acc { return a + b; };
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *x = (const T *)in + row * n;
        T *y = (T *)out + row * n;
        Acc m = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = nan_max(m, (Acc)x[j]);
        m = tj_block_reduce(m, (Acc)-INFINITY, partials, nan_max);
        if (threadIdx.x == 0) row_shift = isinf(m) ? (Acc)0 : m;
        __syncthreads();
        const T shift = (T)row_shift;
        Acc s = 0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += (Acc)exp((T)(x[j] - shift));
        s = tj_block_reduce(s, (Acc)0, partials, add);
        if (threadIdx.x == 0) row_sum = s;
        __syncthreads();
        const Acc total = row_sum;
        if (log_output) {
            const T log_total = (T)log(total);
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
                y[j] = (T)(x[j] - shift) - log_total;
        } else {
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
                y[j] = (T)((Acc)exp((T)(x[j] - shift)) / total);
        }
        __syncthreads();  /* row_shift and row_sum are rewritten for the next row */
    }
}
"""


# argmax/argmin rows (tracejit/cuda/argbest.py): NumPy's first extreme, and the
# first NaN for floats. Each thread scans its strided share of a row in index
# order; thread 0 then takes the best of the threads' candidates.
_ARG_ROWS = """\
template <class T> __device__ __forceinline__ bool tj_arg_nan(T) { return false; }
__device__ __forceinline__ bool tj_arg_nan(float v) { return v != v; }
__device__ __forceinline__ bool tj_arg_nan(double v) { return v != v; }

/* Whether (v, i) is a better answer than (best, at) for argmax (MAX) or argmin. */
template <class T, bool MAX>
__device__ __forceinline__ bool tj_arg_beats(T v, int64_t i, T best, int64_t at) {
    if (at < 0) return true;
    if (tj_arg_nan(best)) return tj_arg_nan(v) && i < at;
    if (tj_arg_nan(v)) return true;
    if (v == best) return i < at;
    return MAX ? v > best : v < best;
}

/* Blocks of at most 1024 threads. */
template <class T, bool MAX>
__device__ __forceinline__ void tj_arg_rows(char *out, const char *in, int64_t rows,
                                            int64_t n) {
    __shared__ T candidates[1024];
    __shared__ int64_t positions[1024];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *x = (const T *)in + row * n;
        T best = T();
        int64_t at = -1;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
            if (tj_arg_beats<T, MAX>(x[j], j, best, at)) { best = x[j]; at = j; }
        candidates[threadIdx.x] = best;
        positions[threadIdx.x] = at;
        __syncthreads();
        if (threadIdx.x == 0) {
            for (unsigned t = 1; t < blockDim.x; t++)
                if (positions[t] >= 0 &&
                    tj_arg_beats<T, MAX>(candidates[t], positions[t], best, at)) {
                    best = candidates[t];
                    at = positions[t];
                }
            ((int64_t *)out)[row] = at;
        }
        __syncthreads();  /* the candidates are rewritten for the next row */
    }
}
"""


@functools.lru_cache(maxsize=None)
def cuda_prelude() -> str:
    """Everything generated CUDA kernels may refer to, as one block of C++."""
    return "\n".join([_TYPES, _shared_helpers(), _overloads(), _CLIP_RELU,
                      _BLOCK_REDUCE, _SOFTMAX_ROWS, _ARG_ROWS])
