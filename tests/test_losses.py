"""YouTube-8M losses against the official formulas computed in numpy."""

import keras
import numpy as np
import pytest

from zoo import losses


def _case(seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((5, 7)) < 0.3).astype(np.float32)
    p = rng.random((5, 7)).astype(np.float32)
    p[0, 0], p[1, 1] = 0.0, 1.0  # the epsilon keeps the logs finite
    return y, p


def test_cross_entropy_matches_official_formula():
    y, p = _case()
    eps = 1e-5
    expected = -(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)).sum(axis=1)
    per_example = keras.ops.convert_to_numpy(losses.yt8m_cross_entropy(y, p))
    assert per_example.shape == (5,)
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    assert float(losses.yt8m_cross_entropy(y, p, reduction="mean")) == pytest.approx(
        expected.mean(), rel=1e-5
    )
    assert float(losses.yt8m_cross_entropy(y, p, reduction="sum")) == pytest.approx(expected.sum(), rel=1e-5)
    assert float(losses.YT8MCrossEntropy()(y, p)) == pytest.approx(expected.mean(), rel=1e-5)
    assert np.isfinite(per_example).all()


def test_hinge_matches_definition():
    y, _ = _case(1)
    scores = np.random.default_rng(2).normal(size=y.shape).astype(np.float32) * 2
    expected = np.maximum(0.0, 1.0 - (2 * y - 1) * scores).sum(axis=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.yt8m_hinge(y, scores)), expected, rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(losses.yt8m_hinge(y, scores, b=0.5)),
        np.maximum(0.0, 0.5 - (2 * y - 1) * scores).sum(axis=1),
        rtol=1e-6,
    )
    assert float(losses.YT8MHinge()(y, scores)) == pytest.approx(expected.mean(), rel=1e-6)
    # hand case: y = [1, 0], p = [2, 0.5] -> max(0, 1 - 2) + max(0, 1 + 0.5) = 1.5
    assert float(losses.yt8m_hinge(np.array([[1.0, 0.0]]), np.array([[2.0, 0.5]]))[0]) == pytest.approx(1.5)


def test_loss_objects_serialize_and_reject_bad_reduction():
    obj = keras.losses.deserialize(keras.losses.serialize(losses.YT8MHinge(b=2.0)))
    assert isinstance(obj, losses.YT8MHinge) and obj.b == 2.0
    obj = keras.losses.deserialize(keras.losses.serialize(losses.YT8MCrossEntropy(epsilon=1e-3)))
    assert obj.epsilon == 1e-3
    with pytest.raises(ValueError, match="reduction"):
        losses.yt8m_hinge(np.ones((1, 2)), np.ones((1, 2)), reduction="avg")


def test_usable_in_keras_fit():
    y, _ = _case(3)
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7, activation="sigmoid")])
    model.compile(optimizer="sgd", loss=losses.yt8m_cross_entropy)
    history = model.fit(x, y, epochs=2, verbose=0, batch_size=5)
    assert np.isfinite(history.history["loss"]).all()
