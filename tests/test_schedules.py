"""mbtrain.schedules: the eta of each epoch, the history's eta column, the book's schedule, bad schedules."""
import numpy as np
import pytest

import mbtrain
from mbtrain.schedules import Book, Constant, Cosine, StepDecay, get_schedule
from mbtrain.synthetic import make_blobs


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=200, n_features=6, n_classes=3, spread=1.2, seed=3)
    return X[:160], y[:160], X[160:], y[160:]


def fit(net, X, y, epochs, **kwargs):
    kwargs = {"batch_size": 16, "eta": 0.8, "backend": "numpy", "monitor": False} | kwargs
    return net.fit(X, y, epochs=epochs, **kwargs)


def test_constant_is_the_default_and_the_eta_column_says_it(blobs):
    X, y, _, _ = blobs
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 3)
    assert list(history["eta"]) == [0.8, 0.8, 0.8]
    assert history.attrs["schedule"] == {"name": "constant"}
    plain = mbtrain.Network([6, 4, 3], seed=0)
    fit(plain, X, y, 3, schedule="constant")
    by_default = mbtrain.Network([6, 4, 3], seed=0)
    fit(by_default, X, y, 3)
    np.testing.assert_array_equal(plain.params, by_default.params)


def test_step_decay(blobs):
    X, y, _, _ = blobs
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 5, schedule=StepDecay(every=2, factor=0.5))
    assert list(history["eta"]) == [0.8, 0.8, 0.4, 0.4, 0.2]
    assert list(get_schedule("step").describe().values()) == ["step", 10, 0.5]


def test_the_epoch_eta_is_the_one_the_epoch_trained_with(blobs):
    """A schedule's second epoch equals a constant-eta epoch at that eta from the same state."""
    X, y, _, _ = blobs
    scheduled = mbtrain.Network([6, 4, 3], seed=0)
    fit(scheduled, X, y, 2, schedule=lambda epoch: 1.0 if epoch == 1 else 0.25, optimizer="adam")
    by_hand = mbtrain.Network([6, 4, 3], seed=0)
    fit(by_hand, X, y, 1, eta=0.8, optimizer="adam")
    fit(by_hand, X, y, 1, eta=0.2, optimizer="adam")
    np.testing.assert_array_equal(scheduled.params, by_hand.params)


def test_cosine_equals_torchs_cosine_annealing():
    torch = pytest.importorskip("torch")
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7, eta_min=0.01)
    expected = []
    for _ in range(7):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        annealing.step()
    ours = Cosine(7, eta_min=0.01)
    np.testing.assert_allclose([ours.eta(epoch, 0.5) for epoch in range(1, 8)], expected, rtol=1e-12)
    assert ours.eta(8, 0.5) == ours.eta(20, 0.5) == pytest.approx(0.01)  # then it stays at eta_min


def test_cosine_by_name_spans_the_fit(blobs):
    X, y, _, _ = blobs
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 4, schedule="cosine")
    # 0.8 (1 + cos(pi t / 4)) / 2 for t = 0..3
    np.testing.assert_allclose(history["eta"], [0.8, 0.8 * (1 + np.sqrt(0.5)) / 2, 0.4, 0.8 * (1 - np.sqrt(0.5)) / 2])


def test_a_schedule_starts_over_at_every_fit(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([6, 4, 3], seed=0)
    fit(net, X, y, 2, schedule=StepDecay(every=1, factor=0.5))
    history = fit(net, X, y, 2, schedule=StepDecay(every=1, factor=0.5))
    assert list(history["epoch"]) == [3, 4] and list(history["eta"]) == [0.8, 0.4]


class Scores:
    """A score function that returns the given numbers, one per epoch."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, net):
        return self.values.pop(0)


def test_book_halves_after_patience_epochs_without_improvement_and_stops_below_eta0_over_128(blobs):
    X, y, _, _ = blobs
    # improves for 2 epochs, then never: halve after every 3 flat epochs; 1/2 ... 1/128, then 1/256 stops
    book = Book(patience=3, score=Scores([0.5, 0.6] + [0.6] * 40))
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 100, schedule=book)
    expected = [0.8] * 5 + [0.8 / 2 ** k for k in range(1, 8) for _ in range(3)]
    np.testing.assert_allclose(history["eta"], expected)
    assert len(history) == 2 + 3 * 8 == book.stopped_epoch
    assert history.attrs["schedule_stopped_epoch"] == 26
    assert history.attrs["schedule"] == {"name": "book", "patience": 3}


def test_book_counts_patience_again_after_an_improvement(blobs):
    X, y, _, _ = blobs
    book = Book(patience=2, score=Scores([0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.3]))
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 7, schedule=book)
    # epoch 2 flat (1 of 2), 3 better, 4 and 5 flat: halved from epoch 6 on; 6 better, 7 flat
    assert list(history["eta"]) == [0.8] * 5 + [0.4, 0.4]


def test_book_by_name_watches_val_accuracy(blobs):
    X, y, Xv, yv = blobs
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 4, schedule="book", monitor=True,
                  validation_data=(Xv, yv))
    assert "val_accuracy" in history and list(history["eta"]) == [0.8] * 4
    with pytest.raises(ValueError, match="schedule: 'book' halves eta when val_accuracy has not improved for 10 "
                                         "epochs, so it needs validation_data and monitor=True"):
        fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 4, schedule="book", validation_data=(Xv, yv))


def test_a_callable_is_checked_before_each_epoch_that_would_use_it(blobs):
    X, y, _, _ = blobs
    net = mbtrain.Network([6, 4, 3], seed=0)
    with pytest.raises(ValueError, match=r"schedule: the callable returned inf for epoch 3; a factor of eta must "
                                         r"be a finite number >= 0"):
        fit(net, X, y, 5, schedule=lambda epoch: 1.0 if epoch < 3 else float("inf"))
    reference = mbtrain.Network([6, 4, 3], seed=0)
    fit(reference, X, y, 2)
    np.testing.assert_array_equal(net.params, reference.params)  # epochs 1 and 2 ran, nothing of epoch 3
    assert list(net.history["epoch"]) == [1, 2]
    history = fit(mbtrain.Network([6, 4, 3], seed=0), X, y, 3, schedule=lambda epoch: 1 / epoch)
    np.testing.assert_allclose(history["eta"], [0.8, 0.4, 0.8 / 3])
    assert history.attrs["schedule"]["name"] == "callable"


def test_the_eta_column_is_saved(blobs, tmp_path):
    X, y, _, _ = blobs
    net = mbtrain.Network([6, 4, 3], seed=0)
    fit(net, X, y, 3, schedule=StepDecay(1, 0.5))
    loaded = mbtrain.load(net.save(tmp_path / "m.npz"))
    assert list(loaded.history["eta"]) == [0.8, 0.4, 0.2]


@pytest.mark.parametrize("make, error, message", [
    (lambda: get_schedule("exponential"), ValueError, r"schedule: unknown schedule 'exponential'; choose one of "
                                                      r"\['constant', 'book', 'step', 'cosine'\]"),
    (lambda: get_schedule(0.5), ValueError, "schedule: unknown schedule 0.5"),
    (lambda: get_schedule("cosine"), ValueError, r"'cosine' needs the number of epochs"),
    (lambda: StepDecay(every=0), ValueError, "every: must be >= 1"),
    (lambda: StepDecay(factor=1.5), ValueError, r"factor: a decay multiplies eta by a factor in \(0, 1\]"),
    (lambda: StepDecay(factor=0.0), ValueError, "factor: must be a finite number > 0"),
    (lambda: Cosine(0), ValueError, "epochs: must be >= 1"),
    (lambda: Cosine(5, eta_min=-1.0), ValueError, "eta_min: must be a finite number >= 0"),
    (lambda: Book(patience=0), ValueError, "patience: must be >= 1"),
    (lambda: Book(score=3), TypeError, "score: expected a callable"),
])
def test_bad_schedules_name_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_names_and_objects():
    assert isinstance(get_schedule(None), Constant) and isinstance(get_schedule("constant"), Constant)
    book = Book(patience=4)
    assert get_schedule(book) is book
    assert get_schedule("cosine", epochs=9).describe() == {"name": "cosine", "epochs": 9, "eta_min": 0.0}
    assert repr(StepDecay(3, 0.1)) == "StepDecay(every=3, factor=0.1)"
