"""The recurrent weight's gradient as one large product after the loop, as cuDNN forms it (issue 12).

Backpropagation through a recurrence ``a_t = h_{t-1} W_h + ...`` gives ``dL/dW_h = sum_t h_{t-1}^T g_t``
with ``g_t = dL/da_t``. Differentiating the loop step by step (what ``tf.while_loop`` and ``lax.scan`` do
by default) adds one rank-``batch`` product into a ``[N, 4N]`` accumulator at every step: at batch 32
that is a memory-bound update of the whole 16 MB gradient per step for a 1000-unit LSTM, more time than
the useful products. Here the loop is differentiated with ``W_h`` held constant, and ``g_t`` is read at
a zero *probe* ``e_t`` added to each step's product (:meth:`RecurrentCell.recurrent_product`): the
gradient reaching ``e_t`` is ``g_t``. After the loop, ``dL/dW_h = H_prev^T G`` is one
``[N, batch * T] x [batch * T, 4N]`` product, with ``H_prev`` the loop's outputs shifted by one step
behind the initial ``h``. Values are unchanged (the probe is zero); gradients are the same sums in
another order (float round-off).

The loop's own gradient (inputs, initial states and every other weight) is the backend's: a
``GradientTape`` on TensorFlow, ``jax.vjp`` on JAX, taken inside ``keras.ops.custom_gradient``. Other
backends keep the step-by-step gradient (:func:`supports_hoisted_gradient`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["constant_kernel_matmul", "hoisted_weight_recurrence", "supports_hoisted_gradient"]

#: the loop: ``loop(kernel, projected, probe, *extras) -> (last_output, outputs [B, T, N], *states)``
Loop = Callable[..., Sequence[Any]]


def supports_hoisted_gradient() -> bool:
    """Whether this backend can run :func:`hoisted_weight_recurrence` (TensorFlow and JAX)."""
    return keras.backend.backend() in ("tensorflow", "jax")


def _vjp(fn: Callable[..., Any], primals: list[Any]) -> tuple[list[Any], Callable[[list[Any]], list[Any]]]:
    """``fn(*primals)`` (a flat list) and a function mapping its cotangents to the primals' gradients
    (``None`` on TensorFlow for a primal the outputs do not depend on)."""
    if keras.backend.backend() == "jax":
        import jax

        out, back = jax.vjp(lambda *p: list(fn(*p)), *primals)
        return out, lambda cts: list(back(list(cts)))
    import tensorflow as tf

    # None for what the loop does not use (e.g. the input projection's weights, passed with the rest):
    # zeros there would be added to the real gradient that reaches those weights outside the loop.
    if not tf.executing_eagerly():
        # In a graph (tf.function, the trainers): symbolic gradients. A tape here, beside the caller's,
        # makes TensorFlow build the while loop's gradient at once for possible higher-order use and again
        # when asked: twice the tracing time.
        out = list(fn(*primals))
        return out, lambda cts: tf.gradients(out, primals, grad_ys=cts)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(primals)
        out = list(fn(*primals))
    return out, lambda cts: tape.gradient(out, primals, output_gradients=cts)


def constant_kernel_matmul(h: Any, kernel: Any, kernel_t: Any = None) -> Any:
    """``h @ kernel`` for a ``kernel`` the caller holds constant, differentiated for ``h`` only.

    With ``kernel_t`` (``kernel``'s transpose, made once before the loop) the gradient is
    ``g @ kernel_t``: TensorFlow's CPU product with a transposed operand (``transpose_b``, what the
    default gradient ``g @ kernel^T`` runs) takes about twice as long at a step's shapes
    (``[32, 4000] x [4000, 1000]``). Without it, the plain product.
    """
    if kernel_t is None:
        return ops.matmul(h, kernel)

    @ops.custom_gradient
    def product(h: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> Any:
            return ops.matmul(args[0] if upstream is None else upstream, kernel_t)

        return ops.matmul(h, kernel), grad

    return product(h)


def hoisted_weight_recurrence(
    loop: Loop, kernel: Any, projected: Any, extras: Sequence[Any], probe_width: int
) -> list[Any]:
    """``loop(kernel, projected, probe, *extras)`` whose gradient for ``kernel`` is formed after the loop.

    Args:
      loop: runs the recurrence and returns ``(last_output, outputs, *states)``; ``outputs`` ``[B, T, N]``
        holds every step's output ``h_t``. Step ``t`` computes ``a_t = h_{t-1} kernel`` (``[B, K]``), adds
        its slice of ``probe`` ``[B, T, probe_width]`` (``None`` when ``probe_width`` is 0) to the first
        ``probe_width`` columns of ``a_t`` and adds the other columns unscaled to the same columns of its
        slice of ``projected``. It must take every value it differentiates from its arguments (it gets
        ``kernel`` as a constant, through ``stop_gradient``), none from its closure: JAX's
        ``custom_gradient`` cannot differentiate a closed-over value.
      kernel: the recurrent weight ``[N, K]`` (a tensor).
      projected: the loop's input sequence ``[B, T, P]`` with ``P >= K``.
      extras: the other tensors the loop differentiates (initial states, the cell's other weights, ...);
        ``extras[0]`` is ``h_0`` ``[B, N]``, the previous output the first step multiplies by ``kernel``.
      probe_width: how many leading columns of ``a_t`` need the probe (0 to ``K``).

    Returns:
      ``loop``'s outputs; differentiating them gives ``kernel`` the gradient ``H_prev^T G``, with
      ``G = [dL/d probe, dL/d projected[..., probe_width:K]]``.
    """
    width = int(kernel.shape[-1])

    @ops.custom_gradient
    def recurrence(kernel: Any, projected: Any, *extras: Any) -> Any:
        constant = ops.stop_gradient(kernel)
        primals = [projected, *extras]
        if probe_width:
            shape = ops.shape(projected)
            primals.insert(1, ops.zeros((shape[0], shape[1], probe_width), dtype=projected.dtype))
            out, back = _vjp(lambda *p: loop(constant, *p), primals)
        else:
            out, back = _vjp(lambda p, *e: loop(constant, p, None, *e), primals)
        outputs = out[1]

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, ...]:
            cts = keras.tree.flatten(args if upstream is None else upstream)
            cts = [ops.zeros_like(o) if c is None else c for c, o in zip(cts, out, strict=True)]
            grads = back(cts)
            d_projected, d_extras = grads[0], grads[2:] if probe_width else grads[1:]
            parts = [grads[1]] if probe_width else []
            if probe_width < width:  # the product's columns that join the projection unscaled
                whole = probe_width == 0 and width == int(d_projected.shape[-1])
                parts.append(d_projected if whole else d_projected[..., probe_width:width])
            d_product = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
            h_prev = ops.concatenate([extras[0][:, None], outputs[:, :-1]], axis=1)
            rows = ops.transpose(ops.reshape(h_prev, (-1, int(kernel.shape[0]))))  # [N, B*T]
            # (an einsum "btn,btk->nk" of the same takes ~1.2x as long on TensorFlow's CPU kernels)
            d_kernel = ops.matmul(rows, ops.reshape(d_product, (-1, width)))
            return (d_kernel, d_projected, *d_extras)

        return out, grad

    return list(recurrence(kernel, projected, *extras))
