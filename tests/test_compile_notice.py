"""A first run on a cold numba cache says that it is compiling; a warm one stays silent."""
import io
import threading

from mbtrain.backends.numba_matrix import compile_notice


def test_a_long_compile_is_announced_and_closed_with_its_seconds():
    stream = io.StringIO()
    done = threading.Event()
    with compile_notice(stream, after=0.0):
        done.wait(0.2)  # the "compiling": longer than the notice's delay
    text = stream.getvalue()
    assert "compiling the numba kernels" in text and "first run only" in text
    assert "compiled in" in text.splitlines()[-1]


def test_a_quick_load_from_the_cache_says_nothing():
    stream = io.StringIO()
    with compile_notice(stream, after=60.0):
        pass
    assert stream.getvalue() == ""


def test_nested_notices_say_it_once():
    stream = io.StringIO()
    done = threading.Event()
    with compile_notice(stream, after=0.0):
        with compile_notice(stream, after=0.0):
            done.wait(0.2)
    assert stream.getvalue().count("compiling the numba kernels") == 1
