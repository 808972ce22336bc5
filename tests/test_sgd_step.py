"""One SGD step on a tiny net, worked out by hand.

Network [2, 2, 1], quadratic cost, eta = 0.5, lmbda = 0.1, n = 4 training rows
(so the weight decay factor is 1 - eta*lmbda/n = 1 - 0.5*0.1/4 = 0.9875), and a
mini-batch of m = 2 examples. The biases are not zero, so that decaying them
(which the book's rule never does) would show.

Parameters before the step, chosen so that every z is 0 on the two examples:
    W1 = [[1, -1], [-1, 1]], b1 = [1, -1]
        x = (1, 2): z1 = [1 - 2 + 1, -1 + 2 - 1] = [0, 0];  x = (0, 1): z1 = [0 - 1 + 1, 0 + 1 - 1] = [0, 0]
        -> a1 = sigmoid(0) = [0.5, 0.5]
    W2 = [[1, -0.5]],  b2 = [-0.25]  -> z2 = 0.5 - 0.25 - 0.25 = 0, a2 = 0.5
    sigma'(z) = a (1 - a) = 0.25 everywhere.

Example 1: x = (1, 2), y = 1.
    BP1  delta2 = (a2 - y) sigma'(z2) = (0.5 - 1) * 0.25 = -0.125
    BP3  dC/db2 = -0.125;  BP4  dC/dW2 = delta2 * a1 = [-0.0625, -0.0625]
    BP2  delta1 = (W2^T delta2) * sigma'(z1) = [1, -0.5] * -0.125 * 0.25 = [-0.03125, 0.015625]
    BP3  dC/db1 = delta1;  BP4  dC/dW1 = outer(delta1, x) = [[-0.03125, -0.0625], [0.015625, 0.03125]]
Example 2: x = (0, 1), y = 0.
    delta2 = (0.5 - 0) * 0.25 = 0.125;  dC/db2 = 0.125;  dC/dW2 = [0.0625, 0.0625]
    delta1 = [1, -0.5] * 0.125 * 0.25 = [0.03125, -0.015625];  dC/db1 = delta1
    dC/dW1 = [[0, 0.03125], [0, -0.015625]]
Sums over the batch:
    sum dC/dW1 = [[-0.03125, -0.03125], [0.015625, 0.015625]]
    sum dC/db1 = [0, 0];  sum dC/dW2 = [0, 0];  sum dC/db2 = 0
Update, w <- (1 - eta*lmbda/n) w - (eta/m) sum, with eta/m = 0.25:
    W1 = 0.9875 * [[1, -1], [-1, 1]] - 0.25 * sum dC/dW1
       = [[0.9875 + 0.0078125, -0.9875 + 0.0078125], [-0.9875 - 0.00390625, 0.9875 - 0.00390625]]
       = [[0.9953125, -0.9796875], [-0.99140625, 0.98359375]]
    W2 = 0.9875 * [1, -0.5] - 0 = [0.9875, -0.49375]
    b1 = [1, -1], b2 = [-0.25]: unchanged, exactly (biases are not decayed and their gradient sums to 0;
    a decayed bias would be 0.9875 b).
Every number is a short binary fraction except 0.9875, so the step is exact in
float32 and float64 up to the rounding of 0.9875 and of the sums with it.
"""
import numpy as np
import pytest

import mbtrain

W1, B1 = np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([1.0, -1.0])
W2, B2 = np.array([[1.0, -0.5]]), np.array([-0.25])
EXPECTED_W1 = np.array([[0.9953125, -0.9796875], [-0.99140625, 0.98359375]])
EXPECTED_W2 = np.array([[0.9875, -0.49375]])


def hand_worked_net(dtype):
    net = mbtrain.Network([2, 2, 1], cost="quadratic", dtype=dtype, seed=0)
    net.weights = [W1, W2]
    net.biases = [B1, B2]
    return net


@pytest.mark.parametrize("backend", ["loop", "numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_worked_sgd_step(backend, dtype):
    net = hand_worked_net(dtype)
    X = np.array([[1.0, 2.0], [0.0, 1.0], [5.0, 5.0], [5.0, 5.0]])
    Y = np.array([[1.0], [0.0], [0.0], [0.0]])
    # n = 4 rows in the training set; one mini-batch of the first two rows only:
    # with shuffle=False and batch_size=2, the first step sees rows 0 and 1.
    net.fit(X[:2], Y[:2], epochs=1, batch_size=2, eta=0.5, lmbda=0.1 * 2 / 4,
            backend=backend, shuffle=False, monitor=False)
    # lmbda is scaled so that eta*lmbda/n equals the hand-worked 0.5*0.1/4 with n = 2 rows.
    tol = 2e-7 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(net.weights[0], EXPECTED_W1, rtol=0, atol=tol)
    np.testing.assert_allclose(net.weights[1], EXPECTED_W2, rtol=0, atol=tol)
    np.testing.assert_array_equal(net.biases[0], B1)  # not decayed: 0.9875 * b1 would be off by 0.0125
    np.testing.assert_array_equal(net.biases[1], B2)


def test_hand_worked_gradient_of_the_batch():
    """The same numbers through net.gradients: mean gradient plus (lmbda/n) W, nothing added to the biases."""
    net = hand_worked_net("float64")
    X = np.array([[1.0, 2.0], [0.0, 1.0]])
    Y = np.array([[1.0], [0.0]])
    for backend in ("loop", "numpy", "numba"):
        grad_w, grad_b = net.gradients(X, Y, lmbda=0.1, n=4, backend=backend)
        # sum / m + (lmbda/n) W = [[-0.015625, -0.015625], [0.0078125, 0.0078125]] + 0.025 W1
        np.testing.assert_allclose(grad_w[0], [[0.009375, -0.040625], [-0.0171875, 0.0328125]], rtol=1e-14)
        np.testing.assert_allclose(grad_w[1], [[0.025, -0.0125]], rtol=1e-14)  # (lmbda/n) W2 = 0.025 W2
        np.testing.assert_array_equal(grad_b[0], [0.0, 0.0])  # b1 = [1, -1] is not regularized
        np.testing.assert_array_equal(grad_b[1], [0.0])
