"""The registry: names, patterns, errors, specs and the recipe schema of the image models."""

import os
import subprocess
import sys

import keras
import pytest

import zoo
from zoo import registry
from zoo.tasks import get_task, recipe_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGE_MODELS = [
    "conv_mnist",
    "hyper_conv_mnist",
    "wrn_40_1",
    "wrn_40_2",
    "wrn_28_10",
    "hyper_wrn_40_1",
    "hyper_wrn_40_2",
    "hyper_wrn_28_10",
]


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so a test can register names without leaking them."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _tiny_spec(name: str) -> zoo.ModelSpec:
    def build(config):
        inputs = keras.Input((config["size"],), name="x")
        return keras.Model(inputs, keras.layers.Dense(config["units"])(inputs))

    return zoo.ModelSpec(
        name=name,
        builder=build,
        task="image_classification",
        paper="test",
        config={"size": 3, "units": 2},
        recipe={"batch_size": 1},
        input_spec={"x": ((3,), "float32")},
    )


def test_all_image_models_are_registered():
    names = zoo.list_models()
    assert names == sorted(names)
    assert set(IMAGE_MODELS) <= set(names)
    hyper = zoo.list_models("hyper_*")
    assert {"hyper_conv_mnist", "hyper_wrn_40_1", "hyper_wrn_40_2", "hyper_wrn_28_10"} <= set(hyper)
    assert all(n.startswith("hyper_") for n in hyper)
    assert zoo.list_models("wrn_40_?") == ["wrn_40_1", "wrn_40_2"]
    assert zoo.list_models("no_such_*") == []


def test_unknown_name_lists_the_closest_names():
    with pytest.raises(zoo.UnknownModelError) as err:
        zoo.get("hyper_wrn_40_3")
    message = str(err.value)
    assert "'hyper_wrn_40_3'" in message
    assert "hyper_wrn_40_1" in message and "hyper_wrn_40_2" in message
    assert "conv_mnist" not in message  # only the close ones
    assert isinstance(err.value, KeyError)
    with pytest.raises(zoo.UnknownModelError, match="hyper_conv_mnist"):
        zoo.describe("hyper_conv_mnst")


def test_unknown_override_key_names_the_valid_keys():
    with pytest.raises(zoo.UnknownConfigKeyError) as err:
        zoo.get("hyper_conv_mnist", z_dims=8, dropout=0.5)
    message = str(err.value)
    assert "'dropout'" in message and "'z_dims'" in message
    for key in ("num_classes", "input_shape", "weight_decay", "z_dim"):
        assert key in message
    assert isinstance(err.value, ValueError)


def test_duplicate_registration_is_an_error(scratch_registry):
    original = zoo.get_spec("conv_mnist")
    with pytest.raises(ValueError, match="'conv_mnist' is already registered"):
        zoo.register_model(_tiny_spec("conv_mnist"))
    assert zoo.get_spec("conv_mnist") is original


def test_register_model_as_decorator_and_get_builds(scratch_registry):
    @zoo.register_model
    def tiny_test_model():
        return _tiny_spec("tiny_test_model")

    assert "tiny_test_model" in zoo.list_models("tiny_*")
    model = zoo.get("tiny_test_model", units=5)
    assert model.built and tuple(model.outputs[0].shape) == (None, 5)
    with pytest.raises(zoo.UnknownModelError):
        zoo.get("tiny_test_mode1", units=5)
    with pytest.raises(TypeError, match="ModelSpec"):
        zoo.register_model(lambda: "not a spec")


def test_spec_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        zoo.ModelSpec("x", lambda c: None, "segmentation", "p", {}, {}, {})


def test_get_returns_a_built_model_with_a_concrete_signature():
    model = zoo.get("hyper_conv_mnist", num_classes=7)
    assert isinstance(model, keras.Model) and model.built
    assert [t.name for t in model.inputs] == ["images"]
    assert tuple(model.inputs[0].shape) == (None, 28, 28, 1)
    assert tuple(model.outputs[0].shape) == (None, 7)
    assert model.count_params() > 0


def test_describe_is_plain_data_and_a_copy():
    info = zoo.describe("hyper_wrn_40_2")
    assert info["task"] == "image_classification"
    assert "Table 2" in info["paper"] and info["paper_params"] == 148_000
    assert info["input_spec"] == {"images": ((32, 32, 3), "float32")}
    info["config"]["depth"] = 99
    info["recipe"]["batch_size"] = 1
    again = zoo.describe("hyper_wrn_40_2")
    assert again["config"]["depth"] == 40 and again["recipe"]["batch_size"] == 128


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_recipe_key_is_one_its_task_declares(name):
    # The one declaration (trainer, optimizer and task keys) that the trainer's --config also accepts.
    spec = zoo.get_spec(name)
    assert set(spec.recipe) <= set(recipe_keys(get_task(spec.task)))


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_recipes_follow_the_schema(name):
    info = zoo.describe(name)
    recipe, config = info["recipe"], info["config"]
    assert recipe["optimizer"] in ("adam", "sgd", "adagrad", "rmsprop")
    assert recipe["augment"] in ("mnist_pad_crop", "cifar_pad_crop_flip")
    assert {"num_classes", "input_shape", "weight_decay"} <= set(config)
    lr = recipe["learning_rate"]
    if isinstance(lr, dict):
        assert lr["schedule"] == "piecewise_constant"
        assert len(lr["values"]) == len(lr["boundaries"]) + 1
        assert lr["boundaries"] == sorted(lr["boundaries"]) and lr["boundaries"][-1] < recipe["train_steps"]


def test_recipes_carry_the_papers_numbers():
    mnist = zoo.describe("hyper_conv_mnist")["recipe"]  # A.3.1
    assert (mnist["optimizer"], mnist["learning_rate"], mnist["batch_size"]) == ("adam", 1e-3, 1000)
    assert mnist["augment"] == "mnist_pad_crop" and mnist["dataset"] == "mnist"
    assert zoo.describe("conv_mnist")["recipe"] == mnist
    wrn = zoo.describe("wrn_40_2")  # A.3.2, Table 8
    r = wrn["recipe"]
    assert (r["optimizer"], r["momentum"], r["nesterov"], r["batch_size"]) == ("sgd", 0.9, True, 128)
    assert r["learning_rate"]["values"] == [0.1, 0.02, 0.004, 0.0008, 0.00016]
    assert (
        r["learning_rate"]["boundaries"] == [28_000, 56_000, 84_000, 112_000] and r["train_steps"] == 140_000
    )
    assert r["augment"] == "cifar_pad_crop_flip" and wrn["config"]["weight_decay"] == 5e-4
    hyper = zoo.describe("hyper_wrn_40_2")  # A.3.2, Table 9
    h = hyper["recipe"]
    assert h["optimizer"] == "adam" and "momentum" not in h and h["batch_size"] == 128
    assert h["learning_rate"]["values"] == [0.002, 0.001, 0.0002, 0.00005]
    assert h["learning_rate"]["boundaries"] == [168_000, 336_000, 504_000] and h["train_steps"] == 672_000
    assert hyper["config"]["weight_decay"] == 5e-4 and hyper["config"]["z_dim"] == 64


@pytest.mark.parametrize(
    "value, expected",
    [(-1, "a whole number >= 1"), (0, "a whole number >= 1"), ("ten", "a whole number >= 1"),
     (None, "a whole number >= 1"), (2.0, "a whole number >= 1"), (True, "a whole number >= 1")],
)  # fmt: skip
def test_config_values_of_another_kind_than_the_default_are_one_line_errors(value, expected):
    with pytest.raises(registry.ConfigValueError) as err:
        zoo.get("hyper_conv_mnist", num_classes=value)
    message = str(err.value)
    want = f"num_classes={value!r} (from zoo.get) must be {expected}, like its default 10"
    assert message == f"model 'hyper_conv_mnist': {want}"


def test_the_kind_rule_per_default():
    check = registry.check_config_value
    for key, value, default in [
        ("rate", 0, 0.5), ("rate", -2.5, 0.5), ("seed", 0, 0), ("offset", -3, -1), ("flag", False, True),
        ("shape", [1, 2], (3, 4)), ("name", "x", "y"), ("anything", "x", None),
    ]:  # fmt: skip
        check(key, value, default, "m")
    for key, value, default in [
        ("rate", float("nan"), 0.5), ("rate", "0.5", 0.5), ("seed", -1, 0), ("flag", 1, True),
        ("shape", 3, (3, 4)), ("name", 1, "y"), ("units", 1.5, 8),
    ]:  # fmt: skip
        with pytest.raises(registry.ConfigValueError, match=f"{key}="):
            check(key, value, default, "m")


def test_builder_value_errors_name_the_model_in_one_line():
    with pytest.raises(registry.ConfigValueError) as err:
        zoo.get("hyper_conv_mnist", input_shape=(28, 28))
    assert str(err.value).startswith("model 'hyper_conv_mnist': the config is not valid: ")
    assert "\n" not in str(err.value)


def test_a_model_name_that_is_not_a_string_is_one_line_error():
    with pytest.raises(zoo.UnknownModelError, match="a model name must be a string, got None; registered: "):
        zoo.get(None)


@pytest.mark.slow
def test_importing_zoo_leaves_tensorflow_uninitialised():
    # The trainer configures devices (--num_devices) and collective ops (multi-worker) after importing
    # zoo; both need a TensorFlow runtime that nothing has started yet (no tensor or variable made at import).
    code = (
        "import zoo, tensorflow as tf; zoo.list_models(); "
        "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0], "
        "[tf.config.LogicalDeviceConfiguration()] * 2); print('ok')"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
