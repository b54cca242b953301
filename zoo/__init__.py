"""zoo: HyperNetworks (Ha, Dai, Le 2016) and YouTube-8M (Abu-El-Haija et al. 2016) in Keras 3.

    >>> import zoo
    >>> zoo.list_models("hyper_*")
    >>> model = zoo.get("hyper_wrn_40_2")
    >>> zoo.describe("hyper_conv_mnist")["recipe"]

Importing ``zoo`` registers the models and has no other side effects.
"""

from zoo import models as _models  # noqa: F401  (registers every model)
from zoo.registry import (
    ModelSpec,
    UnknownConfigKeyError,
    UnknownModelError,
    describe,
    get,
    get_spec,
    list_models,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "ModelSpec",
    "UnknownConfigKeyError",
    "UnknownModelError",
    "describe",
    "get",
    "get_spec",
    "list_models",
    "register_model",
]
