"""The bundle's README.md: what it holds, how to run it in LiteRT and TFLM, how to check it."""

from __future__ import annotations

from mnist_edge import __version__
from mnist_edge.device.csource import template
from mnist_edge.records import BundleResult


def bundle_readme(result: BundleResult, c_name: str) -> str:
    """The bundle's README.md: what it is, how to run it in LiteRT and TFLM, how to check it."""
    model, spec, arena = result.model, result.input, result.arena_bytes
    calls = "\n".join(f"  resolver.{call};" for call in result.tflm_calls)
    field_name = {"int8": "int8", "float32": "f"}.get(spec.dtype, spec.dtype)
    ctype = {"int8": "int8_t", "float32": "float"}.get(spec.dtype, "auto")
    shortcut = result.preprocessing.get("int8_shortcut")
    if spec.dtype == "int8" and shortcut:
        fill = f"static_cast<int8_t>(pixels[i] - {-int(spec.zero_point or 0)})"
    elif spec.dtype == "float32":
        fill = "pixels[i] / 255.0f"
    else:
        fill = "/* pixels[i] / 255.0f, quantized with the manifest's scale and zero_point */"
    accuracy = "\n".join(
        f"| {a.runtime} | {a.kernels} | {a.accuracy:.4f} | {a.source} |" for a in result.accuracy
    )
    keras = f"{result.keras_accuracy:.4f}" if result.keras_accuracy is not None else "unknown"
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
    agreement = "; ".join(
        f"{a.a} and {a.b} gave bit-identical outputs on {a.bit_identical:,} of {a.images:,} "
        f"test images (at most {a.max_abs_diff:g} apart) and the same class on {a.same_class:,}"
        for a in result.agreement
    )
    count = result.golden["count"]
    equivalently = f" (equivalently: {shortcut})" if shortcut else ""
    fields = {
        "version": __version__,
        "model": model,
        "kind": result.kind,
        "flash_bytes": f"{result.flash_bytes:,}",
        "params": f"{result.params:,}",
        "macs": f"{result.macs:,}",
        "input_dtype": spec.dtype,
        "input_shape": list(spec.shape),
        "scale": spec.scale,
        "zero_point": spec.zero_point,
        "equivalently": equivalently,
        "output_dtype": result.output.dtype,
        "arena": arena,
        "arena_bytes": f"{arena:,}",
        "min_runtime": result.min_runtime.version,
        "keras": keras,
        "accuracy": accuracy,
        "agreement": agreement + "." if agreement else "",
        "c_name": c_name,
        "resolver": result.tflm_resolver,
        "calls": calls,
        "ctype": ctype,
        "field_name": field_name,
        "fill": fill,
        "count": count,
        "proofs": proofs,
        "platforms": _platforms(result),
        "c_engine": _c_engine(result),
        "npu": _npu(result),
    }
    return template("README.md", "mnist_edge.bundle").substitute(fields)


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
    return "\n".join(parts) + ("\n" if parts else "")


def _c_engine(result: BundleResult) -> str:
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
{check.images:,} test images on the host that made this bundle. Build it and run its golden
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
