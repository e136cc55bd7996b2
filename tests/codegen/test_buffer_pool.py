"""The buffer pool: large outputs reuse freed memory, never memory still in use."""

import gc

import numpy as np
import pytest

import tracejit as tj
from tracejit.codegen import buffer_pool

get_handler_name = pytest.importorskip("numpy._core.multiarray").get_handler_name

pytestmark = pytest.mark.skipif(buffer_pool.pool_module(wait=True) is None,
                                reason="no C compiler for the pool extension")

LARGE = buffer_pool.POOL_MIN_ELEMENTS * 2


@pytest.fixture
def scaled():
    @tj.compile
    def scaled(x):
        return x * 2.0 + 1.0
    buffer_pool.trim()
    return scaled


def test_large_outputs_come_from_the_pool_and_own_their_data(scaled):
    x = np.arange(LARGE, dtype=np.float64)
    out = scaled(x)
    np.testing.assert_array_equal(out, x * 2.0 + 1.0)
    assert get_handler_name(out) == "tracejit_buffer_pool"
    assert out.flags.owndata and out.flags.aligned and out.flags.writeable


def test_small_outputs_use_numpys_allocator(scaled):
    out = scaled(np.arange(10, dtype=np.float64))
    assert get_handler_name(out) == "default_allocator"


def test_a_dropped_output_is_reused_by_the_next_call(scaled):
    x = np.arange(LARGE, dtype=np.float64)
    scaled(x)  # first call: a fresh block, freed when the result is dropped
    before = buffer_pool.stats()
    assert before["cached_blocks"] >= 1
    result = scaled(x)
    after = buffer_pool.stats()
    assert after["hits"] == before["hits"] + 1
    np.testing.assert_array_equal(result, x * 2.0 + 1.0)


def test_a_live_output_is_never_handed_out_again(scaled):
    x = np.arange(LARGE, dtype=np.float64)
    first = scaled(x)
    second = scaled(x + 1.0)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, x * 2.0 + 1.0)
    np.testing.assert_array_equal(second, (x + 1.0) * 2.0 + 1.0)


def test_a_zero_limit_caches_nothing(scaled):
    x = np.arange(LARGE, dtype=np.float64)
    with tj.config.change(buffer_pool_bytes=0):
        scaled(x)
        gc.collect()
        assert buffer_pool.stats()["cached_bytes"] == 0


def test_the_limit_evicts_the_oldest_blocks(scaled):
    small = np.arange(LARGE, dtype=np.float32)
    large = np.arange(LARGE, dtype=np.float64)
    one_block = scaled(large).nbytes
    with tj.config.change(buffer_pool_bytes=one_block + (1 << 20)):
        buffer_pool.trim()
        scaled(small)
        scaled(large)
        stats = buffer_pool.stats()
    assert stats["cached_blocks"] == 1
    assert stats["cached_bytes"] <= one_block + (1 << 20)


def test_trim_gives_everything_back(scaled):
    scaled(np.arange(LARGE, dtype=np.float64))
    assert buffer_pool.trim() >= 1
    assert buffer_pool.stats() | {"hits": 0, "misses": 0, "released": 0} == {
        "hits": 0, "misses": 0, "released": 0, "cached_bytes": 0, "cached_blocks": 0}


def test_resizing_a_pooled_array_keeps_its_values(scaled):
    x = np.arange(LARGE, dtype=np.float64)
    out = scaled(x)
    out.resize(2 * LARGE, refcheck=False)
    np.testing.assert_array_equal(out[:LARGE], x * 2.0 + 1.0)
    out.resize(LARGE // 2, refcheck=False)
    np.testing.assert_array_equal(out, (x * 2.0 + 1.0)[:LARGE // 2])


def test_freeing_during_an_exception_keeps_the_exception(scaled):
    x = np.arange(LARGE, dtype=np.float64)

    def fails():
        out = scaled(x)  # noqa: F841 - dies while KeyError propagates
        raise KeyError("kept")

    with pytest.raises(KeyError, match="kept"):
        fails()


def test_large_intermediates_are_pooled_and_results_stay_right(scaled):
    @tj.compile
    def layers(a, b):
        hidden = np.tanh(a @ b)  # a 512x512 product: a pooled intermediate
        return hidden @ b + 1.0
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 512, 512)) / 16
    expected = np.tanh(a @ b) @ b + 1.0
    np.testing.assert_allclose(layers(a, b), expected, rtol=1e-10, atol=1e-12)
    hits = buffer_pool.stats()["hits"]
    np.testing.assert_allclose(layers(a, b), expected, rtol=1e-10, atol=1e-12)
    assert buffer_pool.stats()["hits"] >= hits + 2  # the intermediates and the output
