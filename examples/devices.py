"""Devices: where values live and kernels run, spelled as TensorFlow's ``tf.config`` and
``tf.device``.

``st.config.list_physical_devices('GPU')`` lists CuPy's CUDA devices (an empty list, not
an error, without CuPy or CUDA). ``with st.device('/cpu:0'):`` or ``'/gpu:0'`` chooses
where new values go; ``Tensor.device`` says where a value lives. With a GPU, this script
runs a compiled gradient there and compares it with the CPU's; without one, it prints the
``st.DeviceError`` that asking for ``'/gpu:0'`` raises, which names the cause and the fix,
and shows that CPU work is unaffected.

Run: ``python examples/devices.py`` (``--small``: fewer points).
"""

from __future__ import annotations

import argparse

import numpy as np

import symtape as st


def list_devices() -> tuple[list, list]:
    """``(CPUs, GPUs)`` as ``st.config.list_physical_devices`` lists them."""
    return (st.config.list_physical_devices("CPU"), st.config.list_physical_devices("GPU"))


def placed_on_the_cpu() -> tuple[str, str, str]:
    """A constant, a Variable and an op result made in ``st.device('/cpu:0')``: their devices."""
    with st.device("/cpu:0"):
        x = st.constant([1.0, 2.0])
        v = st.Variable(3.0, name="v")
        y = x * v
    return x.device, v.device, y.device


@st.function
def loss_gradient(x):
    """The derivative of exp(x) sin(x)**2 at every entry of x, compiled.

    The loss is elementwise, so the gradient of its (implicit) sum is the derivative at
    each point. One trace per device (and shape).
    """
    with st.GradientTape() as tape:
        tape.watch(x)
        loss = st.exp(x) * st.sin(x) ** 2
    return tape.gradient(loss, x)


def gradient_on(device: str, points: np.ndarray):
    """The compiled gradient with its argument placed on ``device``: a Tensor living there.

    Raises ``st.DeviceError`` for a GPU when CuPy or CUDA is unusable.
    """
    with st.device(device):
        x = st.constant(points)  # new values go to the current device
    return loss_gradient(x)  # the kernel runs where its arguments live


def gpu_error_message() -> str | None:
    """The ``st.DeviceError`` message for ``'/gpu:0'``, or None where a GPU works."""
    try:
        with st.device("/gpu:0"):
            st.constant(1.0)
    except st.DeviceError as error:
        return str(error)
    return None


def expected_gradient(points: np.ndarray) -> np.ndarray:
    """By hand: d/dx exp(x) sin(x)**2 = exp(x) (sin(x)**2 + 2 sin(x) cos(x))."""
    return np.exp(points) * (np.sin(points) ** 2 + 2 * np.sin(points) * np.cos(points))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer points")
    args = parser.parse_args(argv)

    cpus, gpus = list_devices()
    print(f"CPUs: {[d.name for d in cpus]}; GPUs: {[d.name for d in gpus]}")
    print("made in st.device('/cpu:0'): constant, Variable, product on %s, %s, %s"
          % placed_on_the_cpu())

    points = np.linspace(-1.0, 1.0, 11 if args.small else 1_000_001)
    on_cpu = gradient_on("/cpu:0", points)
    error = np.max(np.abs(on_cpu.numpy() - expected_gradient(points)))
    print(f"compiled gradient at {points.size} points on {on_cpu.device}: "
          f"max |error| vs the formula {error:.1e}")
    # the closed form of a trace at one point: one formula, not one per entry
    print(f"  closed form: {loss_gradient.get_concrete_function(0.0).expr}")

    if gpus:
        on_gpu = gradient_on("/gpu:0", points)
        difference = np.max(np.abs(on_gpu.numpy() - on_cpu.numpy()))
        print(f"the same on {on_gpu.device}: max |GPU - CPU| = {difference:.1e}")
    else:
        print(f"no GPU: st.device('/gpu:0') raises st.DeviceError: {gpu_error_message()}")
        print(f"  and CPU work goes on: st.constant(1.0).device = {st.constant(1.0).device}")


if __name__ == "__main__":
    main()
