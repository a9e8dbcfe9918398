"""The C engine on the device: the int8 model compiled to C with CMSIS-NN (mnist_edge.codegen),
built with the harness (firmware.harness) into a firmware without TFLM, C++ or stdio, run in QEMU
and measured, on Cortex-M (arm-none-eabi-gcc, newlib's mem*) and on RISC-V
(riscv64-unknown-elf-gcc, picolibc's).

The engine's own files are the generator's model.c and model.h, templates/cengine/engine.h
(main.c's five engine functions as static inlines around PREFIX_infer) and engine.mk (model.c
and the CMSIS-NN sources it calls). `make` and `make run` in the folder rebuild and rerun it.
"""

from __future__ import annotations

from pathlib import Path

from mnist_edge import __version__, codegen
from mnist_edge.codegen.graph import refuse_unsupported
from mnist_edge.codegen.plan import OPTIMISE, MemoryPlan, StreamStage
from mnist_edge.device import DeviceModel
from mnist_edge.errors import DoesNotFit, MnistEdgeError, ModelError
from mnist_edge.firmware import harness
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.configs import Config, Engine
from mnist_edge.firmware.project import render
from mnist_edge.firmware.qemu import QemuRun
from mnist_edge.records import FirmwareResult
from mnist_edge.sources import SOURCE_BY_NAME

PREFIX = "mnist_edge"
DESCRIPTION = "the model compiled to C (model.c) calling CMSIS-NN's kernels"


def step_names(plan: MemoryPlan) -> list[str]:
    """model.c's steps, named by their layers ("conv_0+maxpool_1"), in the generator's order
    (a streamed pair is two steps: producer, consumer)."""
    names = []
    for stage in plan.stages:
        parts = (stage.producer, stage.consumer) if isinstance(stage, StreamStage) else (stage,)
        names += ["+".join(layer.name for layer in part.layers) for part in parts]
    if len(names) != len(plan.steps):
        raise MnistEdgeError(f"Named {len(names)} steps of a plan that has {len(plan.steps)}.")
    return names


def component_of(member: str) -> str:
    """What an object of the C engine's link is, as the linker map names it: model.c and
    CMSIS-NN are the engine (code and constants by section), the rest the harness."""
    name = Path(member.split("(")[-1].rstrip(")")).name
    return harness.SPLIT if name == "model.o" or "/cmsis-nn/" in member else harness.HARNESS


class CodegenEngine(Engine):
    """The model compiled to C with a static memory plan, calling CMSIS-NN (no interpreter)."""

    name = "codegen"
    description = DESCRIPTION

    def kernel_sets(self, kernels: list[str]) -> list[str]:
        """The C engine calls CMSIS-NN's kernels whatever else was asked for (TFLM's reference
        kernels are C++ inside the interpreter): one build."""
        return ["cmsis-nn"]

    def refusal(self, board: Board, device: DeviceModel) -> str | None:
        """Why the generator cannot compile the model (an operator it lacks), or None."""
        try:
            refuse_unsupported(device.info, device.name)
        except ModelError as exc:
            return str(exc).removeprefix(f"{device.name}: ").rstrip(".")
        return None

    def project_name(self, board: Board, kernels: str) -> str:
        return f"{board.cpu}-{self.name}"

    def stack_size(self, board: Board) -> int:
        return board.c_stack_size

    def readme_values(self, config: Config) -> dict[str, str]:
        return {
            "engine_title": "the C engine",
            "engine_description": DESCRIPTION,
            "engine_rows": (
                "| `model.c`, `model.h` | the model compiled to C: weights, requantization, the "
                "static memory plan, one function | keep |\n"
                "| `engine.h`, `engine.mk` | main.c's engine functions around it; its build: "
                "model.c and the CMSIS-NN sources it calls | `CMSIS_NN`: where CMSIS-NN is |"
            ),
            "make_example": f"CMSIS_NN={config.tree.path('CMSIS-NN')}",
        }

    def files(self, config: Config, optimise: str) -> tuple[dict[str, bytes], int]:
        """The engine's files and the harness's, for the configuration; the plan's arena. The
        plan sizes CMSIS-NN's scratch for the board's build of it (its ISA) alone."""
        inputs = config.inputs
        engine = codegen.generate(
            inputs.model,
            inputs.model_name,
            prefix=PREFIX,
            isa=config.board.isa,
            optimise=optimise,
        )
        input_bytes, output_bytes = inputs.input_bytes, inputs.output_bytes
        if (input_bytes, output_bytes) != (engine.input_bytes, engine.output_bytes):
            raise MnistEdgeError(
                f"{inputs.model_name} takes {engine.input_bytes} input bytes and gives "
                f"{engine.output_bytes} output bytes; got inputs of {input_bytes} bytes and "
                f"golden outputs of {output_bytes}."
            )
        cmsis_nn = config.tree.path("CMSIS-NN")
        values = {
            "version": __version__,
            "model_name": inputs.model_name,
            "prefix": PREFIX,
            "prefix_upper": PREFIX.upper(),
            "cmsis_nn": str(cmsis_nn),
            "cmsis_nn_commit": SOURCE_BY_NAME["CMSIS-NN"].commit[:12],
            "cmsis_nn_sources": " \\\n".join(f"  {path}" for path in engine.cmsis_sources),
        }
        own = {
            name: render(f"cengine/{name}", values).encode() for name in ("engine.h", "engine.mk")
        }
        shared = harness.harness_files(config, step_names(engine.plan), self.readme_values(config))
        return {**shared, **own, **engine.files}, engine.arena_bytes

    def build(
        self, config: Config, project: Path, run: bool, timeout_s: float
    ) -> tuple[FirmwareResult, QemuRun | None]:
        """Write, build, run (when `run`) and measure the configuration in `project`.

        The plan the configuration asks for; for auto, the one optimised for speed where it
        fits the board's RAM, else the one optimised for size (convolutions in place: less RAM,
        a few percent more instructions)."""
        inputs = config.inputs
        data = harness.data_files(inputs.inputs, inputs.golden, inputs.labels, inputs.indices)
        plans = OPTIMISE if config.optimise == "auto" else (config.optimise,)
        for optimise in plans:
            files, arena = self.files(config, optimise)
            harness.write_project(project, files | data)
            try:
                seconds = harness.link(
                    project, config, {"CMSIS_NN": str(config.tree.path("CMSIS-NN"))}
                )
                break
            except DoesNotFit as exc:
                if exc.region != "RAM" or optimise == plans[-1]:
                    raise
        elf = project / harness.ELF
        device = harness.run_checked(config, elf, timeout_s, project) if run else None
        result = harness.result(
            config, elf, device, seconds, arena, f"{optimise} plan", component_of=component_of
        )
        return result, device
