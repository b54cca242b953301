"""Keras layers of the zoo, one concept per module (each docstring cites the paper's equations)."""

from zoo.layers.attention import *  # noqa: F403
from zoo.layers.gating import *  # noqa: F403
from zoo.layers.heads import *  # noqa: F403
from zoo.layers.hyper_conv import *  # noqa: F403
from zoo.layers.hyper_rnn import *  # noqa: F403
from zoo.layers.lstm import *  # noqa: F403
from zoo.layers.mdn import *  # noqa: F403
from zoo.layers.pooling import *  # noqa: F403
from zoo.layers.rnn_base import *  # noqa: F403
from zoo.layers.video import *  # noqa: F403
