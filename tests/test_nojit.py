"""The kernel, backend-edge and byte-row tests once more with NUMBA_DISABLE_JIT=1: the kernels as plain Python.

This catches kernels that only work because numba is lenient (or only fail
because it is not), and gives line-level tracebacks for the kernels' logic.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.mark.slow
def test_kernel_tests_pass_without_jit():
    targets = [str(TESTS / "test_kernels.py"), str(TESTS / "test_backend_edges.py"), str(TESTS / "test_byte_rows.py")]
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets],
                            env=env, capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
