"""mbtrain.threads: numba and BLAS thread counts, set together and restored."""
import numba
import pytest
from threadpoolctl import threadpool_info

from mbtrain import threads


def blas_counts():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


@pytest.fixture(autouse=True)
def restore_counts():
    """Whatever a test does, the next one starts with the counts of before."""
    with threads.limit(numba.get_num_threads(), blas=max(blas_counts() or [1])):
        yield


def test_get_reports_both():
    counts = threads.get_num_threads()
    assert counts.numba == numba.get_num_threads()
    assert counts.blas == max(blas_counts())


def test_set_changes_both_and_returns_previous():
    before = threads.get_num_threads()
    previous = threads.set_num_threads(1)
    assert previous == before
    assert threads.get_num_threads() == (1, 1)
    assert blas_counts() and set(blas_counts()) == {1}


def test_numba_count_is_clipped_to_its_pool():
    threads.set_num_threads(numba.config.NUMBA_NUM_THREADS + 5, blas=1)
    assert threads.get_num_threads() == (numba.config.NUMBA_NUM_THREADS, 1)


def test_limit_restores_on_exit():
    threads.set_num_threads(numba.config.NUMBA_NUM_THREADS, blas=2)
    before, before_blas = threads.get_num_threads(), blas_counts()
    with threads.limit(1) as inside:
        assert inside == (1, 1) == threads.get_num_threads()
    assert threads.get_num_threads() == before and blas_counts() == before_blas


def test_limit_restores_on_exception():
    before, before_blas = threads.get_num_threads(), blas_counts()
    with pytest.raises(RuntimeError, match="boom"):
        with threads.num_threads(1, blas=1):
            assert threads.get_num_threads() == (1, 1)
            raise RuntimeError("boom")
    assert threads.get_num_threads() == before and blas_counts() == before_blas


@pytest.mark.parametrize("n, error", [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_counts_name_the_argument(n, error):
    with pytest.raises(error, match="n: must be"):
        threads.set_num_threads(n)
    with pytest.raises(error, match="blas: must be"):
        with threads.limit(1, blas=n):
            pass


def test_training_inside_limit():
    import numpy as np

    import mbtrain

    net = mbtrain.Network([4, 3, 2], seed=0)
    X = np.random.default_rng(0).random((20, 4))
    with threads.limit(1):
        net.fit(X, np.arange(20) % 2, epochs=1, batch_size=5, eta=1.0, progress=False)
    assert len(net.history) == 1


def test_blas_is_clipped_like_numba():
    """set_num_threads(10**6) on a small machine: BLAS gets the cores numba allows, not 64 or 10**6."""
    most = numba.config.NUMBA_NUM_THREADS
    threads.set_num_threads(10**6)
    assert threads.get_num_threads() == (most, most)
    assert set(blas_counts()) == {most}
    with threads.limit(1, blas=10**6) as inside:
        assert inside == (1, most)


@pytest.mark.parametrize("n", [-1, 0])
def test_counts_below_one_are_refused(n):
    with pytest.raises(ValueError, match=f"n: must be >= 1, got {n}"):
        threads.set_num_threads(n)


@pytest.mark.parametrize("n", [2.0, "2", None, 1.5])
def test_non_integer_counts_are_refused(n):
    with pytest.raises(TypeError, match="n: must be an integer number of threads"):
        threads.set_num_threads(n)
