"""Bits per character: a hand-computed case, padding, streaming, and state carried over a split."""

import math

import numpy as np
import pytest

from zoo.metrics import lm


def _logits(rows):
    """Logits whose softmax is exactly the given probability rows."""
    return np.log(np.asarray(rows, dtype=np.float32))


def test_hand_computed_bits_per_character():
    # p(target) = 1/2, 1/4, 1/8 -> 1, 2, 3 bits; the padded 4th position (target -1) must not count.
    logits = _logits([[[0.5, 0.5, 1e-9], [0.25, 0.75, 1e-9], [0.875, 0.125, 1e-9], [0.01, 0.01, 0.98]]])
    targets = np.array([[1, 0, 1, -1]])
    nats, mask = lm.masked_cross_entropy(targets, logits)
    np.testing.assert_allclose(np.asarray(nats), [[math.log(2), math.log(4), math.log(8), 0.0]], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(mask), [[1, 1, 1, 0]])
    assert lm.bits_per_character(float(np.sum(nats)), 3) == pytest.approx(2.0, rel=1e-5)
    metric = lm.BitsPerCharacter()
    metric.update_state(targets, logits)
    assert float(metric.result()) == pytest.approx(2.0, rel=1e-5)
    # streaming: a second batch with one position of 4 bits -> (1 + 2 + 3 + 4) / 4 = 2.5
    metric.update_state(np.array([[2, -1]]), _logits([[[0.875, 0.0625, 0.0625], [1, 1, 1]]]))
    assert float(metric.result()) == pytest.approx(2.5, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        lm.bits_per_character(1.0, 0)


def test_split_bpc_carries_state_across_batches():
    """A fake model whose loss in bits equals the number of batches it has already seen (its state)."""
    calls = []

    def initial_carry(batch_size):
        calls.append(batch_size)
        return np.zeros((batch_size, 1))

    def step(ids, targets, carry):
        mask = (np.asarray(targets) >= 0).astype(np.float64)
        return carry * math.log(2) * mask, carry + 1

    batches = [
        (np.zeros((2, 2), np.int32), np.array([[0, 0], [0, 0]])),  # state 0: 4 x 0 bits
        (np.zeros((2, 2), np.int32), np.array([[0, 0], [0, -1]])),  # state 1: 3 x 1 bit
        (np.zeros((2, 2), np.int32), np.array([[0, -1], [-1, -1]])),  # state 2: 1 x 2 bits
    ]
    result = lm.split_bits_per_character(step, batches, initial_carry)
    assert calls == [2]  # the zero state only once, for the first batch
    assert result["chars"] == 8
    assert result["bpc"] == pytest.approx((0 * 4 + 1 * 3 + 2 * 1) / 8)
    assert result["nats_per_char"] == pytest.approx(result["bpc"] * math.log(2))
    with pytest.raises(ValueError, match="no characters"):
        lm.split_bits_per_character(step, [], initial_carry)
