"""Optimizers with Keras names, defaults and update rules (``st.optimizers``).

Every update is written with symtape ops on Variables (``assign_sub`` and friends), so the
same code runs eagerly and inside ``@st.function``, where it is traced once and compiled:
the optimizer's state (moments, accumulators, the step counter) lives in non-trainable
Variables, one set per trained Variable, created on first use and kept across calls.

Examples
--------
>>> import symtape as st
>>> x = st.Variable(0.0, name="x")
>>> opt = st.optimizers.SGD(learning_rate=0.01)
>>> @st.function
... def train():
...     return opt.minimize(lambda: x**2 - 2*x + 1, [x])
>>> for _ in range(1000):
...     _ = train()
>>> round(float(x.numpy()), 5), int(opt.iterations.numpy())
(1.0, 1000)
"""

from __future__ import annotations

import contextlib
import math
import numbers
import signal
import threading
import warnings
from typing import Any, Callable, Iterable

import numpy as np

from symtape.core import ops
from symtape.arrays.backends import to_host
from symtape.arrays.dtypes import dtype_of
from symtape.core.tape import GradientTape
from symtape.core.tensor import ACTIVE_TRACE, Tensor, Variable, convert_to_tensor, on_device_of

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "Adagrad", "Newton"]


class Optimizer:
    """The shared machinery: the step counter, per-Variable state, ``minimize``.

    Subclasses implement ``update(variable, gradient, lr)`` with symtape ops.

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step.
    name : str
        Names the optimizer in messages and its state Variables (``name/iterations``).

    Examples
    --------
    >>> import symtape as st
    >>> opt = st.optimizers.SGD(learning_rate=0.1)
    >>> x = st.Variable(1.0, name="x")
    >>> _ = opt.apply_gradients([(st.constant(2.0), x)])
    >>> x.numpy(), int(opt.iterations.numpy())
    (array(0.8), 1)
    """

    def __init__(self, learning_rate: float | Callable[[Tensor], Any], name: str):
        self.name = name
        self.learning_rate = learning_rate  # checked by the property's setter
        self.iterations = Variable(0, dtype=np.int64, name=f"{name}/iterations", trainable=False)
        self._slots: dict[int, dict[str, Variable]] = {}
        self._owners: dict[int, Variable] = {}  # keeps each trained Variable alive with its state

    # ------------------------------------------------------------ Keras API
    @property
    def learning_rate(self):
        """The step size: a positive number, or a schedule (a callable of the step count).

        Examples
        --------
        >>> import symtape as st
        >>> opt = st.optimizers.SGD(learning_rate=0.1)
        >>> opt.learning_rate = "0.05"
        Traceback (most recent call last):
        ...
        TypeError: SGD: learning_rate must be a positive number or a schedule (a callable taking the step count), got the str '0.05'; write learning_rate=0.05, a number
        """
        return self._learning_rate_value

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate_value = _checked_learning_rate(self.name, value)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Variable]]) -> Variable:
        """Update each Variable from its gradient (``None`` gradients are skipped, with a
        warning); returns ``iterations``, the number of steps taken.

        A step updates every Variable or none: if it is cut short (an error, or Ctrl-C), the
        Variables, the optimizer's state and ``iterations`` are put back as they were.

        Examples
        --------
        >>> import symtape as st
        >>> w = st.Variable(5.0, name="w")
        >>> opt = st.optimizers.SGD(0.5)
        >>> with st.GradientTape() as tape:
        ...     loss = (w - 3.0) ** 2
        >>> _ = opt.apply_gradients(zip([tape.gradient(loss, w)], [w]))
        >>> w.numpy()
        array(3.)
        """
        pairs = self._checked_pairs(grads_and_vars)
        missing = [v.name for g, v in pairs if g is None]
        if missing:
            warnings.warn(f"{self.name}: no gradient for {', '.join(missing)} (not connected to "
                          "the loss); those Variables are left unchanged", stacklevel=2)
        lr = self._learning_rate()
        steps = [(gradient if dtype_of(gradient) == variable.dtype else
                  ops.cast(convert_to_tensor(gradient), variable.dtype), variable)
                 for gradient, variable in pairs if gradient is not None]
        with self._all_or_nothing([variable for _, variable in steps]):
            for gradient, variable in steps:
                self.update(variable, gradient, lr)
            self.iterations.assign_add(1)
        return self.iterations

    def minimize(self, loss: Callable[[], Any], var_list: Iterable[Variable],
                 tape: GradientTape | None = None):
        """One step on ``loss()`` (a callable, as in Keras) w.r.t. ``var_list``; returns the
        loss value before the step.

        Parameters
        ----------
        loss : callable or Tensor
            Called with no arguments, returns the scalar loss (run under a new tape). With
            ``tape``, it may be the loss Tensor that tape recorded.
        var_list : list of Variable
            The Variables to update, each once.
        tape : GradientTape, optional
            A tape that recorded the loss (then it is not recomputed under a new one).

        Returns
        -------
        Tensor
            The loss before the step.

        Raises
        ------
        TypeError
            If ``loss`` is not callable (and no ``tape`` is given), or ``var_list`` is not a
            list of Variables.
        ValueError
            If ``var_list`` is empty or lists a Variable twice.

        Examples
        --------
        >>> import symtape as st
        >>> x = st.Variable(0.0, name="x")
        >>> opt = st.optimizers.SGD(learning_rate=0.01)
        >>> for _ in range(1000):
        ...     _ = opt.minimize(lambda: x**2 - 2*x + 1, [x])
        >>> abs(float(x.numpy()) - 1) < 1e-5
        True
        """
        variables = self._checked_var_list(var_list)
        if tape is None:
            if not callable(loss):
                raise TypeError(f"{self.name}.minimize: `loss` must be a callable returning the "
                                "loss (or pass the `tape` that recorded it)")
            tape = GradientTape()
            try:
                with tape:
                    value = loss()
            except BaseException:
                # an interrupt at the `with` line as the block ends lands where `with` cannot
                # call __exit__: leave no tape recording (__exit__ is idempotent)
                tape.__exit__(None, None, None)
                raise
        else:
            value = loss() if callable(loss) else loss
        grads = tape.gradient(value, variables)
        self.apply_gradients(zip(grads, variables))
        return value

    # ------------------------------------------------------------ checks
    def _checked_var_list(self, var_list) -> list[Variable]:
        """``var_list`` as a list of distinct Variables, or an error that says how to fix it."""
        where = f"{self.name}.minimize"
        if var_list is None:
            raise TypeError(f"{where}: var_list is None; pass the Variables to train, "
                            "e.g. minimize(loss, [w, b])")
        if isinstance(var_list, Variable):
            raise TypeError(f"{where}: var_list must be a list of Variables, got a single "
                            f"Variable; write [{var_list.name}]")
        if isinstance(var_list, Tensor):
            raise TypeError(f"{where}: var_list must be a list of Variables, got a Tensor; only "
                            "st.Variable objects can be trained")
        variables = list(var_list)
        if not variables:
            raise ValueError(f"{where}: var_list is empty; pass the Variables to train, "
                             "e.g. minimize(loss, [w, b])")
        for i, variable in enumerate(variables):
            if not isinstance(variable, Variable):
                raise TypeError(f"{where}: var_list[{i}] is a {type(variable).__name__}, not a "
                                "Variable; only st.Variable objects can be trained")
        _refuse_repeats(variables, f"{where}: var_list")
        return variables

    def _checked_pairs(self, grads_and_vars) -> list[tuple[Any, Variable]]:
        """``(gradient, Variable)`` pairs, each Variable once, each gradient of its shape."""
        where = f"{self.name}.apply_gradients"
        if grads_and_vars is None:
            raise TypeError(f"{where}: grads_and_vars is None; pass (gradient, Variable) "
                            "pairs, e.g. zip(grads, variables)")
        pairs = []
        for pair in grads_and_vars:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"{where} expects (gradient, Variable) pairs, got a "
                                f"{type(pair).__name__}; pass zip(grads, variables)")
            gradient, variable = pair
            if not isinstance(variable, Variable):
                raise TypeError(f"{where} expects (gradient, Variable) pairs, got a "
                                f"{type(variable).__name__} where the Variable goes")
            shape = tuple(gradient.shape) if hasattr(gradient, "shape") else np.shape(gradient)
            if gradient is not None and shape != variable.shape:
                raise ValueError(f"{where}: the gradient for Variable {variable.name!r} has shape "
                                 f"{shape}, the Variable {variable.shape}; a gradient has its "
                                 "Variable's shape")
            pairs.append((gradient, variable))
        _refuse_repeats([variable for _, variable in pairs], f"{where}: grads_and_vars")
        return pairs

    @contextlib.contextmanager
    def _all_or_nothing(self, variables: list[Variable]):
        """Run one step that assigns ``variables``: if anything cuts it short (an error, or
        Ctrl-C between two assignments), the Variables, their state and ``iterations`` are
        put back as they were, so no Variable is left a step ahead of the others."""
        if ACTIVE_TRACE.get() is not None:  # a trace keeps nothing: st.function assigns the
            yield                            # kernel's results after each call
            return
        slots = {id(v): dict(self._slots.get(id(v), {})) for v in variables}
        state = [self.iterations, *variables, *(s for d in slots.values() for s in d.values())]
        before = [(v, v.value()) for v in state]  # arrays are swapped on assign, never changed
        try:
            yield
        except BaseException:
            with _held_interrupts():  # the restoring itself is not cut short
                for v, value in before:
                    v.assign(value, read_value=False)
                for v in variables:  # state created by the step goes: it starts afresh
                    self._slots[id(v)] = slots[id(v)]
            raise

    # ------------------------------------------------------------ state
    def slot(self, variable: Variable, name: str, initial: float = 0.0) -> Variable:
        """The state Variable ``name`` of ``variable``: created on first use (``initial``
        everywhere, the Variable's shape and dtype), the same object afterwards.

        Parameters
        ----------
        variable : Variable
            The trained Variable the state belongs to.
        name : str
            The state's name (``"m"``, ``"momentum"``, ...); the Variable is named
            ``variable.name/name``.
        initial : float, default 0.0
            Its value when created.

        Returns
        -------
        Variable
            Non-trainable, on the device of ``variable``.

        Examples
        --------
        >>> import symtape as st
        >>> w = st.Variable([1.0, 2.0], name="w")
        >>> st.optimizers.Adam().slot(w, "m").numpy()
        array([0., 0.])
        """
        slots = self._slots.setdefault(id(variable), {})
        self._owners[id(variable)] = variable
        if name not in slots:
            value = np.full(variable.shape, initial, dtype=variable.dtype)
            slots[name] = Variable(on_device_of(value, variable.array),  # the Variable's device
                                   name=f"{variable.name}/{name}", trainable=False)
        return slots[name]

    def variables(self) -> list[Variable]:
        """The optimizer's own Variables: ``iterations`` and every state Variable.

        Examples
        --------
        >>> import symtape as st
        >>> [v.name for v in st.optimizers.SGD().variables()]
        ['SGD/iterations']
        """
        return [self.iterations] + [s for slots in self._slots.values() for s in slots.values()]

    def _learning_rate(self):
        lr = self.learning_rate
        if not callable(lr):
            return lr
        value = lr(self.iterations.value())
        if isinstance(value, numbers.Number):  # a schedule's plain numbers are checked too
            _checked_learning_rate(f"{self.name}: the learning-rate schedule's result", value)
        return value

    def update(self, variable: Variable, gradient, lr) -> None:  # pragma: no cover
        """Apply one step of this optimizer's rule to ``variable`` (subclasses define it).

        Called by ``apply_gradients`` inside one all-or-nothing step; written with symtape
        ops and ``assign`` so it traces inside ``st.function``.

        Parameters
        ----------
        variable : Variable
            The Variable to update in place.
        gradient : Tensor or array
            Its gradient, of its shape and dtype.
        lr : float or Tensor
            The learning rate of this step (a schedule already evaluated).
        """
        raise NotImplementedError

    def _step(self):
        """``t``, the 1-based number of the step being taken, as a float Tensor."""
        return ops.cast(self.iterations.value() + 1, np.float64)

    def __repr__(self) -> str:
        return f"<st.optimizers.{type(self).__name__} learning_rate={self.learning_rate!r}>"


def _refuse_repeats(variables: list[Variable], where: str) -> None:
    seen: set[int] = set()
    for variable in variables:
        if id(variable) in seen:
            raise ValueError(f"{where} lists Variable {variable.name!r} twice; list each Variable "
                             "once (it takes one step per call; add up its gradients first if "
                             "it has several)")
        seen.add(id(variable))


def _real(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool, a string or None), else None."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _checked_learning_rate(owner: str, value):
    """A schedule (callable), or a finite positive number: else an error with the fix."""
    if callable(value) or (isinstance(value, (Tensor, Variable)) and value.shape == ()
                           and value.dtype.kind == "f"):
        return value  # a schedule, or a scalar Tensor or Variable (Keras takes both)
    number = _real(value)
    if number is None:
        hint = "a number such as 0.01"
        if isinstance(value, str) and _real_text(value) is not None:
            hint = f"learning_rate={_real_text(value)!r}, a number"
        raise TypeError(f"{owner}: learning_rate must be a positive number or a schedule (a "
                        "callable taking the step count), got "
                        f"{_describe(value)}; write {hint}")
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{owner}: learning_rate must be finite and positive, got {number!r}; "
                         "a step size such as 0.01 (smaller if the loss diverges)")
    return value


def _real_text(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _describe(value) -> str:
    return "None" if value is None else f"the {type(value).__name__} {value!r}"


def _hyperparameter(owner: str, label: str, value, interval: str,
                    inside: Callable[[float], bool]) -> float:
    """``value`` as a float, if it is a finite real number for which ``inside`` holds."""
    number = _real(value)
    if number is None:
        raise TypeError(f"{owner}: {label} must be a number in {interval}, got {_describe(value)}")
    if not (math.isfinite(number) and inside(number)):
        raise ValueError(f"{owner}: {label} must be in {interval}, got {number!r}")
    return number


def _fraction(value: float) -> bool:
    return 0 <= value < 1


def _positive(value: float) -> bool:
    return value > 0


@contextlib.contextmanager
def _held_interrupts():
    """Hold Ctrl-C (SIGINT) until the block is done, then deliver it to whoever handled it
    before: a block of assignments is then never cut in the middle."""
    if (threading.current_thread() is not threading.main_thread()  # handlers run there only
            or signal.getsignal(signal.SIGINT) is None):  # not Python's to replace and restore
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


class SGD(Optimizer):
    """Gradient descent, with momentum and Nesterov momentum (``keras.optimizers.SGD``).

    ``momentum = 0``: ``w -= lr * g``. Otherwise ``m = momentum * m - lr * g``, then
    ``w += m`` (or ``w += momentum * m - lr * g`` with ``nesterov=True``).

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable, default 0.01
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step.
    momentum : float in [0, 1], default 0.0
    nesterov : bool, default False
    name : str, default 'SGD'
        Names the optimizer in messages and its state Variables (``SGD/iterations``).

    Raises
    ------
    TypeError
        If a hyperparameter is not a number (or ``learning_rate`` not a schedule).
    ValueError
        If a hyperparameter is outside its interval.

    Examples
    --------
    >>> import symtape as st
    >>> opt = st.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    >>> x = st.Variable(1.0)
    >>> for _ in range(2):
    ...     _ = opt.apply_gradients([(st.constant(1.0), x)])
    >>> round(float(x.numpy()), 10)  # m = -0.1, then -0.19
    0.71
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 name: str = "SGD"):
        super().__init__(learning_rate, name)
        self.momentum = _hyperparameter(name, "momentum", momentum, "[0, 1]", lambda m: 0 <= m <= 1)
        self.nesterov = bool(nesterov)

    def update(self, variable, gradient, lr):
        if self.momentum == 0:
            variable.assign_sub(lr * gradient)
            return
        m = self.slot(variable, "momentum")
        m.assign(self.momentum * m - lr * gradient)
        if self.nesterov:
            variable.assign_add(self.momentum * m - lr * gradient)
        else:
            variable.assign_add(m)


class Adam(Optimizer):
    """Adam (``keras.optimizers.Adam``): bias-corrected first and second moments.

    ``lr_t = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``, ``m += (g - m) * (1 - beta_1)``,
    ``v += (g**2 - v) * (1 - beta_2)``, ``w -= lr_t * m / (sqrt(v) + epsilon)`` (with
    ``amsgrad``, ``v`` is replaced by its running maximum).

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable, default 0.001
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step.
    beta_1, beta_2 : float in [0, 1), default 0.9 and 0.999
        Decay rates of the first and second moment estimates.
    epsilon : float > 0, default 1e-7
        Added to ``sqrt(v)`` so a step never divides by 0.
    amsgrad : bool, default False
        Use the running maximum of ``v`` (AMSGrad).
    name : str, default 'Adam'
        Names the optimizer in messages and its state Variables (``Adam/iterations``).

    Raises
    ------
    TypeError
        If a hyperparameter is not a number (or ``learning_rate`` not a schedule).
    ValueError
        If a hyperparameter is outside its interval.

    Examples
    --------
    >>> import symtape as st
    >>> w = st.Variable(0.0, name="w")
    >>> opt = st.optimizers.Adam(learning_rate=0.1)
    >>> for _ in range(1000):
    ...     _ = opt.minimize(lambda: w**2 - 10*w + 25, [w])
    >>> round(float(w.numpy()), 3)
    5.0
    """

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, name: str = "Adam"):
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2 = (_hyperparameter(name, label, beta, "[0, 1)", _fraction)
                                    for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)))
        self.epsilon = _hyperparameter(name, "epsilon", epsilon, "(0, inf)", _positive)
        self.amsgrad = bool(amsgrad)

    def update(self, variable, gradient, lr):
        t = ops.cast(self._step(), variable.dtype)
        lr_t = lr * ops.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        m, v = self.slot(variable, "m"), self.slot(variable, "v")
        m.assign_add((gradient - m) * (1 - self.beta_1))
        v.assign_add((ops.square(gradient) - v) * (1 - self.beta_2))
        if self.amsgrad:
            v_hat = self.slot(variable, "v_hat")
            v = v_hat.assign(ops.maximum(v_hat, v))
        variable.assign_sub(lr_t * m / (ops.sqrt(v) + self.epsilon))


class RMSprop(Optimizer):
    """RMSprop (``keras.optimizers.RMSprop``): steps scaled by a running RMS of gradients.

    ``a = rho * a + (1 - rho) * g**2``; ``centered`` also tracks the mean gradient ``mg``
    and divides by ``sqrt(a - mg**2 + epsilon)`` instead of ``sqrt(a + epsilon)``; with
    ``momentum``, the increments go through a momentum Variable.

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable, default 0.001
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step.
    rho : float in [0, 1), default 0.9
        Decay rate of the running mean of squared gradients.
    momentum : float in [0, 1), default 0.0
    epsilon : float > 0, default 1e-7
    centered : bool, default False
        Divide by an estimate of the gradient's variance rather than its second moment.
    name : str, default 'RMSprop'
        Names the optimizer in messages and its state Variables (``RMSprop/iterations``).

    Raises
    ------
    TypeError
        If a hyperparameter is not a number (or ``learning_rate`` not a schedule).
    ValueError
        If a hyperparameter is outside its interval.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(1.0)
    >>> opt = st.optimizers.RMSprop(learning_rate=0.01)
    >>> _ = opt.apply_gradients([(st.constant(2.0), x)])
    >>> round(float(x.numpy()), 6)  # 1 - 0.01 * 2 / sqrt(0.1 * 4 + 1e-7)
    0.968377
    """

    def __init__(self, learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, name: str = "RMSprop"):
        super().__init__(learning_rate, name)
        self.rho = _hyperparameter(name, "rho", rho, "[0, 1)", _fraction)
        self.momentum = _hyperparameter(name, "momentum", momentum, "[0, 1)", _fraction)
        self.epsilon = _hyperparameter(name, "epsilon", epsilon, "(0, inf)", _positive)
        self.centered = bool(centered)

    def update(self, variable, gradient, lr):
        a = self.slot(variable, "velocity")
        a.assign(self.rho * a + (1 - self.rho) * ops.square(gradient))
        denominator = a + self.epsilon
        if self.centered:
            mg = self.slot(variable, "average_gradient")
            mg.assign(self.rho * mg + (1 - self.rho) * gradient)
            denominator = denominator - ops.square(mg)
        increment = lr * gradient / ops.sqrt(denominator)
        if self.momentum > 0:
            m = self.slot(variable, "momentum")
            m.assign(self.momentum * m + increment)
            variable.assign_sub(m)
        else:
            variable.assign_sub(increment)


class Adagrad(Optimizer):
    """Adagrad (``keras.optimizers.Adagrad``): ``acc += g**2``, ``w -= lr * g / sqrt(acc + eps)``.

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable, default 0.001
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step.
    initial_accumulator_value : float >= 0, default 0.1
        The accumulator's starting value.
    epsilon : float > 0, default 1e-7
    name : str, default 'Adagrad'
        Names the optimizer in messages and its state Variables (``Adagrad/iterations``).

    Raises
    ------
    TypeError
        If a hyperparameter is not a number (or ``learning_rate`` not a schedule).
    ValueError
        If a hyperparameter is outside its interval.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable(1.0)
    >>> opt = st.optimizers.Adagrad(learning_rate=0.1)
    >>> _ = opt.apply_gradients([(st.constant(1.0), x)])
    >>> round(float(x.numpy()), 6)  # 1 - 0.1 / sqrt(0.1 + 1 + 1e-7)
    0.904654
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, name: str = "Adagrad"):
        super().__init__(learning_rate, name)
        self.initial_accumulator_value = _hyperparameter(
            name, "initial_accumulator_value", initial_accumulator_value, "[0, inf)",
            lambda a: a >= 0)
        self.epsilon = _hyperparameter(name, "epsilon", epsilon, "(0, inf)", _positive)

    def update(self, variable, gradient, lr):
        acc = self.slot(variable, "accumulator", self.initial_accumulator_value)
        acc.assign_add(ops.square(gradient))
        variable.assign_sub(lr * gradient / ops.sqrt(acc + self.epsilon))


class Newton(Optimizer):
    """Damped Newton steps with the exact Hessian, safeguarded by a backtracking line search.

    Each ``minimize`` call solves ``(H + mu I) d = -g`` for all Variables at once, with
    ``mu`` the smallest multiple of ``damping`` (growing tenfold) that makes the matrix
    positive definite, then halves the step from ``learning_rate`` until the loss decreases
    enough (Armijo's condition), so a poor start does not diverge. The loss, its gradient
    and its exact Hessian are compiled on the first step (``st.function``) and run as
    kernels afterwards. Needs the loss itself: ``apply_gradients`` is not available; the
    step itself runs eagerly (the linear algebra is NumPy's).

    Parameters
    ----------
    learning_rate : float, scalar Tensor or callable, default 1.0
        The step size: a finite positive number, or a schedule called with the step count
        (``iterations``, a Tensor) before each step. The line search starts from this
        multiple of the Newton step.
    damping : float > 0, default 1e-8
        The first ``mu`` tried (relative to the largest diagonal entry of ``H``) when ``H``
        itself is not positive definite; ``mu`` then grows tenfold.
    max_backtracks : int >= 1, default 40
        The most trial steps the line search takes (halving each time); if none decreases
        the loss enough, the Variables stay where they were.
    sparse : bool or None, default None
        Use the sparse Hessian and a sparse solver; None: when the Variables have more
        than 64 entries in all.
    name : str, default 'Newton'
        Names the optimizer in messages and its state Variables (``Newton/iterations``).

    Raises
    ------
    TypeError
        If a hyperparameter is not a number (or ``learning_rate`` not a schedule).
    ValueError
        If a hyperparameter is outside its interval.

    Examples
    --------
    >>> import symtape as st
    >>> x = st.Variable([-1.2, 1.0], name="x")
    >>> opt = st.optimizers.Newton()
    >>> rosen = lambda: 100 * (x[1] - x[0]**2)**2 + (1 - x[0])**2
    >>> for _ in range(40):
    ...     _ = opt.minimize(rosen, [x])
    >>> [round(float(v), 6) for v in x.numpy()]
    [1.0, 1.0]
    """

    def __init__(self, learning_rate=1.0, damping: float = 1e-8, max_backtracks: int = 40,
                 sparse: bool | None = None, name: str = "Newton"):
        super().__init__(learning_rate, name)
        self.damping = _hyperparameter(name, "damping", damping, "(0, inf)", _positive)
        if isinstance(max_backtracks, bool) or not isinstance(max_backtracks, numbers.Integral) \
                or max_backtracks < 1:
            raise ValueError(f"{name}: max_backtracks must be a whole number >= 1, got "
                             f"{max_backtracks!r}")
        self.max_backtracks = int(max_backtracks)
        self.sparse = sparse  # None: sparse above 64 entries in all
        self._kernels: dict = {}

    def apply_gradients(self, grads_and_vars):
        raise TypeError("Newton needs the loss, not only its gradient: call "
                        "minimize(loss_fn, var_list)")

    def minimize(self, loss, var_list, tape=None):
        """One damped Newton step with line search on ``loss()``; returns the loss before it.

        Parameters
        ----------
        loss : callable
            Called with no arguments, returns the scalar loss.
        var_list : list of Variable
            The Variables to update, each once.
        tape : GradientTape, optional
            Accepted for the common signature and ignored: the derivatives come from
            kernels compiled from ``loss``.

        Returns
        -------
        Tensor
            The loss before the step.

        Raises
        ------
        TypeError
            If ``loss`` is not callable or ``var_list`` is not a list of Variables.
        ValueError
            If ``var_list`` is empty or lists a Variable twice.
        """
        variables = self._checked_var_list(var_list)
        if not callable(loss):
            raise TypeError(f"{self.name}.minimize: `loss` must be a callable returning the loss")
        sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in variables]
        sparse = self.sparse if self.sparse is not None else sum(sizes) > 64
        value_of, derivatives = self._compiled(loss, variables, sparse)
        value, g, H = derivatives()  # kernels: the Variables are read now
        step = (_sparse_newton_step if sparse else _damped_newton_step)(H, g, self.damping)
        # the line search puts trial points on the Variables: if it is cut short there (an
        # error, Ctrl-C), they go back to the start
        with self._all_or_nothing(variables):
            self._line_search(value_of, variables, float(value), g, step)
            self.iterations.assign_add(1)
        return Tensor(value)

    def _compiled(self, loss, variables, sparse: bool):
        """The loss, and ``() -> (value, gradient, Hessian)`` from kernels compiled once per
        loss (a new lambda with the same code and captured objects is the same loss)."""
        from symtape.transforms.functional import Function

        closure = tuple(id(cell.cell_contents) for cell in (loss.__closure__ or ()))
        key = (getattr(loss, "__code__", loss), closure, tuple(id(v) for v in variables), sparse)
        compiled = self._kernels.get(key)
        if compiled is None:
            make = _sparse_derivatives if sparse else _dense_derivatives
            compiled = (Function(loss, wrap_outputs=False), make(loss, variables))
            if len(self._kernels) >= 16:  # a few losses at a time; never grows without bound
                self._kernels.pop(next(iter(self._kernels)))
            self._kernels[key] = compiled
        return compiled

    def _line_search(self, value_of, variables, f0: float, g: np.ndarray, step: np.ndarray):
        start = [v.numpy() for v in variables]
        slope = float(g @ step)
        alpha = float(self._learning_rate())
        # near a minimum the decrease a step promises falls below the rounding error of
        # the loss itself; without this allowance Armijo's test rejects the good full steps
        # there, and the step halves every iteration instead of converging quadratically
        rounding = 16 * np.finfo(np.float64).eps * abs(f0)
        for _ in range(self.max_backtracks):
            _assign_flat(variables, start, alpha * step)
            trial = float(value_of())
            if np.isfinite(trial) and trial <= f0 + 1e-4 * alpha * slope + rounding:
                return
            alpha /= 2
        _assign_flat(variables, start, 0 * step)  # no acceptable step: stay where we were


def _flat(arrays) -> np.ndarray:
    return np.concatenate([to_host(a).astype(float).reshape(-1) for a in arrays])


def _dense_derivatives(loss, variables) -> Callable:
    """``() -> (value, gradient, dense Hessian)``, flattened over ``variables``."""
    from symtape.transforms.functional import Function

    def derivatives():
        with GradientTape(persistent=True) as tape:
            value = loss()
        return (value, tape.gradient(value, variables, unconnected_gradients="zero"),
                tape.hessian(value, variables, unconnected_gradients="zero"))

    compiled = Function(derivatives, wrap_outputs=False)
    sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in variables]

    def evaluate():
        value, grads, blocks = compiled()
        H = np.block([[to_host(b).astype(float).reshape(m, n) for b, n in zip(row, sizes)]
                      for row, m in zip(blocks, sizes)])
        return value, _flat(grads), H

    return evaluate


def _sparse_derivatives(loss, variables) -> Callable:
    """``() -> (value, gradient, sparse Hessian)``: the pattern from the gradient's graph, the
    values from coloured Hessian-vector products in one batched kernel call."""
    import scipy.sparse

    from symtape.transforms.functional import Function
    from symtape.transforms.sparse import hessian_pattern
    from symtape.transforms.vmap import vmap

    seen: dict = {}

    def products(seeds):
        with GradientTape() as outer:
            with GradientTape() as inner:
                value = loss()
            grads = inner.gradient(value, variables, unconnected_gradients="zero")
            seen["grads"] = grads
            dot = 0
            for g, seed in zip(grads, seeds):
                dot = dot + ops.reduce_sum(g * seed)
        return value, grads, outer.gradient(dot, variables, unconnected_gradients="zero")

    compiled = Function(products, wrap_outputs=False)
    compiled.get_concrete_function([np.zeros(v.shape, v.dtype) for v in variables])
    indptr, indices, colours = hessian_pattern(seen["grads"], variables)
    n, count = len(indptr) - 1, int(colours.max()) + 1 if len(colours) else 0
    rows = np.repeat(np.arange(n), np.diff(indptr))
    take = colours[indices] * n + rows
    seeds_by_colour = (np.arange(count)[:, None] == colours[None, :]).astype(float)
    shapes = [v.shape for v in variables]
    offsets = np.cumsum([0] + [int(np.prod(s, dtype=np.int64)) for s in shapes])
    seeds = [seeds_by_colour[:, a:b].reshape((count,) + tuple(s))
             for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]

    mapped = vmap(compiled)

    def evaluate():
        value, grads, hv = mapped(seeds)  # one kernel call: a row per colour
        product = np.concatenate([to_host(p).reshape(count, -1) for p in hv], axis=1)
        H = scipy.sparse.csr_matrix((product.reshape(-1)[take], indices, indptr), shape=(n, n))
        return to_host(value).reshape(-1)[0], _flat([g[0] for g in grads]), H

    return evaluate


def _sparse_newton_step(H, g: np.ndarray, damping: float) -> np.ndarray:
    """``-(H + mu I)^-1 g`` for a sparse ``H``, with ``mu`` chosen as in the dense case: the
    smallest (from ``damping``, x10) for which the matrix is positive definite, read off the
    pivots of an LU factorization with diagonal pivoting (``LDL^T`` in effect)."""
    import scipy.sparse
    import scipy.sparse.linalg

    scale = max(1.0, float(np.abs(H.diagonal()).max())) if H.shape[0] else 1.0
    identity = scipy.sparse.identity(len(g), format="csc")
    mu = 0.0
    for _ in range(30):
        matrix = (H + mu * scale * identity).tocsc()
        try:
            lu = scipy.sparse.linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A",
                                          diag_pivot_thresh=0.0,
                                          options={"SymmetricMode": True})
            # diagonal pivots only (rows permuted as the columns): then the pivots are D's
            if np.array_equal(lu.perm_r, lu.perm_c) and np.all(lu.U.diagonal() > 0):
                return lu.solve(-g)
        except RuntimeError:  # exactly singular
            pass
        mu = damping if mu == 0 else mu * 10
    return -g / scale


def _damped_newton_step(H: np.ndarray, g: np.ndarray, damping: float) -> np.ndarray:
    """``-(H + mu I)^-1 g`` with the smallest ``mu`` (from ``damping``, x10) giving a
    positive definite matrix; a steepest-descent step if none does."""
    scale = max(1.0, float(np.abs(np.diag(H)).max())) if H.size else 1.0
    mu = 0.0
    for _ in range(30):
        try:
            factor = np.linalg.cholesky(H + mu * scale * np.eye(len(g)))
        except np.linalg.LinAlgError:
            mu = damping if mu == 0 else mu * 10
            continue
        return -np.linalg.solve(factor.T, np.linalg.solve(factor, g))
    return -g / scale


def _assign_flat(variables, start, delta: np.ndarray) -> None:
    offset = 0
    for variable, value in zip(variables, start):
        size = int(np.prod(variable.shape, dtype=np.int64))
        variable.assign(value + delta[offset:offset + size].reshape(variable.shape))
        offset += size
