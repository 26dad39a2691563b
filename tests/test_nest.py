"""Nested structures of sources and targets."""

from symtape.core.nest import flatten


def test_flatten_and_rebuild_round_trip():
    structure = {"w": [1, (2, 3)], "b": 4}
    leaves, rebuild = flatten(structure)
    assert leaves == [1, 2, 3, 4]
    assert rebuild(["a", "b", "c", "d"]) == {"w": ["a", ("b", "c")], "b": "d"}


def test_a_single_leaf_and_none_leaves():
    leaves, rebuild = flatten(5)
    assert leaves == [5] and rebuild([6]) == 6
    leaves, rebuild = flatten([None, 1])
    assert leaves == [None, 1] and rebuild([7, 8]) == [7, 8]


def test_namedtuples_are_leaves():
    from collections import namedtuple

    Point = namedtuple("Point", "x y")
    leaves, _ = flatten([Point(1, 2)])
    assert leaves == [Point(1, 2)]


def test_builder_rebuilds_pairs_leaves_and_deeper_nests_as_flatten_does():
    from symtape.core.nest import builder

    for structure in [(1, (2, 3)), [1, [2, (3, 4)]], ({"a": 1}, [2]), ((1, 2), (3, 4)),
                      (1, 2, (3, 4)), 7, [(), 1], {"w": (1, [2, 3]), "b": 4}]:
        leaves, rebuild = flatten(structure)
        values = [f"v{i}" for i in range(len(leaves))]
        built = builder(structure)(values)
        assert built == rebuild(values)
        assert type(built) is type(rebuild(values))
    assert builder((1, [2, 3]))(["p", "q", "r"]) == ("p", ["q", "r"])
