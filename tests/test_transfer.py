"""zoo/transfer.py: fine-tuning on another label set keeps the backbone and re-initialises the head."""

import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.transfer import feature_extractor, load_weights

CFG = {
    "num_classes": 10,
    "feature_size": 8,
    "feature_sizes": [6, 2],
    "max_frames": 6,
    "sample_frames": 4,
    "cluster_size": 16,
    "hidden_size": 8,
}
RNG = np.random.default_rng(0)
INPUTS = {
    "features": RNG.normal(size=(3, 6, 8)).astype("float32"),
    "num_frames": np.array([6, 2, 4], "int32"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DBoF whose weights and BN statistics differ from any fresh init, saved in all three formats."""
    keras.utils.set_random_seed(1)
    model = zoo.get("yt8m_dbof", **CFG)
    for v in model.trainable_variables:
        v.assign(v + 0.1)
    model(INPUTS, training=True)
    d = tmp_path_factory.mktemp("src")
    model.save(os.path.join(d, "m.keras"))
    model.save_weights(os.path.join(d, "m.weights.h5"))
    run = os.path.join(d, "run")
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=keras.optimizers.Adam()), run, max_to_keep=1
    ).save(checkpoint_number=7)
    return model, {
        "keras": os.path.join(d, "m.keras"),
        "h5": os.path.join(d, "m.weights.h5"),
        "checkpoint": run,
    }


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


@pytest.mark.parametrize("kind", ["keras", "h5", "checkpoint"])
def test_same_head_loads_everything(trained, kind):
    model, paths = trained
    keras.utils.set_random_seed(2)
    copy = zoo.get("yt8m_dbof", **CFG, weights=paths[kind])
    np.testing.assert_array_equal(np.asarray(copy(INPUTS)), np.asarray(model(INPUTS)))


@pytest.mark.parametrize("kind", ["keras", "h5", "checkpoint"])
def test_new_label_set_keeps_backbone_fresh_head(trained, kind, caplog):
    model, paths = trained
    keras.utils.set_random_seed(2)
    fresh = zoo.get("yt8m_dbof", **{**CFG, "num_classes": 4})
    keras.utils.set_random_seed(2)
    with caplog.at_level(logging.INFO, logger="zoo.transfer"):
        tuned = zoo.get("yt8m_dbof", **{**CFG, "num_classes": 4}, weights=paths[kind])
    for name in ("dbof", "hidden"):
        assert _same(tuned.get_layer(name), model.get_layer(name)), name
    assert _same(tuned.get_layer("classifier"), fresh.get_layer("classifier"))  # untouched fresh init
    assert np.asarray(tuned(INPUTS)).shape == (3, 4)
    assert "loaded  dbof" in caplog.text and "skipped classifier" in caplog.text and "shape" in caplog.text


def test_report_and_errors(trained, tmp_path):
    model, paths = trained
    target = zoo.get("yt8m_dbof", **{**CFG, "num_classes": 4})
    report = load_weights(target, paths["keras"])
    assert report.loaded == ["dbof", "hidden"] and list(report.skipped) == ["classifier"]
    other = zoo.get("yt8m_logistic", num_classes=3, feature_size=5, feature_sizes=[5], feature_names=["x"])
    with pytest.raises(ValueError, match="no layer of model 'yt8m_logistic' matched"):
        load_weights(other, paths["keras"])
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        load_weights(target, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a .keras file"):
        load_weights(target, str(tmp_path / "nothing.bin"))


def test_lstm_backbone_transfer_and_feature_extractor(tmp_path):
    cfg = {"num_classes": 10, "feature_size": 8, "feature_sizes": [6, 2], "max_frames": 6, "lstm_units": 5}
    src = zoo.get("yt8m_lstm", **cfg)
    path = str(tmp_path / "lstm.keras")
    src.save(path)
    tuned = zoo.get("yt8m_lstm", **{**cfg, "num_classes": 3, "head": "logistic"}, weights=path)
    feats_src = np.asarray(feature_extractor(src, "lstm_2")(INPUTS))
    feats_tuned = np.asarray(feature_extractor(tuned, "lstm_2")(INPUTS))
    assert feats_src.shape == (3, 5)
    np.testing.assert_array_equal(feats_src, feats_tuned)  # the backbone's last-frame output is preserved
    with pytest.raises(ValueError, match="layer_name='lstm_9'.*lstm_2"):
        feature_extractor(src, "lstm_9")
