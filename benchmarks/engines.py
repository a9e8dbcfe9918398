"""The two device engines side by side, on every board, in one run: TFLM (the interpreter, with
CMSIS-NN) against the C engine (the model compiled to C with a static memory plan).

Builds both engines for each board with `mnist_edge.firmware.firmware` (real arm-none-eabi-gcc,
real QEMU with instruction counting), checks every output against host TFLM, and prints per
board: flash (engine code / constants / harness), RAM (engine buffers / stack / harness statics),
instructions per inference and per MAC, the ISA's limit, and codegen ÷ TFLM for each; then the
issue's goals on Cortex-M4. Both engines run in the one harness, which reads its inputs from the
host: no images in flash. Writes benchmarks/results/engines.json.

    python benchmarks/engines.py [--images 100] [--model artifacts/model_int8_mcu.tflite]
        [--sources ../shared/third_party]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "engines.json"
# The aims on Cortex-M4 with CMSIS-NN (issue 21), against TFLM + CMSIS-NN.
GOALS = {
    "ram_bytes": 8 * 1024,  # whole firmware, stack included
    "engine_code_bytes": 12 * 1024,
    "flash_without_images_bytes": 108 * 1024,
    "instructions_ratio": 0.5,
}


def row(result) -> dict:
    f, m = result.flash, result.ram
    return {
        "cpu": result.cpu,
        "engine": result.engine,
        "golden": f"{result.golden_identical}/{result.golden_count}",
        "flash_without_images": result.flash_bytes,
        "engine_code": f.engine_code,
        "constants": f.engine_constants,
        "harness": f.harness,
        "ram": result.ram_bytes,
        "buffers": m.engine_buffers,
        "stack": m.stack,
        "statics": m.harness_statics,
        "instructions": result.instructions_per_inference,
        "per_mac": result.instructions_per_mac,
        "isa_limit": result.isa_limit_instructions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--model", type=Path, default=Path("artifacts/model_int8_mcu.tflite"))
    parser.add_argument("--sources", type=Path, default=None)
    args = parser.parse_args()

    from mnist_edge.data import load_test_split
    from mnist_edge.firmware import firmware
    from mnist_edge.options import FIRMWARE_CPUS

    mnist = load_test_split(None)
    with tempfile.TemporaryDirectory() as out:
        report = firmware(
            args.model,
            mnist.x_test[: args.images],
            mnist.y_test[: args.images],
            cpus=list(FIRMWARE_CPUS),
            kernels=["cmsis-nn"],
            engines=["tflm", "codegen"],
            out=Path(out),
            sources=args.sources,
            overwrite=True,
            timeout_s=1800,
        )
    rows = [row(r) for r in report.results]
    header = (
        f"{'cpu':<11} {'engine':<8} {'golden':>8} {'flash':>8} {'code':>7} {'const':>7} "
        f"{'harness':>7} {'RAM':>7} {'buffers':>7} {'stack':>6} {'statics':>7} "
        f"{'instr':>11} {'/MAC':>5} {'ISA lim':>10}"
    )
    print(f"{report.model}, {args.images} test images, {report.toolchain}; {report.qemu}")
    print(header)
    for r in rows:
        print(
            f"{r['cpu']:<11} {r['engine']:<8} {r['golden']:>8} {r['flash_without_images']:>8,} "
            f"{r['engine_code']:>7,} {r['constants']:>7,} {r['harness']:>7,} {r['ram']:>7,} "
            f"{r['buffers']:>7,} {r['stack']:>6,} {r['statics']:>7,} {r['instructions']:>11,} "
            f"{r['per_mac']:>5.2f} {r['isa_limit']:>10,}"
        )
    for why in report.not_built:
        print(f"not built: {why}")

    ratios = {}
    by = {(r["cpu"], r["engine"]): r for r in rows}
    print("\ncodegen ÷ TFLM (same board, same run):")
    for cpu in FIRMWARE_CPUS:
        ours, theirs = by.get((cpu, "codegen")), by.get((cpu, "tflm"))
        if ours is None or theirs is None:
            continue
        ratios[cpu] = {
            key: round(ours[key] / theirs[key], 3)
            for key in ("flash_without_images", "engine_code", "ram", "instructions")
        }
        print(f"  {cpu:<11} " + ", ".join(f"{k} {v:.2f}" for k, v in ratios[cpu].items()))

    m4 = by.get(("cortex-m4", "codegen"))
    verdict = {}
    if m4 and "cortex-m4" in ratios:
        verdict = {
            "ram_bytes": [m4["ram"], GOALS["ram_bytes"], m4["ram"] <= GOALS["ram_bytes"]],
            "engine_code_bytes": [
                m4["engine_code"],
                GOALS["engine_code_bytes"],
                m4["engine_code"] <= GOALS["engine_code_bytes"],
            ],
            "flash_without_images_bytes": [
                m4["flash_without_images"],
                GOALS["flash_without_images_bytes"],
                m4["flash_without_images"] <= GOALS["flash_without_images_bytes"],
            ],
            "instructions_ratio": [
                ratios["cortex-m4"]["instructions"],
                GOALS["instructions_ratio"],
                ratios["cortex-m4"]["instructions"] <= GOALS["instructions_ratio"],
            ],
        }
        print("\nGoals on cortex-m4 (measured, goal, met):")
        for key, (value, goal, met) in verdict.items():
            print(f"  {key:<28} {value:>10,} {goal:>10,} {'met' if met else 'NOT met'}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "model": report.model,
                "model_sha256": report.model_sha256,
                "images": args.images,
                "toolchain": report.toolchain,
                "qemu": report.qemu,
                "rows": rows,
                "ratios": ratios,
                "goals": GOALS,
                "verdict": verdict,
                "not_built": report.not_built,
                "results": [asdict(r) for r in report.results],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
