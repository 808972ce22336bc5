"""mbtrain train / evaluate on the shipped digits and generated data."""
import pandas as pd
import pytest

import mbtrain
from mbtrain.cli import main


def test_train_on_digits_saves_model_and_history(tmp_path, capsys):
    out = tmp_path / "digits.npz"
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--batch-size", "10", "--eta", "3.0",
                 "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0
    assert "test accuracy" in text.splitlines()[-1] and "300 test rows of digits" in text
    net = mbtrain.load(out)
    assert net.sizes == (64, 30, 10)
    history = pd.read_csv(tmp_path / "digits.history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"train_loss", "val_accuracy", "grad_norm_1"} <= set(history.columns)
    # the printed test accuracy is the saved model's
    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits")
    assert f"{net.score(X_test, y_test):.4f}" in text.splitlines()[-1]


def test_evaluate_prints_accuracy_and_confusion_matrix(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "confusion matrix" in text
    matrix_lines = text.split("confusion matrix", 1)[1].splitlines()[3:]
    counts = [sum(int(v) for v in line.split()[1:]) for line in matrix_lines if line.strip()]
    assert sum(counts) == 300 and len(counts) == 10


def test_early_stopping_and_book_split_options(tmp_path, capsys):
    code = main(["train", "--dataset", "synthetic", "--sizes", "16,10,4", "--epochs", "30",
                 "--eta", "50", "--early-stopping", "2", "--validation", "500", "--quiet"])
    assert code == 0
    assert len([l for l in capsys.readouterr().out.splitlines() if l.strip()[:1].isdigit()]) < 30


def test_train_with_an_optimizer_and_a_schedule(tmp_path, capsys):
    out = tmp_path / "adam.npz"
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--eta", "0.01", "--optimizer", "adam",
                 "--beta1", "0.8", "--schedule", "step", "--step-every", "1", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0
    assert "optimizer adam(beta1=0.8, beta2=0.999, eps=1e-08), schedule StepDecay(every=1, factor=0.5)" in text
    net = mbtrain.load(out)
    assert net.optimizer_state.optimizer == {"name": "adam", "beta1": 0.8, "beta2": 0.999, "eps": 1e-8}
    assert net.optimizer_state.step == 3 * 135  # 1,347 training rows in batches of 10
    assert list(pd.read_csv(tmp_path / "adam.history.csv")["eta"]) == [0.01, 0.005, 0.0025]
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--optimizer", "nesterov", "--momentum", "0.5",
                 "--schedule", "book", "--quiet"]) == 0
    assert "optimizer nesterov(mu=0.5), schedule Book(patience=10)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "digits", "--momentum", "0.5"],
     "--momentum: only used by --optimizer momentum or nesterov"),
    (["train", "--dataset", "digits", "--optimizer", "momentum", "--beta2", "0.9"],
     "--beta2: only used by --optimizer adam"),
    (["train", "--dataset", "digits", "--step-every", "3"], "--step-every: only used by --schedule step"),
    (["train", "--dataset", "digits", "--schedule", "cosine", "--schedule-patience", "3"],
     "--schedule-patience: only used by --schedule book"),
    (["train", "--dataset", "digits", "--schedule", "step", "--step-factor", "2"],
     "--step-factor: expected a factor in (0, 1]"),
    (["train", "--dataset", "digits", "--validation", "0", "--schedule", "book"],
     "--schedule book: needs validation rows"),
    (["train", "--dataset", "digits", "--sizes", "10,3,4"], "--sizes: the input width is 10 but digits rows have 64"),
    (["train", "--dataset", "digits", "--validation", "0", "--early-stopping", "3"], "--early-stopping: needs validation rows"),
    (["train", "--dataset", "digits", "--out", "/nonexistent/dir/m.npz"], "--out: the directory /nonexistent/dir does not exist"),
    (["evaluate", "/nonexistent.npz", "--dataset", "digits"], "no such file"),
])
def test_train_errors_name_the_option(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--validation", "-3"], "expected a whole count"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["train", "--schedule", "warmup"], "invalid choice: 'warmup'"),
    (["train", "--optimizer", "momentum", "--momentum", "1"],
     "argument --momentum: expected a number in [0, 1), got '1'"),
    (["train", "--optimizer", "adam", "--beta1", "-0.1"], "argument --beta1: expected a number in [0, 1)"),
    (["train", "--optimizer", "adam", "--epsilon", "0"], "argument --epsilon: expected a finite number > 0"),
])
def test_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_evaluate_without_data_names_the_options(capsys):
    assert main(["evaluate", "m.npz"]) == 2  # said before the model is looked for
    assert capsys.readouterr().err == ("mbtrain evaluate: error: give --dataset, --data or --test-data: the data "
                                       "whose test rows are used\n")


def test_evaluate_rejects_a_model_of_the_wrong_width(tmp_path, capsys):
    path = tmp_path / "m.npz"
    mbtrain.Network([16, 5, 4]).save(path)
    assert main(["evaluate", str(path), "--dataset", "digits"]) == 2
    assert "takes 16 inputs but digits rows have 64" in capsys.readouterr().err


def test_every_subcommand_help_shows_an_example(capsys):
    for command in ("gradcheck", "train", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "example" in capsys.readouterr().out
