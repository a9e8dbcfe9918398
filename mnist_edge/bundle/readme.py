"""The bundle's README.md: what it holds, how to run it in LiteRT and TFLM, how to check it."""

from __future__ import annotations

import textwrap

from mnist_edge import __version__
from mnist_edge.bundle.golden import GoldenVectors
from mnist_edge.device.csource import template
from mnist_edge.records import BundleResult
from mnist_edge.tensors import TensorSpec


def bundle_readme(result: BundleResult, c_name: str, given: GoldenVectors | None = None) -> str:
    """The bundle's README.md: what it is, how to run it in LiteRT and TFLM, how to check it.

    `given`: the golden vectors of a model run on the inputs --inputs named (not MNIST's test
    images): the README then states the input tensor instead of the pixel recipe, and says
    whether the inputs had labels."""
    model, spec, arena = result.model, result.input, result.arena_bytes
    calls = "\n".join(f"  resolver.{call};" for call in result.tflm_calls)
    ctype, field_name = _c_type(spec)
    shortcut = result.preprocessing.get("int8_shortcut")
    proofs = "\n".join(
        f"| {p.runtime} | {p.package} | "
        + (
            f"{p.golden_identical}/{p.golden_count} | {p.golden_max_abs_diff:g}"
            if p.golden_identical is not None
            else f"did not load: {p.note} | –"
        )
        + " |"
        for p in result.proven_runtimes
    )
    inputs = "test images" if given is None else "inputs"
    agreement = "; ".join(
        f"{a.a} and {a.b} gave bit-identical outputs on {a.bit_identical:,} of {a.images:,} "
        f"{inputs} (at most {a.max_abs_diff:g} apart) and the same class on {a.same_class:,}"
        for a in result.agreement
    )
    fields = {
        "version": __version__,
        "model": model,
        "kind": result.kind,
        "flash_bytes": f"{result.flash_bytes:,}",
        "params": f"{result.params:,}",
        "macs": f"{result.macs:,}",
        "per_input": "image" if given is None else "inference",
        "input_dtype": spec.dtype,
        "input_shape": list(spec.shape),
        "scale": spec.scale,
        "zero_point": spec.zero_point,
        "arena": arena,
        "arena_bytes": f"{arena:,}",
        "min_runtime": result.min_runtime.version,
        "agreement": agreement + "." if agreement else "",
        "c_name": c_name,
        "resolver": result.tflm_resolver,
        "calls": calls,
        "ctype": ctype,
        "field_name": field_name,
        "count": result.golden["count"],
        "proofs": proofs,
        "platforms": _platforms(result),
        "c_engine": _c_engine(result, inputs),
        "npu": _npu(result),
    }
    fields |= _mnist_parts(result, shortcut) if given is None else _given_parts(result, given)
    return template("README.md", "mnist_edge.bundle").substitute(fields)


def _classify(spec: TensorSpec, shortcut: str | None) -> str:
    """The C++ function that classifies a 28×28 grayscale image with the interpreter."""
    ctype, field = _c_type(spec)
    if spec.dtype == "int8" and shortcut:
        fill = f"static_cast<int8_t>(pixels[i] - {-int(spec.zero_point or 0)})"
    elif spec.dtype == "float32":
        fill = "pixels[i] / 255.0f"
    else:
        fill = "/* pixels[i] / 255.0f, quantized with the manifest's scale and zero_point */"
    return f"""int classify(const uint8_t* pixels) {{  // 28×28 grayscale, row-major
  {ctype}* input = interpreter->input(0)->data.{field};
  for (int i = 0; i < 28 * 28; ++i) input[i] = {fill};
  interpreter->Invoke();
  const {ctype}* scores = interpreter->output(0)->data.{field};
  int best = 0;
  for (int c = 1; c < 10; ++c) if (scores[c] > scores[best]) best = c;
  return best;
}}"""


def _c_type(spec: TensorSpec) -> tuple[str, str]:
    """A tensor's C type and the TfLiteTensor data field that points at it."""
    ctype = {"int8": "int8_t", "float32": "float"}.get(spec.dtype, "auto")
    return ctype, {"int8": "int8", "float32": "f"}.get(spec.dtype, spec.dtype)


def _mnist_parts(result: BundleResult, shortcut: str | None) -> dict[str, str]:
    """The README's MNIST sentences: the pixel recipe, the digits, the test accuracy."""
    rows = "\n".join(
        f"| {a.runtime} | {a.kernels} | {a.accuracy:.4f} | {a.source} |" for a in result.accuracy
    )
    keras = f"{result.keras_accuracy:.4f}" if result.keras_accuracy is not None else "unknown"
    equivalently = f" (equivalently: {shortcut})" if shortcut else ""
    return {
        "preprocessing": f"pixel / 255, then quantize{equivalently}.",
        "output": (
            f"{result.output.dtype} scores for the digits 0-9 (`labels.txt`); "
            "the class is the argmax."
        ),
        "accuracy": (
            f"- Accuracy on the 10,000 MNIST test images (the Keras model: {keras}):\n\n"
            "| runtime | kernels | accuracy | source |\n| --- | --- | --- | --- |\n" + rows
        ),
        "litert_print": 'print(interpreter.get_tensor(out["index"]).argmax(), golden["labels"][0])',
        "run_function": _classify(result.input, shortcut),
        "golden_of": f" and `labels`, for the first {result.golden['count']} MNIST test images",
        "on_cortex_m": (
            "TFLM's CMSIS-NN kernels reproduced the golden vectors bit for bit\n"
            "on Cortex-M4, M7 and M55 in QEMU (`mnist-edge firmware`)."
        ),
    }


def _given_parts(result: BundleResult, given: GoldenVectors) -> dict[str, str]:
    """The README's sentences for a model run on the inputs --inputs named: the input and
    output tensors as the model takes and gives them, and accuracy only where there are labels."""
    spec, out = result.input, result.output
    if spec.dtype == "int8":
        preprocessing = (
            "none known here (the model's own features of its raw data); a real\n"
            "  value x is fed as q = clamp(round(x / scale) + zero point, -128, 127)."
        )
    else:
        preprocessing = "none known here (the model's own features of its raw data, as float32)."
    if given.labels is None:
        accuracy = (
            f"- Accuracy: none measured: the golden inputs ({given.source}) have no\n"
            "  labels; the agreement below is the check."
        )
    else:
        rows = "\n".join(
            f"| {a.runtime} | {a.kernels} | {a.accuracy:.4f} | {a.source} |"
            for a in result.accuracy
        )
        accuracy = (
            f"- Accuracy on the golden inputs ({given.source}), against their labels:\n\n"
            "| runtime | kernels | accuracy | source |\n| --- | --- | --- | --- |\n" + rows
        )
    labels = " and `labels`" if given.labels is not None else ""
    return {
        "preprocessing": preprocessing,
        "output": (
            f"{out.dtype} {list(out.shape)}, scale {out.scale}, zero point {out.zero_point}\n"
            "  (no class names known here: no `labels.txt`)."
        ),
        "accuracy": accuracy,
        "litert_print": 'print(interpreter.get_tensor(out["index"])[0], golden["outputs"][0])',
        "run_function": _run(spec, out, given),
        "golden_of": f"{labels}, for {given.count} inputs: {given.described}",
        "on_cortex_m": (
            "To check TFLM's CMSIS-NN kernels and the C engine\n"
            f"on a Cortex-M in QEMU: `mnist-edge firmware --model {result.model} --engine all\n"
            "--inputs ...` with the same inputs (`random:N` with the same `--seed` gives the same\n"
            "bytes again; or save golden.npz's `inputs` as a .npy file)."
        ),
    }


def _run(spec: TensorSpec, out: TensorSpec, given: GoldenVectors) -> str:
    """The C++ function that runs one input, as the golden inputs hold it, into its outputs."""
    ctype, field = _c_type(spec)
    otype, ofield = _c_type(out)
    size = int(given.inputs[0].size)
    outputs = int(given.flat_outputs().shape[1])
    shape = "×".join(map(str, spec.shape[1:]))
    return f"""// One input ({shape} {spec.dtype}, row-major, as golden.npz holds it) to outputs.
void run(const {ctype}* values, {otype}* outputs) {{
  {ctype}* input = interpreter->input(0)->data.{field};
  for (int i = 0; i < {size}; ++i) input[i] = values[i];
  interpreter->Invoke();
  const {otype}* result = interpreter->output(0)->data.{ofield};
  for (int i = 0; i < {outputs}; ++i) outputs[i] = result[i];
}}"""


def _platforms(result: BundleResult) -> str:
    """The target-measured figures and the platform proofs, as README paragraphs (or nothing)."""
    parts = []
    if result.on_target:
        rows = "\n".join(
            f"| {t.cpu} | {t.engine} | {t.kernels} | {t.golden} | {t.arena_bytes:,} | "
            f"{t.flash_bytes:,} | {t.ram_bytes:,} | "
            f"{t.instructions_per_inference or 0:,} |"
            for t in result.on_target
        )
        parts.append(
            "Measured on target (`mnist-edge firmware`, QEMU; this model's very bytes; flash and "
            "RAM of the whole firmware, code included):\n\n"
            "| CPU | engine | kernels | golden | arena B | flash B | RAM B | instructions |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + rows + "\n"
        )
    for proof in result.proven:
        lines = "\n".join(f"- {line}" for line in proof.findings())
        parts.append(f"Proven on {proof.platform} (Python {proof.python}):\n\n{lines}\n")
    parts.extend(f"{textwrap.fill('Not proven on ' + why, 100)}\n" for why in result.not_proven)
    return "\n".join(parts) + ("\n" if parts else "")


def _c_engine(result: BundleResult, inputs: str) -> str:
    """The C engine's section (c_engine/), or the reason it was left out, or nothing."""
    c = result.c_engine
    if c is None:
        left_out = "".join(f"\nNot bundled: {why}.\n" for why in result.not_bundled)
        return left_out
    check = c.host_check
    return f"""
## The C engine (no interpreter): `{c.folder}/`

The same model compiled to C99 by mnist-edge: `model.h` declares one function,
`int {c.prefix}_infer(const int8_t *input, int8_t *output)`, and the sizes a caller needs;
`model.c` holds the weights as `const` arrays and one static arena of {c.arena_bytes:,} bytes
(a {c.plan_level} memory plan: one call per layer would need at least {c.lower_bound_bytes:,}),
and calls CMSIS-NN's kernels (`cmsis-nn/`, Apache-2.0) directly. No interpreter, no flatbuffer,
no heap. Its int8 outputs were bit-identical to TFLM's on {check.bit_identical:,} of
{check.images:,} {inputs} on the host that made this bundle. Build it and run its golden
test:

```bash
cd {c.folder} && {c.build}
```

For a microcontroller, add `model.c` (with the headers beside it) and the listed
`cmsis-nn/Source` files to your firmware
with your CPU's flags (CMSIS-NN takes its DSP or Helium path from them).
"""


def _npu(result: BundleResult) -> str:
    """vela's compilations for Ethos-U NPUs, each stated as the estimate it is."""
    if not result.npu:
        return ""
    rows = "\n".join(
        f"| {n.accelerator} | `npu/{n.accelerator}/{n.artifact.removesuffix('.tflite')}"
        f"_vela.tflite` | {n.cycles_total:,} | {n.inference_us:,.1f} µs at "
        f"{n.clock_hz / 1e6:,.0f} MHz | {n.sram_bytes:,} | {n.npu_operators}/{n.model_operators} "
        f"| {', '.join(n.cpu_operators) or 'none'} |"
        for n in result.npu
    )
    return f"""
## Arm Ethos-U NPU (compiled by vela; its figures are estimates)

For an Ethos-U NPU beside the Cortex-M, ship the vela-compiled model, which runs through the NPU
driver and TFLM's `ETHOSU` operator. No NPU ran it here: every figure below is vela's
performance estimate ({result.npu[0].basis}, vela {result.npu[0].vela_version}), not a
measurement, and the compiled model is not verified on a device.

| NPU | model | cycles | time | SRAM B | operators on the NPU | left on the CPU |
| --- | --- | --- | --- | --- | --- | --- |
{rows}
"""
