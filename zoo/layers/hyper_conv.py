"""Static hypernetworks for convolutions (Ha, Dai, Le 2016, §3.1, Eq. 2-3; §4.1-4.2).

:class:`KernelGenerator` is the two-layer linear hypernetwork ``g(z)`` of Eq. 2. For one layer
embedding ``z`` (size ``N_z``) it computes, for every input channel ``i = 1..N_in``::

    a_i = W_i z + B_i                  W_i: d x N_z,  B_i: d
    K_i = <W_out, a_i> + B_out         W_out: (f, f, N_out) x d,  B_out: (f, f, N_out)

and returns the *basic* kernel ``K = concat_i K_i`` of shape ``(f, f, N_in, N_out)``. Its trainable
parameter count is ``d (N_z + 1) N_in + f N_out f (d + 1)`` (§3.1); ``d = N_z`` by default, as in the paper.

**Which kernel axis an embedding slice maps to.** ``a_i`` (the i-th projection of ``z``) produces
``K_i = kernel[:, :, i, :]``: one slice per *input* channel, as the paper's text says (§3.1, Eq. 2:
``i = 1..N_in``, ``K_i`` of size ``f x N_out f``). The authors' static-hypernetwork code (the MNIST
notebook of hardmaru/supercell) slices by *output* channel instead: its ``N_in`` projections
``[N_in, f*f*N_out]`` are reshaped to ``(N_out, N_in, f, f)`` and transposed, so the i-th projection
becomes ``kernel[:, :, :, i]`` (with its two spatial axes swapped). Both give the same parameter count
when ``N_in = N_out`` (always the case here: 16 x 16 basic kernels) and the same family of kernels up to
which axis a projection owns; ``HyperConv2D`` follows the paper's text.

:class:`HyperConv2D` is a 2-D convolution whose kernel is generated. It owns its layer embeddings and
asks a (possibly shared) generator for its kernel. A ``C_in x C_out`` kernel is tiled from
``(C_in / N_in) x (C_out / N_out)`` basic kernels, each generated from its own embedding (Eq. 3):
embedding ``t = r * (C_out / N_out) + c`` produces ``kernel[:, :, r*N_in:(r+1)*N_in, c*N_out:(c+1)*N_out]``
(row ``r`` = block of input channels, column ``c`` = block of output channels; Eq. 3 shows
``K_{32x64}`` as a 2 x 4 grid of basic kernels ``K_1..K_8`` in this row-major order).

One generator may serve many layers (the single hypernetwork of §4.2). The generator is tracked as a
sub-layer of every HyperConv2D that uses it and serialised with ``keras.saving.serialize_keras_object``;
inside a ``.keras`` save/load (Keras' ``ObjectSharingScope``) the copies are recognised as one object,
so after a round trip all layers again share *one* generator, whose weights are stored once.
(``HyperConv2D.get_config()`` therefore holds the generator object itself; a config serialised outside
such a scope, e.g. ``Model.from_config(model.get_config())`` or ``keras.models.clone_model``, gives
every layer its own copy of the generator. SavedModel export traces the objects and keeps one.)

**Initialisation (our choice, derived; the paper gives none).** With ``B_i = 0``, ``B_out = 0``,
``W_i ~ N(0, 1/N_z)`` and ``W_out ~ N(0, 1/d)`` (both zero-mean, independent of ``z``)::

    E[a_i,k^2 | z] = |z|^2 / N_z,     E[K^2 | z] = d * (1/d) * |z|^2 / N_z = |z|^2 / N_z.

Each embedding is drawn as a random direction scaled to norm ``|z| = sqrt(N_z) * sqrt(2 / fan_in)``
(:class:`EmbeddingInitializer`), where ``fan_in = kh * kw * C_in`` is the fan-in of *the layer that owns
it*; so every generated kernel starts with ``E[K^2] = 2 / fan_in``, He et al. (2015) scale, at every
layer even though the generator is shared (the per-layer scale lives in ``z``). Fixing the norm of ``z``
(rather than sampling it) removes the chi-square spread of ``|z|^2`` that would otherwise make a
4-dimensional MNIST embedding start anywhere from ~0.4x to ~1.5x He scale (5-95% range). For contrast:
unit-variance inits of ``z``, ``W_i`` and ``W_out`` give kernel std ~ ``sqrt(N_z d)`` (tens for N_z = d = 64;
~45 is reported for a folded N(0, 1) in public ports), and a 0.01 truncated normal everywhere gives
~5e-5 (vanishing). Biases: zeros.

**Cost.** Per step each HyperConv2D makes one generator matmul pair for all its embeddings and one
transpose into the tiled kernel (:meth:`HyperConv2D._generate_kernel`); the conv itself is the same XLA
convolution as for a variable kernel. For Hyper WRN 40-2 (966 embeddings) the generator's forward and
backward are ~0.85 GFLOP, ~6% of the convolutions' at batch 16: a training step costs 1.05x the plain
WRN 40-2's CPU time (``bench/train_step.py``). Concatenating all layers' embeddings into one generator
call was measured slower (the concat/split copies cost more than the small matmuls save).

**Weight decay.** ``weight_decay`` adds ``weight_decay * sum(K^2) / 2`` on the *generated* kernel (the
paper's "L2 on generated kernels", A.3.2; ``tf.nn.l2_loss`` convention) through ``add_loss`` in ``call``,
so it appears in ``model.losses`` after each forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = ["EmbeddingInitializer", "KernelGenerator", "HyperConv2D"]


@keras.saving.register_keras_serializable(package="zoo")
class EmbeddingInitializer(keras.initializers.Initializer):
    """Rows are random directions of fixed norm ``sqrt(dim) * stddev`` (``dim`` = last axis).

    Each row ``z`` then has ``mean(z**2) == stddev**2`` exactly, so a linear generator with unit-gain
    weights produces kernels of std ``stddev`` without the sampling spread of ``|z|``. See the module
    docstring for the derivation.

    Args:
      stddev: the root-mean-square value of each row's entries.
      seed: an int gives the same values on every call; ``None`` draws unseeded.

    Example:

    >>> z = EmbeddingInitializer(stddev=0.5)((3, 4))
    >>> np.allclose(np.linalg.norm(np.asarray(z), axis=-1), 4 ** 0.5 * 0.5)
    True
    """

    def __init__(self, stddev: float, seed: int | None = None) -> None:
        self.stddev = float(stddev)
        self.seed = seed  # an int gives the same values on every call (as Keras' seeded initializers)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        u = keras.random.normal(shape, dtype=dtype, seed=self.seed)
        norm = ops.sqrt(ops.sum(ops.square(u), axis=-1, keepdims=True))
        return u / norm * (math.sqrt(shape[-1]) * self.stddev)

    def get_config(self) -> dict[str, Any]:
        return {"stddev": self.stddev, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class KernelGenerator(keras.layers.Layer):
    """``g(z)`` of Eq. 2: ``[M, N_z]`` embeddings -> ``[M, f, f, N_in, N_out]`` basic kernels.

    Args:
      embedding_size: ``N_z``, size of each layer embedding (paper: 4 on MNIST, 64 on CIFAR-10).
      kernel_size: ``f``, spatial size of the square basic kernel (7 on MNIST, 3 for wide resnets).
      in_channels: ``N_in`` of the basic kernel (16 in the paper).
      out_channels: ``N_out`` of the basic kernel (16 in the paper).
      hidden_size: ``d``, width of the hidden layer; ``None`` means ``d = N_z`` (the paper's choice).

      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights (initialisers derived in the module docstring; the paper specifies none):
      ``w_in`` ``(N_in, N_z, d)`` ~ N(0, 1/N_z) (the N_in matrices W_i), ``b_in`` ``(N_in, d)`` zeros (B_i),
      ``w_out`` ``(d, f*f*N_out)`` ~ N(0, 1/d) (W_out, output axes ordered (kh, kw, N_out)),
      ``b_out`` ``(f*f*N_out,)`` zeros (B_out).
      Trainable parameters: ``d (N_z + 1) N_in + f N_out f (d + 1)``.

    Call arguments:
      embeddings: ``[M, N_z]``, one layer embedding per row.

    Returns:
      ``[M, f, f, N_in, N_out]``: the basic kernel of each embedding; ``[m, :, :, i, :]`` is ``K_i``
      (one slice per input channel, the paper's §3.1).

    Example:

    >>> gen = KernelGenerator(embedding_size=4, kernel_size=7)  # the MNIST generator of §4.1
    >>> tuple(gen(np.ones((2, 4), "float32")).shape)
    (2, 7, 7, 16, 16)
    >>> gen.count_params()
    4240
    """

    def __init__(
        self,
        embedding_size: int,
        kernel_size: int,
        in_channels: int = 16,
        out_channels: int = 16,
        hidden_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (
            ("embedding_size", embedding_size),
            ("kernel_size", kernel_size),
            ("in_channels", in_channels),
            ("out_channels", out_channels),
        ):
            if int(value) < 1:
                raise ValueError(f"KernelGenerator: {name}={value!r} must be a positive integer")
        if hidden_size is not None and int(hidden_size) < 1:
            raise ValueError(
                f"KernelGenerator: hidden_size={hidden_size!r} must be a positive integer or None"
            )
        self.embedding_size = int(embedding_size)
        self.kernel_size = int(kernel_size)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.hidden_size = int(hidden_size) if hidden_size is not None else None

    @property
    def d(self) -> int:
        """The hidden size ``d`` actually used (``N_z`` unless ``hidden_size`` was given)."""
        return self.hidden_size if self.hidden_size is not None else self.embedding_size

    @property
    def basic_kernel_shape(self) -> tuple[int, int, int, int]:
        f = self.kernel_size
        return (f, f, self.in_channels, self.out_channels)

    def expected_param_count(self) -> int:
        """``d (N_z + 1) N_in + f N_out f (d + 1)`` (§3.1)."""
        f, d = self.kernel_size, self.d
        return d * (self.embedding_size + 1) * self.in_channels + f * self.out_channels * f * (d + 1)

    def build(self, input_shape: Any) -> None:
        if input_shape[-1] is not None and int(input_shape[-1]) != self.embedding_size:
            raise ValueError(
                f"KernelGenerator {self.name!r}: embeddings have size {input_shape[-1]}, "
                f"expected embedding_size={self.embedding_size}"
            )
        n_z, d, f = self.embedding_size, self.d, self.kernel_size
        self.w_in = self.add_weight(
            name="w_in",
            shape=(self.in_channels, n_z, d),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(n_z)),
        )
        self.b_in = self.add_weight(name="b_in", shape=(self.in_channels, d), initializer="zeros")
        self.w_out = self.add_weight(
            name="w_out",
            shape=(d, f * f * self.out_channels),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(d)),
        )
        self.b_out = self.add_weight(name="b_out", shape=(f * f * self.out_channels,), initializer="zeros")

    def flat_kernels(self, embeddings: Any) -> Any:
        """Eq. 2 before any re-layout: ``[M, N_z]`` -> ``[M, N_in, f*f*N_out]``.

        Row ``[m, i]`` is ``K_i`` of embedding ``m`` flattened in ``(kh, kw, N_out)`` order (the order of
        ``w_out``'s output axis). :class:`HyperConv2D` tiles these rows into its kernel with a single
        transpose; :meth:`call` returns them as basic kernels.
        """
        # a[m, i, :] = W_i z_m + B_i
        a = ops.einsum("mz,izd->mid", embeddings, self.w_in) + self.b_in
        # K_i = <W_out, a_i> + B_out
        return ops.matmul(a, self.w_out) + self.b_out

    def call(self, embeddings: Any) -> Any:
        f = self.kernel_size
        k = ops.reshape(self.flat_kernels(embeddings), (-1, self.in_channels, f, f, self.out_channels))
        return ops.transpose(k, (0, 2, 3, 1, 4))  # [M, f, f, N_in, N_out]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], *self.basic_kernel_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            embedding_size=self.embedding_size,
            kernel_size=self.kernel_size,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            hidden_size=self.hidden_size,
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class HyperConv2D(keras.layers.Layer):
    """A 2-D convolution whose kernel is generated by a :class:`KernelGenerator` (§3.1, Eq. 3).

    Args:
      filters: ``C_out``; a multiple of ``generator.out_channels``.
      kernel_size: must equal ``generator.kernel_size`` (an int or a square pair).
      generator: the (possibly shared) :class:`KernelGenerator`.
      strides, padding: as in ``keras.layers.Conv2D`` (``"same"`` or ``"valid"``).
      use_bias: adds an ordinary bias of size ``C_out`` (zeros init), not generated.
      weight_decay: L2 coefficient on the generated kernel, ``weight_decay * sum(K^2) / 2`` in
        ``self.losses`` after each call (0 disables it).

      **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Weights: ``embeddings`` ``((C_in/N_in) * (C_out/N_out), N_z)``, one row per basic kernel in
    row-major (input block, output block) order, initialised by :class:`EmbeddingInitializer` to He
    scale for this layer's fan-in; ``bias`` ``(C_out,)`` if ``use_bias``. The generator's weights belong
    to the generator (counted once however many layers share it).

    Call arguments:
      inputs: ``[B, H, W, C_in]`` (channels last); ``C_in`` a multiple of ``generator.in_channels``.

    Returns:
      ``[B, H', W', filters]``, the convolution of ``inputs`` with the generated kernel (plus the bias).
      The kernel itself is the ``kernel`` property, ``(kh, kw, C_in, C_out)``.

    Example:

    >>> gen = KernelGenerator(embedding_size=64, kernel_size=3)  # one generator for many layers (§4.2)
    >>> conv_a = HyperConv2D(32, 3, generator=gen)
    >>> conv_b = HyperConv2D(16, 3, generator=gen, strides=2)
    >>> y = conv_b(conv_a(np.zeros((2, 8, 8, 16), "float32")))
    >>> tuple(y.shape), tuple(conv_a.embeddings.shape)
    ((2, 4, 4, 16), (2, 64))
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        generator: KernelGenerator,
        strides: int | tuple[int, int] = 1,
        padding: str = "same",
        use_bias: bool = True,
        weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(generator, KernelGenerator):
            raise TypeError(
                f"HyperConv2D {self.name!r}: generator must be a KernelGenerator, got {generator!r}"
            )
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if ks != (generator.kernel_size, generator.kernel_size):
            raise ValueError(
                f"HyperConv2D {self.name!r}: kernel_size={kernel_size!r} does not match the generator's "
                f"basic kernel size {generator.kernel_size}"
            )
        if int(filters) % generator.out_channels:
            raise ValueError(
                f"HyperConv2D {self.name!r}: filters={filters} is not a multiple of the generator's basic "
                f"out_channels={generator.out_channels}"
            )
        padding = padding.lower()
        if padding not in ("same", "valid"):
            raise ValueError(f"HyperConv2D {self.name!r}: padding={padding!r}; valid: 'same', 'valid'")
        self.filters = int(filters)
        self.kernel_size = ks
        self.generator = generator
        self.strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.weight_decay = float(weight_decay)

    def build(self, input_shape: Any) -> None:
        c_in = input_shape[-1]
        gen = self.generator
        if c_in is None or int(c_in) % gen.in_channels:
            raise ValueError(
                f"HyperConv2D {self.name!r}: input channels {c_in} are not a multiple of the generator's "
                f"basic in_channels={gen.in_channels}"
            )
        self.in_channels = int(c_in)
        self.in_blocks = self.in_channels // gen.in_channels
        self.out_blocks = self.filters // gen.out_channels
        if not gen.built:
            gen.build((None, gen.embedding_size))
        fan_in = self.kernel_size[0] * self.kernel_size[1] * self.in_channels
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.in_blocks * self.out_blocks, gen.embedding_size),
            initializer=EmbeddingInitializer(stddev=math.sqrt(2.0 / fan_in)),
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def _generate_kernel(self) -> Any:
        """Eq. 2 for all ``T = in_blocks * out_blocks`` embeddings of this layer, tiled as in Eq. 3.

        One generator matmul pair for the whole layer, then one transpose: the generator's rows
        ``[T, N_in, f*f*N_out]`` are viewed as ``[in_blocks, out_blocks, N_in, f, f, N_out]`` (row-major
        tile order ``t = r * out_blocks + c``) and moved to ``[f, f, in_blocks, N_in, out_blocks, N_out]``,
        which *is* the ``(f, f, C_in, C_out)`` kernel. (Going through :meth:`KernelGenerator.call`'s
        ``[T, f, f, N_in, N_out]`` basic kernels would cost a second full transpose of the kernel, and of
        its gradient, every step.)
        """
        gen = self.generator
        f = gen.kernel_size
        k = gen.flat_kernels(self.embeddings)  # [T, N_in, f*f*N_out]
        k = ops.reshape(k, (self.in_blocks, self.out_blocks, gen.in_channels, f, f, gen.out_channels))
        k = ops.transpose(k, (3, 4, 0, 2, 1, 5))  # [f, f, in_blocks, N_in, out_blocks, N_out]
        return ops.reshape(k, (f, f, self.in_channels, self.filters))

    @property
    def kernel(self) -> Any:
        """The current generated kernel, ``(kh, kw, C_in, C_out)``."""
        return self._generate_kernel()

    def call(self, inputs: Any) -> Any:
        kernel = self._generate_kernel()
        if self.weight_decay:
            self.add_loss(0.5 * self.weight_decay * ops.sum(ops.square(kernel)))
        outputs = ops.conv(inputs, kernel, strides=self.strides, padding=self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        spatial = []
        for size, k, s in zip(input_shape[1:3], self.kernel_size, self.strides, strict=True):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-int(size) // s))
            else:
                spatial.append((int(size) - k) // s + 1)
        return (input_shape[0], *spatial, self.filters)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            # The object itself: Keras serialises it inside its ObjectSharingScope, so a generator shared
            # by many layers is written once and restored as one object (see module docstring).
            generator=self.generator,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            weight_decay=self.weight_decay,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HyperConv2D:
        config = dict(config)
        if isinstance(config["generator"], dict):
            config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)
