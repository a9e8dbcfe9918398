"""MLPerf Tiny's reference models through both device engines: TFLM (the interpreter, with
CMSIS-NN) against the C engine (the model compiled to C with a static memory plan).

For image classification (IC, ResNet-8), keyword spotting (KWS, DS-CNN) and anomaly detection
(AD, an FC autoencoder), int8 from input to output, as MLPerf Tiny publishes them:
- host: the C engine built with the host's compiler (CMSIS-NN's plain C) against host TFLM
  (the tflite-micro Python interpreter), every output byte of seeded random inputs;
- on target: `mnist_edge.firmware.firmware` (real arm-none-eabi-gcc and riscv64-unknown-elf-gcc,
  real QEMU with instruction counting) for both engines on Cortex-M4/M7/M55/M33, and the C engine
  alone on Cortex-M0, Cortex-M3 and RV32IMC where it fits (a board too small is written down as
  "does not fit", with the linker's reason); every output byte against host TFLM's.
Per model × board × engine: bit-identical count, instructions per inference and per MAC, RAM
(engine buffers + stack), flash (engine code / constants), and C engine ÷ TFLM in the same run.
MLPerf Tiny's published Cortex-M4 results stand beside them in their own unit (cycles on silicon
at 120 MHz), never divided by QEMU's instruction counts. Writes
benchmarks/results/mlperf_tiny.json.

    python benchmarks/mlperf_tiny.py [--inputs-count 100] [--host-count 1000] [--quick]
        [--models IC,KWS,AD] [--cpus cortex-m4,...] [--sources ../shared/third_party]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "mlperf_tiny.json"
MODELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"
SOURCES_DIR = Path(__file__).resolve().parents[2] / "shared" / "third_party"
MODELS = {
    "IC": "pretrainedResnet_quant.tflite",
    "KWS": "kws_ref_model.tflite",
    "AD": "ad01_int8.tflite",
}
# Both engines: the boards TFLM's firmware is built for. The C engine alone: the small boards
# (TFLM's arena alone exceeds their RAM for IC and KWS) and RISC-V (TFLM's C++ has no runtime
# there).
BOTH_ENGINES_CPUS = ("cortex-m4", "cortex-m7", "cortex-m55", "cortex-m33")
C_ENGINE_ONLY_CPUS = ("cortex-m0", "cortex-m3", "rv32imc")
SEED = 0
# MLPerf Tiny's results repositories (mlcommons/tiny_results_v0.5 .. v1.3) on the reference
# board NUCLEO-L4R5ZI, as ../shared/models/mlperf-tiny/SOURCES.md copies them. Cycles on
# silicon with flash wait states: another unit than QEMU's instructions, so shown beside them
# and never divided by them.
PUBLISHED_UNIT = "cycles on silicon, NUCLEO-L4R5ZI (Cortex-M4 at 120 MHz, flash wait states)"
PUBLISHED = {
    "IC": {
        "tflm_reference": {"ms": 704.2, "mcycles": 84.5, "who": "TFLM 2.3.1 + CMSIS-NN, v0.5"},
        "best": {
            "ms": 165.1,
            "mcycles": 19.8,
            "cycles_per_mac": 1.58,
            "who": "X-CUBE-AI 9.0, v1.2",
        },
        "microtvm_cmsis_nn_ms": 389.6,
    },
    "KWS": {
        "tflm_reference": {"ms": 181.9, "mcycles": 21.8, "who": "TFLM 2.3.1 + CMSIS-NN, v0.5"},
        "best": {
            "ms": 43.19,
            "mcycles": 5.18,
            "cycles_per_mac": 1.95,
            "who": "X-CUBE-AI 9.0, v1.2",
        },
        "microtvm_cmsis_nn_ms": 99.8,
    },
    "AD": {
        "tflm_reference": {"ms": 10.05, "mcycles": 1.21, "who": "TFLM 2.3.1 + CMSIS-NN, v0.5"},
        "best": {"ms": 4.05, "mcycles": 0.49, "who": "Plumerai, v1.1"},
        "microtvm_cmsis_nn_ms": 8.61,
    },
}
# Issue 26's goals on Cortex-M4 with CMSIS-NN, C engine ÷ TFLM in the same run.
INSTRUCTIONS_RATIO_GOAL = {"IC": 0.7, "KWS": 0.7, "AD": 0.9}
RAM_RATIO_GOAL = {"IC": 0.4, "KWS": 0.4}
# The "done when" on the M4, for each model: not worse than TFLM, and less RAM.
DONE_INSTRUCTIONS_RATIO = 1.0
DONE_RAM_RATIO = 0.7
IC_RAM_GOAL_BYTES = 32 * 1024
IC_PER_MAC_GOAL = 1.3
HOST_BIT_EXACT_GOAL = 1000
TARGET_BIT_EXACT_GOAL = 100


def model_macs(path: Path) -> int:
    """The model's multiply-accumulates (Conv2D, DepthwiseConv2D, FullyConnected), as the C
    engine's graph reader counts them."""
    from mnist_edge.codegen.graph import read_graph

    graph = read_graph(path.read_bytes(), path.name)
    return sum(getattr(layer, "macs", 0) for layer in graph.layers)


def host_identity(path: Path, count: int, sources: Path | None) -> dict:
    """The C engine built for the host against host TFLM on `count` seeded random inputs: how
    many outputs are bit-identical, and the first that is not."""
    from mnist_edge.inputs import inputs_for
    from mnist_edge.runtimes.codegen_runner import CodegenRunner
    from mnist_edge.runtimes.tflm_runner import TFLMRunner

    inputs = inputs_for(path, f"random:{count}", count=count, seed=SEED)
    start = time.perf_counter()
    ours = CodegenRunner(path, sources=sources, any_shape=True).predict_raw(inputs.values)
    theirs = TFLMRunner(path, any_shape=True).predict_raw(inputs.values)
    same = np.all(ours.reshape(count, -1) == theirs.reshape(count, -1), axis=1)
    differ = np.flatnonzero(~same)
    return {
        "inputs": inputs.description,
        "identical": int(same.sum()),
        "count": count,
        "first_mismatch": int(differ[0]) if len(differ) else None,
        "seconds": round(time.perf_counter() - start, 1),
    }


def on_target(path: Path, cpu: str, engine: str, count: int, sources: Path | None, scratch: Path):
    """One engine on one board through the firmware command: its FirmwareResult, or the one
    line why it did not build or run (a board too small says which region overflowed); and
    the compiler and QEMU that built and ran it."""
    from mnist_edge.errors import MnistEdgeError
    from mnist_edge.firmware import firmware
    from mnist_edge.inputs import inputs_for

    inputs = inputs_for(path, f"random:{count}", count=count, seed=SEED)
    try:
        report = firmware(
            path,
            inputs,
            cpus=[cpu],
            kernels=["cmsis-nn"],
            engines=[engine],
            out=scratch / f"{path.stem}-{cpu}-{engine}",
            sources=sources,
            overwrite=True,
            timeout_s=3600,
        )
    except MnistEdgeError as exc:
        return None, str(exc), ()
    if not report.results:
        return None, "; ".join(report.not_built) or report.skipped or "nothing built", ()
    return report.results[0], None, (report.toolchain, report.qemu)


def row(name: str, result, macs: int) -> dict:
    """The figures of one model × board × engine that the table and the goals read."""
    f, m = result.flash, result.ram
    return {
        "model": name,
        "cpu": result.cpu,
        "engine": result.engine,
        "identical": result.golden_identical,
        "count": result.golden_count,
        "passed": result.passed,
        "instructions": result.instructions_per_inference,
        "macs": macs,
        "per_mac": round(result.instructions_per_inference / macs, 3)
        if result.instructions_per_inference
        else None,
        "ram": m.engine_buffers + m.stack,  # engine buffers + stack, the RAM
        "buffers": m.engine_buffers,
        "stack": m.stack,
        "ram_with_harness": result.ram_bytes,
        "engine_code": f.engine_code,
        "constants": f.engine_constants,
        "flash_with_harness": result.flash_bytes,
        "isa_limit": result.isa_limit_instructions,
        "arena": result.arena_measured_on,  # TFLM: device; the C engine: its speed or size plan
    }


def ratios_of(rows: list[dict]) -> dict:
    """C engine ÷ TFLM per model × board where both ran in this run."""
    by = {(r["model"], r["cpu"], r["engine"]): r for r in rows}
    ratios = {}
    for (name, cpu, engine), ours in by.items():
        theirs = by.get((name, cpu, "tflm"))
        if engine != "codegen" or theirs is None or not ours["instructions"]:
            continue
        ratios[f"{name} {cpu}"] = {
            key: round(ours[key] / theirs[key], 3)
            for key in ("instructions", "ram", "engine_code", "constants")
        }
    return ratios


def layer_index(name: str) -> int:
    """The model operator a layer cost belongs to: TFLM's "CONV_2D_4" and the C engine's
    "conv_4" (or a fused step "conv_0+maxpool_1", named by its first) are operator 4."""
    return int(name.split("+")[0].rsplit("_", 1)[-1])


def layers_side_by_side(results: list[dict], cpu: str) -> dict:
    """Per model, each operator's instructions in both engines on `cpu` (one profiled
    inference each), matched by the operator's index in the model."""
    tables = {}
    for name in dict.fromkeys(r["benchmark"] for r in results):
        here = [r for r in results if (r["benchmark"], r["cpu"]) == (name, cpu)]
        engines = {r["engine"]: r["layers"] for r in here}
        if set(engines) != {"tflm", "codegen"}:
            continue
        ours = {layer_index(c["name"]): c for c in engines["codegen"]}
        table = []
        for theirs in engines["tflm"]:
            mine = ours.get(layer_index(theirs["name"]))
            table.append(
                {
                    "tflm": theirs["name"],
                    "tflm_instructions": theirs["instructions"],
                    "codegen": mine and mine["name"],
                    "codegen_instructions": mine and mine["instructions"],
                }
            )
        tables[name] = table
    return tables


def goals(rows: list[dict], ratios: dict, host: dict, refused: list[dict]) -> list[dict]:
    """Issue 26's goals, each with what was measured and whether it is met."""
    by = {(r["model"], r["cpu"], r["engine"]): r for r in rows}
    found = []

    def goal(what: str, measured, target: str, met, enough: bool = True) -> None:
        # A run with fewer inputs than the goal names (--quick) measures nothing against it.
        state = bool(met) if enough else None
        found.append({"goal": what, "measured": measured, "target": target, "met": state})

    for name, h in host.items():
        goal(
            f"{name} host bit-exact",
            f"{h['identical']}/{h['count']}",
            f"{HOST_BIT_EXACT_GOAL}/{HOST_BIT_EXACT_GOAL}",
            h["identical"] == h["count"],
            h["count"] >= HOST_BIT_EXACT_GOAL,
        )
    for r in rows:
        goal(
            f"{r['model']} {r['cpu']} {r['engine']} bit-exact",
            f"{r['identical']}/{r['count']}",
            f"all of ≥ {TARGET_BIT_EXACT_GOAL}",
            r["passed"],
            r["count"] >= TARGET_BIT_EXACT_GOAL,
        )
    for name, limit in INSTRUCTIONS_RATIO_GOAL.items():
        ratio = ratios.get(f"{name} cortex-m4", {}).get("instructions")
        goal(f"{name} M4 instructions C/TFLM", ratio, f"≤ {limit}", ratio and ratio <= limit)
    for name, limit in RAM_RATIO_GOAL.items():
        ratio = ratios.get(f"{name} cortex-m4", {}).get("ram")
        goal(f"{name} M4 RAM C/TFLM", ratio, f"≤ {limit}", ratio and ratio <= limit)
    m0 = by.get(("KWS", "cortex-m0", "codegen"))
    for name in MODELS:
        m4 = ratios.get(f"{name} cortex-m4")
        if m4 is not None:
            done = m4["instructions"] <= DONE_INSTRUCTIONS_RATIO and m4["ram"] <= DONE_RAM_RATIO
            goal(f"{name} M4 done-when: instr, RAM C/TFLM", f"{m4['instructions']}, {m4['ram']}",
                 f"≤ {DONE_INSTRUCTIONS_RATIO}, ≤ {DONE_RAM_RATIO}", done)  # fmt: skip
    tried = m0 or any((r["model"], r["cpu"]) == ("KWS", "cortex-m0") for r in refused)
    goal("KWS on cortex-m0", m0 and f"{m0['identical']}/{m0['count']}", "runs, bit-exact",
         m0 and m0["passed"], bool(tried))  # fmt: skip
    ic = by.get(("IC", "cortex-m4", "codegen"))
    goal("IC RAM (buffers + stack, M4)", ic and ic["ram"], f"≤ {IC_RAM_GOAL_BYTES:,} B",
         ic and ic["ram"] <= IC_RAM_GOAL_BYTES)  # fmt: skip
    goal("IC instructions per MAC (M4)", ic and ic["per_mac"], f"≤ {IC_PER_MAC_GOAL}",
         ic and ic["per_mac"] and ic["per_mac"] <= IC_PER_MAC_GOAL)  # fmt: skip
    return found


def print_tables(rows, ratios, refused, host, verdict, layers, count: int) -> None:
    """Ratios first, then every configuration, what did not run, the published results, goals."""
    print("\nC engine ÷ TFLM + CMSIS-NN (same board, same run, same inputs):")
    print(f"  {'model':<4} {'cpu':<11} {'instr':>6} {'RAM':>6} {'code':>6} {'const':>6}")
    for key, r in ratios.items():
        name, cpu = key.split()
        print(
            f"  {name:<4} {cpu:<11} {r['instructions']:>6.2f} {r['ram']:>6.2f} "
            f"{r['engine_code']:>6.2f} {r['constants']:>6.2f}"
        )
    print(f"\nOn target ({count} seeded random inputs each; instructions counted by QEMU):")
    print(
        f"  {'model':<4} {'cpu':<11} {'engine':<8} {'identical':>9} {'instructions':>12} "
        f"{'/MAC':>5} {'RAM':>7} {'buffers':>7} {'stack':>6} {'code':>7} {'const':>7} arena"
    )
    for r in rows:
        per_mac = f"{r['per_mac']:.2f}" if r["per_mac"] else "-"
        print(
            f"  {r['model']:<4} {r['cpu']:<11} {r['engine']:<8} "
            f"{r['identical']:>5}/{r['count']:<3} {r['instructions'] or 0:>12,} {per_mac:>5} "
            f"{r['ram']:>7,} {r['buffers']:>7,} {r['stack']:>6,} {r['engine_code']:>7,} "
            f"{r['constants']:>7,} {r['arena']}"
        )
    for r in refused:
        print(f"  {r['model']:<4} {r['cpu']:<11} {r['engine']:<8} not run: {r['reason']}")
    print("\nHost: the C engine (plain C) against host TFLM, seeded random inputs:")
    for name, h in host.items():
        print(f"  {name:<4} {h['identical']:,}/{h['count']:,} bit-identical ({h['inputs']})")
    print(f"\nPublished on Cortex-M4 — {PUBLISHED_UNIT}; not QEMU instructions:")
    for name, p in PUBLISHED.items():
        ref, best = p["tflm_reference"], p["best"]
        per_mac = f", {best['cycles_per_mac']} cycles/MAC" if "cycles_per_mac" in best else ""
        print(
            f"  {name:<4} TFLM reference {ref['ms']} ms = {ref['mcycles']} Mcycles; best "
            f"{best['ms']} ms = {best['mcycles']} Mcycles{per_mac} ({best['who']})"
        )
    print("\nPer operator on cortex-m4 (instructions of one profiled inference; C ÷ TFLM):")
    for name, table in layers.items():
        for t in table:
            ours, theirs = t["codegen_instructions"], t["tflm_instructions"]
            ratio = f"{ours / theirs:5.2f}" if ours and theirs else "    -"
            print(
                f"  {name:<4} {t['tflm']:<22} {theirs:>10,}  {t['codegen'] or '-':<16} "
                f"{ours or 0:>10,}  {ratio}"
            )
    print("\nGoals (issue 26):")
    for g in verdict:
        state = {True: "met", False: "NOT met", None: "too few inputs to say"}[g["met"]]
        print(f"  {g['goal']:<40} {g['measured']!s:>12}  {g['target']:<18} {state}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs-count", type=int, default=100, help="inputs on target")
    parser.add_argument("--host-count", type=int, default=1000, help="inputs on the host")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cpus", default=",".join(BOTH_ENGINES_CPUS + C_ENGINE_ONLY_CPUS))
    sources = SOURCES_DIR if SOURCES_DIR.is_dir() else None
    parser.add_argument("--sources", type=Path, default=sources)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--quick", action="store_true", help="cortex-m4 only, 20 inputs")
    parser.add_argument("--output", type=Path, default=None, help="default: results/")
    args = parser.parse_args()
    if args.quick:
        args.cpus, args.inputs_count, args.host_count = "cortex-m4", 20, 100
    if args.output is None:
        # A quick run's figures are not the benchmark's: they stay out of results/.
        quick = Path(tempfile.gettempdir()) / "mlperf_tiny_quick.json"
        args.output = quick if args.quick else RESULTS
    return args


def main() -> None:
    args = parse_args()
    names = [n.strip().upper() for n in args.models.split(",")]
    cpus = [c.strip() for c in args.cpus.split(",")]
    host, rows, refused, results, macs, tools = {}, [], [], [], {}, {}
    started, state = time.perf_counter(), source_state()
    print(f"mnist-edge at {state['commit'][:12]}, package modified: {state['package_modified']}")
    with tempfile.TemporaryDirectory(prefix="mlperf-tiny-") as scratch:
        for name in names:
            path = args.models_dir / MODELS[name]
            macs[name] = model_macs(path)
            host[name] = host_identity(path, args.host_count, args.sources)
            print(f"{name} host: {host[name]['identical']}/{host[name]['count']}", flush=True)
            for cpu in cpus:
                both = cpu in BOTH_ENGINES_CPUS
                for engine in ("tflm", "codegen") if both else ("codegen",):
                    result, reason, used = on_target(
                        path, cpu, engine, args.inputs_count, args.sources, Path(scratch)
                    )
                    tools.update(dict.fromkeys(tool for tool in used if tool))
                    if result is None:
                        refused.append(
                            {"model": name, "cpu": cpu, "engine": engine, "reason": reason}
                        )
                        print(f"{name} {cpu} {engine}: not run: {reason}", flush=True)
                        continue
                    rows.append(row(name, result, macs[name]))
                    results.append({**asdict(result), "benchmark": name})
                    r = rows[-1]
                    print(
                        f"{name} {cpu} {engine}: {r['identical']}/{r['count']}, "
                        f"{r['instructions']:,} instructions, RAM {r['ram']:,}",
                        flush=True,
                    )
    state["tools"] = list(tools)
    ratios = ratios_of(rows)
    verdict = goals(rows, ratios, host, refused)
    layers = layers_side_by_side(results, "cortex-m4")
    print_tables(rows, ratios, refused, host, verdict, layers, args.inputs_count)
    write(args, names, macs, host, rows, refused, ratios, verdict, layers, results, started, state)


def source_state() -> dict:
    """The commit the engines came from, and whether the package differed from it: the C
    engine changes often, and its figures belong to one state of it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        run = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "package_modified": bool(git("status", "--porcelain", "--", "mnist_edge")),
    }


def write(args, names, macs, host, rows, refused, ratios, verdict, layers, results, started, state):
    """The JSON: the setup, every figure the tables show, and each firmware result whole."""
    from mnist_edge import __version__
    from mnist_edge.files import sha256_file
    from mnist_edge.machine import detect_machine

    payload = {
        "date": date.today().isoformat(),
        "mnist_edge": __version__,
        "machine": asdict(detect_machine()),
        "tools": state["tools"],
        "seconds": round(time.perf_counter() - started),
        "source": {key: state[key] for key in ("commit", "package_modified")},
        "settings": {
            "inputs_on_target": f"random:{args.inputs_count} (seed {SEED})",
            "inputs_on_host": f"random:{args.host_count} (seed {SEED})",
            "kernels": "cmsis-nn",
            "quick": args.quick,
            "unit": "instructions counted by QEMU (-icount shift=0), not cycles",
            "ram": "engine buffers + stack (TFLM: arena, interpreter, resolver; C engine: its "
            "one static arena), peak stack painted",
        },
        "models": {
            name: {
                "file": MODELS[name],
                "sha256": sha256_file(args.models_dir / MODELS[name]),
                "macs": macs[name],
            }
            for name in names
        },
        "host": host,
        "ratios": ratios,
        "rows": rows,
        "not_run": refused,
        "published_cortex_m4": {"unit": PUBLISHED_UNIT, "results": PUBLISHED},
        "goals": verdict,
        "layers_cortex_m4": layers,
        "results": results,
    }
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
