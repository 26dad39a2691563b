"""Optimizers follow Keras's update rules step by step, eagerly and inside st.function.

Oracle: the rules written out here in NumPy from Keras's documentation (keras.optimizers),
independently of symtape's implementation."""

import numpy as np
import pytest

import symtape as st

RNG = np.random.default_rng(7)
GRADIENTS = [RNG.normal(size=3) for _ in range(6)]
START = np.array([0.5, -1.0, 2.0])


def keras_sgd(w, grads, learning_rate=0.01, momentum=0.0, nesterov=False):
    m = np.zeros_like(w)
    for g in grads:
        if momentum == 0:
            w = w - learning_rate * g
            continue
        m = momentum * m - learning_rate * g
        w = w + (momentum * m - learning_rate * g if nesterov else m)
    return w


def keras_adam(w, grads, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    m, v, v_hat = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        if amsgrad:
            v_hat = np.maximum(v_hat, v)
            w = w - alpha * m / (np.sqrt(v_hat) + epsilon)
        else:
            w = w - alpha * m / (np.sqrt(v) + epsilon)
    return w


def keras_rmsprop(w, grads, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    velocity, average, m = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        velocity = rho * velocity + (1 - rho) * g * g
        if centered:
            average = rho * average + (1 - rho) * g
            denominator = velocity - average * average + epsilon
        else:
            denominator = velocity + epsilon
        increment = learning_rate * g / np.sqrt(denominator)
        if momentum > 0:
            m = momentum * m + increment
            w = w - m
        else:
            w = w - increment
    return w


def keras_adagrad(w, grads, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    accumulator = np.full_like(w, initial_accumulator_value)
    for g in grads:
        accumulator = accumulator + g * g
        w = w - learning_rate * g / np.sqrt(accumulator + epsilon)
    return w


CASES = [
    (st.optimizers.SGD, keras_sgd, {}),
    (st.optimizers.SGD, keras_sgd, {"learning_rate": 0.1, "momentum": 0.9}),
    (st.optimizers.SGD, keras_sgd, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    (st.optimizers.Adam, keras_adam, {}),
    (st.optimizers.Adam, keras_adam, {"learning_rate": 0.1, "amsgrad": True}),
    (st.optimizers.RMSprop, keras_rmsprop, {}),
    (st.optimizers.RMSprop, keras_rmsprop, {"learning_rate": 0.01, "momentum": 0.5,
                                            "centered": True}),
    (st.optimizers.Adagrad, keras_adagrad, {}),
    (st.optimizers.Adagrad, keras_adagrad, {"learning_rate": 0.5,
                                            "initial_accumulator_value": 0.0}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
       for cls, _, kw in CASES]


@pytest.mark.parametrize("cls, oracle, options", CASES, ids=IDS)
def test_eager_steps_follow_keras(cls, oracle, options):
    w = st.Variable(START, name="w")
    opt = cls(**options)
    for g in GRADIENTS:
        opt.apply_gradients([(st.constant(g), w)])
    np.testing.assert_allclose(w.numpy(), oracle(START, GRADIENTS, **options), rtol=1e-12)
    assert int(opt.iterations.numpy()) == len(GRADIENTS)


@pytest.mark.parametrize("cls, oracle, options", CASES, ids=IDS)
def test_compiled_steps_follow_keras(cls, oracle, options):
    w = st.Variable(START, name="w")
    opt = cls(**options)
    traced = []

    @st.function
    def step(g):
        traced.append(1)
        opt.apply_gradients([(g, w)])

    for g in GRADIENTS:
        step(g)
    assert len(traced) == 1  # one trace; the later steps ran the kernel
    np.testing.assert_allclose(w.numpy(), oracle(START, GRADIENTS, **options), rtol=1e-12)


def test_float32_variables_stay_float32_and_follow_keras():
    w = st.Variable(START.astype(np.float32), name="w")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for g in GRADIENTS:
        opt.apply_gradients([(st.constant(g.astype(np.float32)), w)])
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.numpy(), keras_adam(START, GRADIENTS, learning_rate=0.1), rtol=1e-5)


def test_state_is_per_variable():
    a, b = st.Variable(START, name="a"), st.Variable(START, name="b")
    opt = st.optimizers.Adam(learning_rate=0.1)
    for g in GRADIENTS:  # a gets the gradients, b their negatives: separate moments
        opt.apply_gradients([(st.constant(g), a), (st.constant(-g), b)])
    np.testing.assert_allclose(a.numpy(), keras_adam(START, GRADIENTS, learning_rate=0.1), rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), keras_adam(START, [-g for g in GRADIENTS], learning_rate=0.1),
                               rtol=1e-12)


def test_missing_gradients_are_skipped_with_a_warning():
    a, b = st.Variable(1.0, name="a"), st.Variable(1.0, name="b")
    with pytest.warns(UserWarning, match="no gradient for b"):
        st.optimizers.SGD(0.5).apply_gradients([(st.constant(1.0), a), (None, b)])
    assert float(a.numpy()) == 0.5 and float(b.numpy()) == 1.0


@pytest.mark.parametrize("make, message", [
    (lambda: st.optimizers.SGD(learning_rate=-1.0), "learning_rate"),
    (lambda: st.optimizers.SGD(momentum=1.5), "momentum"),
    (lambda: st.optimizers.Adam(beta_1=1.0), "beta_1"),
    (lambda: st.optimizers.Adagrad(initial_accumulator_value=-1.0), "initial_accumulator_value"),
])
def test_bad_hyperparameters_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_learning_rate_schedules_receive_the_step_count():
    seen = []

    def schedule(step):
        seen.append(int(step.numpy()))
        return 0.1 / (1 + int(step.numpy()))

    x = st.Variable(0.0, name="x")
    opt = st.optimizers.SGD(learning_rate=schedule)
    for _ in range(3):
        opt.apply_gradients([(st.constant(1.0), x)])
    assert seen == [0, 1, 2]
    assert float(x.numpy()) == pytest.approx(-(0.1 + 0.05 + 0.1 / 3))
