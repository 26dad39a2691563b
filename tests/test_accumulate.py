"""The reverse sweep's plan: order, relevance, and what is left out."""

import symtape as st
from symtape.core import accumulate


def test_plan_orders_inputs_before_consumers_and_prunes_irrelevant_nodes():
    x, w = st.Variable(1.0, name="x"), st.Variable(2.0, name="w")
    with st.GradientTape() as tape:
        a = x * 3
        b = w * w  # does not lead to x
        y = a + b
    p = accumulate.plan([y], {id(x)}, tape._recorded)
    position = {id(node): i for i, node in enumerate(p.order)}
    assert position[id(a)] < position[id(y)] and position[id(b)] < position[id(y)]
    assert id(a) in p.relevant and id(b) not in p.relevant
    stepped = [node for node, _ in p.steps]
    assert stepped[0] is y and b not in stepped


def test_integer_paths_carry_no_gradient():
    x = st.Variable(2.0)
    with st.GradientTape() as tape:
        k = st.cast(x, st.int64) * 3  # integer: not differentiable
        y = st.cast(k, st.float64) + x
    p = accumulate.plan([y], {id(x)}, tape._recorded)
    assert id(k) not in p.relevant
    assert float(tape.gradient(y, x)) == 1.0
