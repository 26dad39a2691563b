"""Lennard-Jones clusters minimized with exact (sparse) Hessians.

The energy, in reduced units, is ``E = sum over pairs 4 (r^-12 - r^-6)``, written on one
vector of coordinates ``x = (x1, y1, z1, x2, ...)`` with index arrays for the pairs.

1. LJ7 and LJ13 with every pair: ``st.optimize.minimize(method="trust-exact")`` (exact
   compiled Hessian) from perturbed known structures reaches the published global minima,
   -16.505384 and -44.326801. Every atom interacts with every other, so the Hessian is
   dense: ``st.hessian(energy, sparse=True)`` honestly reports all ``(3N)^2`` entries.
2. A larger cluster with the usual cutoff ``rc = 2.5``: only pairs from a neighbour list
   (within ``rc`` plus a skin, fixed at the start) enter the energy, so the Hessian is
   genuinely sparse: its exact pattern comes from the graph, and ``st.optimizers.Newton(
   sparse=True)`` factorizes it with SciPy's sparse LU. The pair energy has its Taylor
   polynomial in ``r^2`` at the cutoff subtracted, so energy, forces and Hessian are
   continuous there and Newton converges quadratically. At the end the script checks that
   no pair outside the list has come within the cutoff (else the list would be stale).

Run: ``python examples/lennard_jones.py`` (``--small`` for a smaller cutoff cluster,
``--plot-dir DIR`` for where ``lennard_jones.png`` goes; default the current directory).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

import symtape as st

BOND = 2 ** (1 / 6)  # the pair potential's minimum
KNOWN_MINIMA = {7: -16.505384, 13: -44.326801}  # the Cambridge Cluster Database
CUTOFF, SKIN = 2.5, 0.3


def pentagonal_bipyramid() -> np.ndarray:
    """LJ7's global minimum, roughly: a ring of five atoms and two on its axis."""
    angles = 2 * np.pi * np.arange(5) / 5
    radius = BOND / (2 * np.sin(np.pi / 5))  # neighbours in the ring one bond apart
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(5)], axis=1)
    apex = np.sqrt(BOND**2 - radius**2)
    return np.vstack([ring, [[0, 0, apex], [0, 0, -apex]]])


def icosahedron() -> np.ndarray:
    """LJ13's global minimum, roughly: a centre and the 12 vertices of an icosahedron."""
    phi = (1 + np.sqrt(5)) / 2
    vertices = [p for a in (-1, 1) for b in (-1, 1) for p in
                ((0, a, b * phi), (a, b * phi, 0), (b * phi, 0, a))]
    vertices = np.array(vertices) * BOND / np.linalg.norm(vertices[0])
    return np.vstack([np.zeros(3), vertices])


def fcc_ball(n: int) -> np.ndarray:
    """The ``n`` sites of a face-centred cubic lattice nearest its centre (a round cluster)."""
    k = int(np.ceil((n / 4) ** (1 / 3))) + 1
    cells = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    sites = (cells + basis).reshape(-1, 3) * BOND * np.sqrt(2)  # nearest neighbours at BOND
    distance = np.linalg.norm(sites - sites.mean(axis=0), axis=1)
    return sites[np.argsort(distance, kind="stable")[:n]]


def perturbed(positions: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (positions + rng.normal(0, scale, positions.shape)).reshape(-1)


def pair_energy(i: np.ndarray, j: np.ndarray, cutoff: float | None = None):
    """``energy(x)`` summed over the pairs ``(i[k], j[k])``, truncated at ``cutoff``."""
    def lj(s):  # of the squared distance: no square roots anywhere
        inv6 = 1 / (s * s * s)
        return 4 * (inv6 * inv6 - inv6)

    if cutoff is not None:
        c = cutoff**2  # the value, first and second derivatives of lj(s) at s = c
        taylor = (4 * (c**-6 - c**-3), 4 * (-6 * c**-7 + 3 * c**-4), 4 * (42 * c**-8 - 12 * c**-5))

    def energy(x):
        X = st.reshape(x, (-1, 3))
        d = X[i] - X[j]
        s = st.reduce_sum(d * d, axis=1)
        if cutoff is None:
            return st.reduce_sum(lj(s))
        u = s - c  # lj minus its Taylor polynomial at c: vanishes to second order there
        shifted = lj(s) - (taylor[0] + taylor[1] * u + taylor[2] / 2 * u * u)
        return st.reduce_sum(st.where(s < c, shifted, 0.0))

    return energy


@dataclass
class Minimum:
    atoms: int
    energy: float
    gradient_norm: float
    hessian_nonzeros: int
    history: list  # energy per iteration, or |gradient| before each Newton step
    positions: np.ndarray  # (atoms, 3)


def known_cluster(n: int, seed: int = 0) -> Minimum:
    """LJ7 or LJ13 with every pair, from the known structure perturbed by 0.05."""
    start = {7: pentagonal_bipyramid, 13: icosahedron}[n]()
    energy = pair_energy(*np.triu_indices(n, 1))
    result = st.optimize.minimize(energy, perturbed(start, 0.05, seed), method="trust-exact",
                                  options={"gtol": 1e-12})
    gradient = st.grad(energy)(result.x)
    nonzeros = st.hessian(energy, sparse=True)(result.x).nnz
    return Minimum(n, float(result.fun), float(np.linalg.norm(gradient)), nonzeros,
                   list(result.history), result.x.reshape(-1, 3))


def neighbour_pairs(positions: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return np.nonzero(np.triu(distance < radius, 1))


def cutoff_cluster(n: int, seed: int = 0, max_steps: int = 30):
    """A ``n``-atom fcc ball, perturbed by 0.03, relaxed by Newton on the sparse Hessian.

    Returns ``(Minimum, hessian)``: the sparse Hessian (a ``scipy.sparse`` matrix) at the
    minimum.
    """
    sites = fcc_ball(n)
    i, j = neighbour_pairs(sites, CUTOFF + SKIN)
    energy = pair_energy(i, j, CUTOFF)
    x = st.Variable(perturbed(sites, 0.03, seed), name="x")
    gradient = st.grad(energy)
    opt = st.optimizers.Newton(sparse=True)
    norms = [float(np.linalg.norm(gradient(x.numpy())))]
    for _ in range(max_steps):
        opt.minimize(lambda: energy(x), [x])
        norms.append(float(np.linalg.norm(gradient(x.numpy()))))
        if norms[-1] < 1e-10:
            break
    positions = x.numpy().reshape(-1, 3)
    listed = set(zip(i.tolist(), j.tolist()))
    stale = [p for p in zip(*neighbour_pairs(positions, CUTOFF)) if p not in listed]
    if stale:
        raise RuntimeError(f"{len(stale)} pairs moved within the cutoff from outside the "
                           "neighbour list: use a larger SKIN")
    hessian = st.hessian(energy, sparse=True)(x.numpy())
    value = float(st.function(energy)(x.numpy()))
    return Minimum(n, value, norms[-1], hessian.nnz, norms, positions), hessian


def plot(minimum: Minimum, hessian, directory) -> None:
    from plotting import save_figure

    def draw(figure):
        left, right = figure.subplots(1, 2)
        left.semilogy(minimum.history, "o-")
        left.set(xlabel="Newton iteration", ylabel="|gradient|",
                 title=f"LJ{minimum.atoms}, cutoff {CUTOFF}")
        right.spy(hessian, markersize=0.3)
        right.set_title(f"Hessian: {hessian.nnz} of {hessian.shape[0] ** 2} entries", fontsize=9)

    save_figure(draw, directory, "lennard_jones.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a smaller cutoff cluster (tests)")
    parser.add_argument("--plot-dir", default=".", help="where to write lennard_jones.png")
    args = parser.parse_args(argv)

    print("every pair, trust-exact on the exact Hessian:")
    for n, known in KNOWN_MINIMA.items():
        m = known_cluster(n)
        print(f"  LJ{n}: E = {m.energy:.8f} (known {known}), |gradient| = "
              f"{m.gradient_norm:.1e}, {len(m.history)} iterations, Hessian nonzeros "
              f"{m.hessian_nonzeros} = (3N)^2: dense")
    n = 38 if args.small else 147
    tic = time.perf_counter()
    m, hessian = cutoff_cluster(n)
    seconds = time.perf_counter() - tic
    print(f"fcc ball of {n} atoms, cutoff {CUTOFF}: Newton on the sparse Hessian ({seconds:.1f} s)")
    for k, norm in enumerate(m.history):
        print(f"  iteration {k:2d}: |gradient| = {norm:.3e}")
    print(f"  E = {m.energy:.8f} ({m.energy / n:.4f} per atom); Hessian nonzeros "
          f"{m.hessian_nonzeros} of {(3 * n) ** 2} ({m.hessian_nonzeros / (3 * n) ** 2:.0%})")
    plot(m, hessian, args.plot_dir)


if __name__ == "__main__":
    main()
