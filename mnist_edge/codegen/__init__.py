"""An engine of our own: an int8 .tflite compiled to plain C99 that calls CMSIS-NN directly.

No interpreter, no flatbuffer, no C++, no heap, no printf: `model.c` holds the weights as
constant arrays, one static arena laid out by a memory plan computed here, and one CMSIS-NN
call per layer, or per slice loop where a convolution and the max-pool after it are fused;
the convolutions CMSIS-NN is slow on (one input channel, or pooled by small windows) call
mnist-edge's own kernel instead, `kernels.h` (header-only, shipped with the engine).
The requantization parameters are TFLM's, computed the way its Prepare computes them, so the
outputs are bit-identical to TFLM's.

The stages, one module each: `graph` reads the flatbuffer into typed layers with their
constants, `quant` holds TFLM's integer math, `kernels` says where the own kernel applies,
`plan` lays out the arena, `emit` writes the C from `templates/`, and `host` builds it with
the host's C compiler for tests and for `runtimes.codegen_runner`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnist_edge.codegen.plan import MemoryPlan
from mnist_edge.errors import MnistEdgeError

DEFAULT_PREFIX = "mnist_edge"


@dataclass(frozen=True)
class GeneratedEngine:
    """The generated C files, the plan they follow and what building them needs."""

    files: dict[str, bytes]  # model.h, model.c, and kernels.h if a layer calls it
    plan: MemoryPlan
    cmsis_sources: tuple[str, ...]  # relative to the CMSIS-NN root
    prefix: str
    input_bytes: int
    output_bytes: int
    arena_bytes: int


def generate(
    model_bytes: bytes,
    origin: str,
    prefix: str = DEFAULT_PREFIX,
    level: str = "streamed",
    isa: str = "any",
    optimise: str = "speed",
) -> GeneratedEngine:
    """Compile an int8 .tflite to C; ModelError if it holds what the engine does not compile.

    `level` is the memory plan's: layers (one call per layer), fused (convolutions fused with
    their max-pools) or streamed (fused, and row-streamed into the next convolution). `isa` is
    the CMSIS-NN build the arena's scratch is sized for: plain, dsp or mve (model.c then refuses
    to compile for another), or any (the largest of the three; model.c builds for every target).
    `optimise`: speed (CMSIS-NN's convolutions run whole) or size (in place where that makes
    the arena smaller, at a few percent more instructions).
    """
    from mnist_edge.codegen.emit import cmsis_sources, emit_files
    from mnist_edge.codegen.graph import read_graph
    from mnist_edge.codegen.plan import plan_memory

    if not (prefix.isidentifier() and prefix.isascii()):
        raise MnistEdgeError(f"Invalid prefix {prefix!r}: expected a C identifier.")
    graph = read_graph(model_bytes, origin)
    plan = plan_memory(graph, level, isa, optimise)
    return GeneratedEngine(
        files=emit_files(graph, plan, model_bytes, origin, prefix),
        plan=plan,
        cmsis_sources=cmsis_sources(graph, plan),
        prefix=prefix,
        input_bytes=graph.input.nbytes,
        output_bytes=graph.output.nbytes,
        arena_bytes=plan.peak_bytes,
    )
