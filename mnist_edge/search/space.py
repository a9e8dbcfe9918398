"""The family of CNNs a search draws from, and each member as a Keras model.

A member is a chain of conv blocks (filters, kernel, then a 2×2 max-pool, a stride of 2 or
nothing; a block after the first may be depthwise-separable), a head (flatten, or global
average pooling), a hidden dense layer or none, and the fast recipe's epochs and peak learning
rate. The seed's CNN is a member: three 3×3 blocks of 32, 64, 64 filters (pool, pool, none),
flatten, a hidden layer of 64.

A choice is offered only where the C engine compiles what it converts to
(codegen.graph.SUPPORTED_OPS): the space grows with the engine, and no trial is ever lost to
an operator the engine refuses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mnist_edge.errors import MnistEdgeError
from mnist_edge.tensors import IMAGE_SHAPE, NUM_CLASSES

# What each optional choice becomes in the int8 .tflite: a separable block is a depthwise
# convolution and a 1×1 one; Keras' GlobalAveragePooling2D converts to MEAN.
CHOICE_OPS = {
    "separable": ("DEPTHWISE_CONV_2D", "CONV_2D"),
    "gap": ("MEAN",),
}
DOWNSAMPLES = ("pool", "stride", "none")


@dataclass(frozen=True)
class Block:
    """One conv block: a convolution (or a depthwise one and a 1×1), ReLU, then downsampling."""

    filters: int
    kernel: int
    downsample: str  # pool (2×2 max-pool after), stride (the convolution's stride 2) or none
    separable: bool = False

    def describe(self) -> str:
        kind = "s" if self.separable else "c"
        return f"{kind}{self.filters}k{self.kernel}{self.downsample[0]}"


@dataclass(frozen=True)
class Architecture:
    """A member of the family, with its training: enough to rebuild and retrain it."""

    blocks: tuple[Block, ...]
    head: str  # flatten or gap (global average pooling)
    hidden: int  # units of the hidden dense layer; 0 for none
    epochs: int
    learning_rate: float

    def describe(self) -> str:
        """The architecture in one line: c8k5p-s16k3p-flatten-d32 · 3 ep · lr 6.0e-03."""
        parts = [b.describe() for b in self.blocks] + [self.head]
        if self.hidden:
            parts.append(f"d{self.hidden}")
        return f"{'-'.join(parts)} · {self.epochs} ep · lr {self.learning_rate:.1e}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        blocks = tuple(Block(**block) for block in data["blocks"])
        return cls(**{**data, "blocks": blocks})


@dataclass(frozen=True)
class Space:
    """The choices a study samples from (a choice with one value is fixed)."""

    name: str
    description: str
    blocks: tuple[int, ...]
    filters: tuple[int, ...]
    first_kernels: tuple[int, ...]  # later blocks are 3×3: 5×5 ones would shrink 5×5 maps to 1
    downsamples: tuple[str, ...]
    hidden: tuple[int, ...]
    epochs: tuple[int, int]  # low, high
    learning_rate: tuple[float, float]  # low, high (log scale)
    separable: bool  # offer separable blocks (where the engine compiles them)
    gap: bool  # offer the global-average-pooling head (where the engine compiles it)
    baseline: dict | None = None  # the parameters of the study's first trial, if any


SPACES = {
    space.name: space
    for space in (
        Space(
            name="full",
            description="1-3 blocks of 4-64 filters, 3×3 or 5×5 first, pool, stride or none, "
            "separable blocks and a GAP head where the engine compiles them, a hidden layer "
            "of 0-64, 2-12 epochs, learning rate 2e-3 to 1.2e-2",
            blocks=(1, 2, 3),
            filters=(4, 6, 8, 12, 16, 24, 32, 48, 64),
            first_kernels=(3, 5),
            downsamples=DOWNSAMPLES,
            hidden=(0, 16, 32, 64),
            epochs=(2, 12),
            learning_rate=(2e-3, 1.2e-2),
            separable=True,
            gap=True,
            # The seed's layout with 8 and 16 filters and no hidden layer: 5,258 parameters.
            baseline={
                "blocks": 2,
                "filters_0": 8,
                "kernel_0": 3,
                "downsample_0": "pool",
                "filters_1": 16,
                "downsample_1": "pool",
                "separable_1": False,
                "head": "flatten",
                "hidden": 0,
                "epochs": 6,
                "learning_rate": 6e-3,
            },
        ),
        Space(
            name="small",
            description="2 pooled 3×3 blocks of 2-8 filters, flatten, no hidden layer, 1 epoch: "
            "for tests and a first look",
            blocks=(2,),
            filters=(2, 4, 8),
            first_kernels=(3,),
            downsamples=("pool",),
            hidden=(0,),
            epochs=(1, 1),
            learning_rate=(6e-3, 6e-3),
            separable=False,
            gap=False,
        ),
    )
}


def engine_compiles(choice: str, supported: tuple[str, ...] | None = None) -> bool:
    """Whether the C engine compiles every operator an optional choice converts to."""
    if supported is None:
        from mnist_edge.codegen.graph import SUPPORTED_OPS as supported
    return all(op in supported for op in CHOICE_OPS[choice])


def space_for(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise MnistEdgeError(
            f"Unknown search space {name!r}: expected one of {', '.join(SPACES)}."
        ) from None


def _pick(trial, name: str, choices: tuple):
    # A choice with one value is fixed: not a parameter of the study.
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def suggest(trial, space: Space, supported: tuple[str, ...] | None = None) -> Architecture:
    """An architecture from an Optuna trial's suggestions (its parameters name the choices)."""
    separable = space.separable and engine_compiles("separable", supported)
    count = _pick(trial, "blocks", space.blocks)
    blocks = []
    for i in range(count):
        kernels = space.first_kernels if i == 0 else (3,)
        blocks.append(
            Block(
                filters=_pick(trial, f"filters_{i}", space.filters),
                kernel=_pick(trial, f"kernel_{i}", kernels),
                downsample=_pick(trial, f"downsample_{i}", space.downsamples),
                # One input channel: a depthwise convolution there is a plain one.
                separable=bool(i and separable and _pick(trial, f"separable_{i}", (False, True))),
            )
        )
    heads = ("flatten", "gap") if space.gap and engine_compiles("gap", supported) else ("flatten",)
    low, high = space.epochs
    rate_low, rate_high = space.learning_rate
    return Architecture(
        blocks=tuple(blocks),
        head=_pick(trial, "head", heads),
        hidden=_pick(trial, "hidden", space.hidden),
        epochs=low if low == high else trial.suggest_int("epochs", low, high),
        learning_rate=rate_low
        if rate_low == rate_high
        else trial.suggest_float("learning_rate", rate_low, rate_high, log=True),
    )


def seed_architecture(epochs: int = 2, learning_rate: float = 6e-3) -> Architecture:
    """The seed's CNN as a member of the family (the fast recipe's training by default)."""
    blocks = (Block(32, 3, "pool"), Block(64, 3, "pool"), Block(64, 3, "none"))
    return Architecture(blocks, "flatten", 64, epochs, learning_rate)


def build_keras(arch: Architecture):
    """The architecture as a float32 Keras model (valid padding, ReLU, softmax), unbuilt weights
    seeded by the caller's Keras seed."""
    from mnist_edge.deps import require

    keras = require("keras")
    layers = keras.layers
    stack = [keras.Input(shape=IMAGE_SHAPE, name="image")]
    for block in arch.blocks:
        stride = 2 if block.downsample == "stride" else 1
        if block.separable:
            stack.append(layers.DepthwiseConv2D(block.kernel, strides=stride, activation="relu"))
            stack.append(layers.Conv2D(block.filters, 1, activation="relu"))
        else:
            stack.append(
                layers.Conv2D(block.filters, block.kernel, strides=stride, activation="relu")
            )
        if block.downsample == "pool":
            stack.append(layers.MaxPooling2D(2))
    stack.append(layers.GlobalAveragePooling2D() if arch.head == "gap" else layers.Flatten())
    if arch.hidden:
        stack.append(layers.Dense(arch.hidden, activation="relu"))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name="mnist_search")
