"""A small neural network (64-32-10, tanh) trained with Adam on scikit-learn's digits.

The 8x8 images of ``sklearn.datasets.load_digits`` (bundled with scikit-learn: no
download) are split into training and test sets. The training step (forward pass, softmax
cross-entropy, ``GradientTape``, ``Adam.apply_gradients``) is one ``@st.function``: traced
once for the minibatch shape, then every step runs the compiled kernel. The script prints
the loss per epoch and the test accuracy, and saves the loss curve.

Run: ``python examples/mlp_digits.py`` (``--small`` for fewer epochs and a smaller hidden
layer, ``--plot-dir DIR`` for where ``mlp_digits.png`` goes; default the current directory).
Needs scikit-learn: ``python -m pip install "symtape[examples]"``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

import symtape as st

BATCH = 64


def load(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)``: pixels scaled to [0, 1], a 25% test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit('mlp_digits.py needs scikit-learn: python -m pip install "symtape[examples]"')
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order] / 16.0, y[order]
    n_test = len(y) // 4
    return X[n_test:], y[n_test:], X[:n_test], y[:n_test]


class MLP:
    """``softmax(tanh(x W1 + b1) W2 + b2)``, Glorot-initialized."""

    def __init__(self, sizes: tuple[int, int, int], seed: int = 0):
        rng = np.random.default_rng(seed)
        n_in, n_hidden, n_out = sizes
        self.W1 = st.Variable(rng.normal(0, np.sqrt(2 / (n_in + n_hidden)), (n_in, n_hidden)),
                              name="W1")
        self.b1 = st.Variable(np.zeros(n_hidden), name="b1")
        self.W2 = st.Variable(rng.normal(0, np.sqrt(2 / (n_hidden + n_out)), (n_hidden, n_out)),
                              name="W2")
        self.b2 = st.Variable(np.zeros(n_out), name="b2")
        self.variables = [self.W1, self.b1, self.W2, self.b2]

    def logits(self, x):
        return st.matmul(st.tanh(st.matmul(x, self.W1) + self.b1), self.W2) + self.b2

    def predict(self, x: np.ndarray) -> np.ndarray:
        hidden = np.tanh(x @ self.W1.numpy() + self.b1.numpy())
        return np.argmax(hidden @ self.W2.numpy() + self.b2.numpy(), axis=1)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy against one-hot ``labels``."""
    # log-sum-exp shifted by the row maximum, so exp never overflows
    top = st.reduce_max(logits, axis=1, keepdims=True)
    log_total = st.log(st.reduce_sum(st.exp(logits - top), axis=1, keepdims=True)) + top
    return st.reduce_mean(st.reduce_sum(labels * (log_total - logits), axis=1))


@dataclass
class Training:
    model: MLP
    losses: list[float]  # the mean minibatch loss of each epoch
    accuracy: float  # on the test set


def train(epochs: int, hidden: int = 32, learning_rate: float = 0.01, seed: int = 0) -> Training:
    X, y, X_test, y_test = load(seed)
    model = MLP((X.shape[1], hidden, 10), seed)
    opt = st.optimizers.Adam(learning_rate)
    one_hot = np.eye(10)[y]

    @st.function
    def step(x, labels):
        with st.GradientTape() as tape:
            loss = cross_entropy(model.logits(x), labels)
        opt.apply_gradients(zip(tape.gradient(loss, model.variables), model.variables))
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(y))
        # whole batches only: one input shape, so one trace and one kernel
        batches = [order[k:k + BATCH] for k in range(0, len(y) - BATCH + 1, BATCH)]
        losses.append(float(np.mean([step(X[b], one_hot[b]).numpy() for b in batches])))
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    return Training(model, losses, accuracy)


def plot(losses: list[float], directory) -> None:
    from plotting import save_figure

    def draw(figure):
        ax = figure.add_subplot()
        ax.semilogy(range(1, len(losses) + 1), losses, "o-", ms=3)
        ax.set(xlabel="epoch", ylabel="mean training loss",
               title="64-32-10 MLP on load_digits, Adam")

    save_figure(draw, directory, "mlp_digits.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer epochs (for tests)")
    parser.add_argument("--plot-dir", default=".", help="where to write mlp_digits.png")
    args = parser.parse_args(argv)

    result = train(epochs=5 if args.small else 40, hidden=16 if args.small else 32)
    for epoch, loss in enumerate(result.losses, 1):
        if epoch % 5 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}: loss {loss:.4f}")
    print(f"test accuracy {result.accuracy:.3f}")
    plot(result.losses, args.plot_dir)


if __name__ == "__main__":
    main()
