"""The console script: help, gradcheck exit codes, a short training run."""
import subprocess
import sys
import textwrap

import pytest

from mbtrain.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "gradcheck" in out and "train" in out


def test_gradcheck_passes_and_prints_a_table(capsys):
    assert main(["gradcheck", "--sizes", "5,4,3", "--cost", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "max_rel_error" in out and "gradcheck OK" in out
    assert out.count("weights") >= 2 and out.count("biases") >= 2


def test_gradcheck_of_a_wrong_user_backprop_exits_nonzero(tmp_path, capsys):
    user = tmp_path / "my_backprop.py"
    user.write_text(textwrap.dedent("""
        import numpy as np

        def sigmoid(z):
            return 1 / (1 + np.exp(-z))

        def gradients(net, X, Y):
            acts = [X]
            for w, b in zip(net.weights, net.biases):
                acts.append(sigmoid(acts[-1] @ w.T + b))
            a = acts[-1]
            delta = (a - Y) * a * (1 - a)
            m = len(X)
            gw, gb = [None, None], [None, None]
            gw[1], gb[1] = delta.T @ acts[1] / m, delta.mean(axis=0)
            delta = delta @ net.weights[1]          # bug: sigma'(z) of the hidden layer is missing
            gw[0], gb[0] = delta.T @ acts[0] / m, delta.mean(axis=0)
            return gw, gb
    """))
    code = main(["gradcheck", "--sizes", "5,4,3", "--gradients", f"{user}:gradients"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: layer 1 weights, layer 1 biases" in out  # layers numbered from 1, as W1 in notebook 1


@pytest.mark.parametrize("argv, message", [
    (["gradcheck", "--sizes", "5"], "need at least an input and an output width"),
    (["gradcheck", "--sizes", "5,x,3"], "expected comma-separated integers"),
    (["train", "--eta", "-1"], "expected a finite number > 0"),
])
def test_bad_arguments_are_named(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_cost_is_a_clear_error(capsys):
    assert main(["gradcheck", "--cost", "hinge"]) == 2
    assert "cost: unknown cost 'hinge'" in capsys.readouterr().err




def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "mbtrain.cli", "gradcheck", "--sizes", "3,2,2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gradcheck OK" in result.stdout


def test_python_dash_m_mbtrain_runs_the_console_script():
    result = subprocess.run([sys.executable, "-m", "mbtrain", "gradcheck", "--sizes", "3,2,2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gradcheck OK" in result.stdout
    usage = subprocess.run([sys.executable, "-m", "mbtrain"], capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and usage.stdout.startswith("usage: mbtrain ")


def test_gradcheck_shows_where_the_users_own_function_raised(tmp_path, capsys):
    user = tmp_path / "my_backprop.py"
    user.write_text(textwrap.dedent("""
        def forward(X, w):
            return X @ w                    # line 3: the bug, w instead of w.T

        def gradients(net, X, Y):
            return forward(X, net.weights[0]), None
    """))
    assert main(["gradcheck", "--sizes", "5,4,3", "--gradients", f"{user}:gradients"]) == 2
    err = capsys.readouterr().err
    first, *rest = err.splitlines()
    assert first == (f"mbtrain gradcheck: error: your gradients function {user}:gradients raised ValueError "
                     f"at {user}, line 3, in forward")
    assert "Traceback (your code, most recent call last):" in err
    assert f'File "{user}", line 6, in gradients' in err and f'File "{user}", line 3, in forward' in err
    assert "return X @ w" in err and rest[-1].startswith("ValueError: matmul")
    assert "mbtrain" not in "".join(rest[:-1]).replace(str(tmp_path), "")  # none of mbtrain's own frames


def test_gradcheck_shows_a_syntax_error_in_the_users_file(tmp_path, capsys):
    user = tmp_path / "broken.py"
    user.write_text("def gradients(net, X, Y:\n    pass\n")
    assert main(["gradcheck", "--gradients", f"{user}:gradients"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"mbtrain gradcheck: error: loading {user} raised SyntaxError at {user}, line 1"
    assert "def gradients(net, X, Y:" in err and "frozen" not in err


def test_gradcheck_prints_the_hints(tmp_path, capsys):
    user = tmp_path / "summed.py"
    user.write_text(textwrap.dedent("""
        def gradients(net, X, Y):
            grad_w, grad_b = net.gradients(X, Y)
            return [g * len(X) for g in grad_w], [g * len(X) for g in grad_b]   # summed, not averaged
    """))
    assert main(["gradcheck", "--sizes", "5,4,3", "--rows", "7", "--gradients", f"{user}:gradients"]) == 1
    out = capsys.readouterr().out
    assert ("hint: layer 1 weights, layer 1 biases, layer 2 weights, layer 2 biases: the gradient is m = 7 times "
            "the numerical one: summed over the rows, not divided by the batch size m") in out
