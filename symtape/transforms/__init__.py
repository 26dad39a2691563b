"""The transforms layer: ``st.function``, the derivative transforms (grad, jacobian, hessian),
sparse derivatives and ``st.vmap``. Imports only from the layers below."""
