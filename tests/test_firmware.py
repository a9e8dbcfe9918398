"""Firmware: the quick int8 model built for Cortex-M with both engines through the one harness,
run in QEMU, checked bit for bit.

Real arm-none-eabi-gcc, real qemu-system-arm, real TFLM (host and device), no mocks. The pinned
source archives come from ../shared/third_party beside the checkout (or
$MNIST_EDGE_FIRMWARE_SOURCES); nothing is downloaded. conftest.py points the cache into the
checkout, where the compiled TFLM libraries stay between runs: a clean library build takes a few
minutes on 2 cores, relinking for a new model or new images seconds.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.errors import CheckFailed, MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.firmware import FirmwareReport, firmware
from mnist_edge.firmware.boards import BOARDS
from mnist_edge.firmware.build import find_toolchain, map_attribution
from mnist_edge.firmware.qemu import find_qemu, parse_uart, qemu_command, run_firmware
from mnist_edge.sources import SOURCE_BY_NAME, SOURCES, tree_hash_of_archive
from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

IMAGES = 20
# Ceilings on instructions per inference (QEMU's -icount shift=0 makes SysTick count
# instructions). Where they come from: the feasibility run of ../shared/FIRMWARE.md beside the
# checkout ("Figures from that run": the default pipeline's int8 model, 20 test images, -O2,
# Debian 12's arm-none-eabi-gcc 12.2.rel1, QEMU 7.2, the archives pinned in
# third_party/SOURCES.md) measured M4 CMSIS-NN 6,808,714 and M55 reference 205,269,704; each
# ceiling is that figure rounded up, so ours must not be slower. This suite's quick model,
# measured with arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205, QEMU 7.2.22 (Debian
# 1:7.2+dfsg-7+deb12u18+b3) and those archives by `pytest tests/test_firmware.py -k bit_exact
# --basetemp DIR` (instructions_per_inference in DIR/firmware-*0/firmware.json): M4 CMSIS-NN
# 6,809,612 (6,809,452 to 6,809,652 over the 20 images), M55 reference 205,218,084. They are
# the compiler's, QEMU's and the sources' figures as much as ours: a change of any of those
# moves them (the failure message says how to re-measure).
M4_CMSIS_NN_MAX_INSTRUCTIONS = 6_810_000
M4_CODEGEN_MAX_INSTRUCTIONS = 3_387_000  # tests/test_cengine.py says where it comes from
M55_REFERENCE_MAX_INSTRUCTIONS = 205_300_000


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under a folder with its SHA-256: equal snapshots mean nothing changed."""
    from mnist_edge.files import sha256_file

    return {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


# Skipped without arm-none-eabi-gcc or qemu-system-arm, failed instead where $CI is set.
needs_tools = needs_arm_tools


# ----------------------------------------------------------------------------- no build needed

UART = """\
OUT 0 -128 -128 -128 -128 -128 -128 -128 127 -128 -128
INSTR 0 6809612
TFLM says something
OUT 1 -128 -128 127 -128 -128 -128 -128 -128 -128 -128
INSTR 1 6809652
RESULT golden 2/2 correct 1/2 arena 30756 stack 1564
"""


def test_parse_uart_reads_every_line_type():
    uart = parse_uart(UART)
    assert [r.index for r in uart.images] == [0, 1]
    assert uart.images[0].outputs == (-128,) * 7 + (127, -128, -128)
    assert uart.images[1].instructions == 6_809_652
    assert uart.summary.identical == 2 and uart.summary.count == 2
    assert uart.summary.correct == 1 and uart.summary.images == 2
    assert uart.summary.arena_used_bytes == 30_756 and uart.summary.stack_peak_bytes == 1_564
    assert uart.other == ("TFLM says something",)
    assert uart.error is None
    assert parse_uart("ERROR AllocateTensors failed with a 16-byte arena\n").error.startswith(
        "ERROR AllocateTensors"
    )


@pytest.mark.parametrize(
    "text, output_bytes, match",
    [
        ("OUT 0 1 2 3\nINSTR 0 5\n", 10, "expected 10 int8"),
        ("OUT 0 " + " ".join(["300"] * 10) + "\nINSTR 0 5\n", 10, "expected 10 int8"),
        ("OUT 0 " + " ".join(["300"] * 12) + "\nINSTR 0 5\n", None, "expected 12 int8"),
        # Any model's output size, but the same on every line.
        ("OUT 0 1 2 3\nINSTR 0 5\nOUT 1 1 2\nINSTR 1 5\n", None, "expected 3 int8"),
        ("OUT 0 " + " ".join(["0"] * 10) + "\n", 10, "OUT without INSTR"),
        ("INSTR 3 5\n", None, "image 3"),
        ("RESULT golden 2/2 correct 1/2 arena x stack 1\n", None, "Malformed firmware line"),
    ],
)
def test_parse_uart_rejects_malformed_lines(text, output_bytes, match):
    with pytest.raises(MnistEdgeError, match=match):
        parse_uart(text, output_bytes)


def _tarball(path: Path, top: str, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{top}/link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tar.addfile(link)
    return path


def test_tree_hash_is_the_documented_one(tmp_path):
    import hashlib

    files = {"b/c.txt": b"second\n", "a.txt": b"first\n"}
    archive = _tarball(tmp_path / "x.tar.gz", "repo-0123", files)
    # SOURCES.md: sorted `RELPATH NUL sha256hex LF`, symbolic links not counted.
    lines = sorted(f"{p}\0{hashlib.sha256(d).hexdigest()}\n" for p, d in files.items())
    expected = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert tree_hash_of_archive(archive) == (expected, 2)


@needs_sources
def test_pinned_archives_have_their_tree_hashes():
    for source in SOURCES:
        archive = SOURCES_DIR / source.archive_names[0]
        assert tree_hash_of_archive(archive) == (source.tree_hash, source.files), source.repo


def _sources_with(tmp_path: Path, replace: dict[str, bytes | None]) -> Path:
    """A sources folder linking the real archives, some replaced (None: left out)."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for source in SOURCES:
        name = source.archive_names[0]
        if source.name not in replace:
            (folder / name).symlink_to(SOURCES_DIR / name)
        elif replace[source.name] is not None:
            (folder / name).write_bytes(replace[source.name])
    return folder


def _repacked_with_one_byte_changed(source_name: str) -> bytes:
    source = SOURCE_BY_NAME[source_name]
    out = io.BytesIO()
    with (
        tarfile.open(SOURCES_DIR / source.archive_names[0]) as original,
        tarfile.open(fileobj=out, mode="w:gz") as copy,
    ):
        for member in original:
            data = original.extractfile(member).read() if member.isreg() else None
            if member.name.endswith("/LICENSE"):
                data = data + b" "
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@needs_sources
def test_corrupt_archive_is_named_with_both_hashes(tmp_path):
    from mnist_edge.sources import prepare_sources

    ruy = SOURCE_BY_NAME["ruy"]
    folder = _sources_with(tmp_path, {"ruy": _repacked_with_one_byte_changed("ruy")})
    with pytest.raises(MnistEdgeError) as caught:
        prepare_sources(folder)
    message = str(caught.value)
    assert ruy.archive_names[0] in message and ruy.tree_hash in message
    got = re.search(r"tree hash ([0-9a-f]{64})", message).group(1)
    assert got != ruy.tree_hash
    assert "\n" not in message


@needs_sources
@pytest.mark.parametrize(
    "replace, match",
    [
        ({"gemmlowp": None}, r"no archive of google/gemmlowp@719139ce755a.*gemmlowp-719139ce"),
        ({"CMSIS_6": b"\x1f\x8b truncated"}, r"CMSIS_6-.*not a readable \.tar\.gz"),
    ],
)
def test_missing_or_unreadable_archive(tmp_path, replace, match):
    from mnist_edge.sources import prepare_sources

    with pytest.raises(MnistEdgeError, match=match):
        prepare_sources(_sources_with(tmp_path, replace))


def test_missing_tools_name_the_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing to find
    with pytest.raises(MissingDependencyError, match="gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        find_toolchain()
    with pytest.raises(MissingDependencyError, match="apt-get install qemu-system-arm"):
        find_qemu()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"cpus": ["cortex-r5"]}, "Unknown CPU 'cortex-r5'"),
        ({"cpus": []}, "No CPU given"),
        ({"kernels": ["xnnpack"]}, "Unknown kernels 'xnnpack'"),
        ({"images": np.zeros((3, 28, 28), np.float32)}, "expected uint8 N×28×28"),
        ({"images": np.zeros((0, 28, 28), np.uint8)}, "Invalid image count 0"),
        ({"labels": np.zeros(2, np.uint8)}, r"Labels \| Received uint8 \(2,\)"),
        ({"labels": np.array([0, 10, 1])}, r"Labels \| Received values 0 to 10"),
        ({"max_flash": 0}, "Invalid max_flash 0"),
        ({"timeout_s": -1}, "Invalid timeout"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, options, match):
    arguments = {
        "model": tmp_path / "model_int8.tflite",
        "images": np.zeros((3, 28, 28), np.uint8),
        "labels": np.zeros(3, np.uint8),
        "cpus": ["cortex-m4"],
        "kernels": ["cmsis-nn"],
        "out": tmp_path / "out",
        **options,
    }
    with pytest.raises(MnistEdgeError, match=match):
        firmware(**arguments)
    assert not (tmp_path / "out").exists()


def test_map_attribution_adds_up_with_merged_strings_and_fill():
    text = """\
Linker script and memory map

.text           0x00000000       0x60
 .vectors       0x00000000       0x10 build/startup.o
 .text.main     0x00000010       0x20 build/main.o
 *fill*         0x00000030        0x4
 .text._ZN6tflite14MicroAllocator6CreateEPhj
                0x00000034        0x8 lib/obj/tflite-micro-90b9/tensorflow/lite/micro/x.cc.o
 .rodata.str1.4
                0x0000003c       0x10 lib/obj/CMSIS-NN-4ab8/Source/x.c.o
 .rodata.str1.4
                0x00000040       0x20 /usr/lib/arm-none-eabi/lib/libc_nano.a(lib_a-printf.o)

.data           0x20000000        0x8 load address 0x00000060
 .data.g        0x20000000        0x8 build/model_data.o
"""

    def component(member: str) -> str:
        for key in ("tflite-micro", "CMSIS-NN", "libc", "model_data"):
            if key in member:
                return key
        return "app"

    components = ("app", "tflite-micro", "CMSIS-NN", "libc", "model_data")
    split = map_attribution(text, [".text", ".data"], component, components, "app")
    assert split[".text"]["app"] == 0x34  # vectors, main and the fill after it
    assert split[".text"]["tflite-micro"] == 0x8
    assert split[".text"]["CMSIS-NN"] == 0x4  # merged into the next one's strings
    assert split[".text"]["libc"] == 0x20
    assert sum(split[".text"].values()) == 0x60
    assert split[".data"]["model_data"] == 8


# ----------------------------------------------------------------------------- built and run


MODEL = "model_int8_mcu.tflite"


def _build(tmp_path_factory, exported, mnist, cpu: str, kernels: str, engines) -> FirmwareReport:
    artifacts, _ = exported
    out = tmp_path_factory.mktemp(f"firmware-{cpu}-{kernels}")
    return firmware(
        artifacts / MODEL,
        mnist.x_test[:IMAGES],
        mnist.y_test[:IMAGES],
        cpus=[cpu],
        kernels=[kernels],
        engines=engines,
        out=out,
        sources=SOURCES_DIR,
        overwrite=True,
    )


@pytest.fixture(scope="session")
def m4_cmsis_nn(tmp_path_factory, exported, mnist) -> FirmwareReport:
    """The quick model on Cortex-M4, both engines (TFLM with CMSIS-NN, the C engine): built
    (TFLM's library cached), run, checked."""
    return _build(tmp_path_factory, exported, mnist, "cortex-m4", "cmsis-nn", ["tflm", "codegen"])


@pytest.fixture(scope="session")
def m55_reference(tmp_path_factory, exported, mnist) -> FirmwareReport:
    """The quick model on Cortex-M55 with TFLM's reference kernels."""
    return _build(tmp_path_factory, exported, mnist, "cortex-m55", "reference", ["tflm"])


def _of(report: FirmwareReport, engine: str):
    (result,) = [r for r in report.results if r.engine == engine]
    return result


def _instruction_ceiling_message(report: FirmwareReport, result, limit: int) -> str:
    over = result.instructions_per_inference - limit
    return (
        f"{result.label}: {result.instructions_per_inference:,} instructions per "
        f"inference, {over:,} over the ceiling {limit:,} pinned at the top of "
        f"tests/test_firmware.py (measured with the toolchain, QEMU and sources named there). "
        f"This run: {report.toolchain}; {report.qemu}; the archives in {SOURCES_DIR}. A change "
        "of compiler, QEMU or pinned sources moves the figure: re-measure it on this suite's "
        "quick model with `pytest tests/test_firmware.py -k bit_exact --basetemp DIR` "
        "(instructions_per_inference in DIR/firmware-*/firmware.json), then update the "
        "ceiling and its comment; with none of those changed, the firmware got slower."
    )


@pytest.mark.parametrize(
    "fixture, cpu, kernels, engine, limit",
    [
        ("m4_cmsis_nn", "cortex-m4", "cmsis-nn", "tflm", M4_CMSIS_NN_MAX_INSTRUCTIONS),
        ("m4_cmsis_nn", "cortex-m4", "cmsis-nn", "codegen", M4_CODEGEN_MAX_INSTRUCTIONS),
        pytest.param(
            *("m55_reference", "cortex-m55", "reference", "tflm", M55_REFERENCE_MAX_INSTRUCTIONS),
            marks=pytest.mark.extended,
        ),
    ],
)
@pytest.mark.slow
@needs_sources
@needs_tools
def test_firmware_is_bit_exact_with_host_tflm(request, fixture, cpu, kernels, engine, limit):
    report = request.getfixturevalue(fixture)
    assert report.passed and report.failures == []
    result = _of(report, engine)
    assert (result.cpu, result.kernels, result.board) == (cpu, kernels, BOARDS[cpu].machine)
    assert result.golden_count == result.golden_identical == IMAGES
    assert result.mismatches == ()
    assert result.agreement_with_host_tflm == 1.0
    assert result.correct >= IMAGES - 2  # the quick model: about 95% accurate
    assert result.instructions_per_inference <= limit, _instruction_ceiling_message(
        report, result, limit
    )
    assert result.isa_limit_instructions < result.instructions_per_inference
    assert result.macs == 2_794_240
    assert 0 < result.stack_bytes < result.stack_reserved_bytes
    if engine == "tflm":
        # The arena is sized to what TFLM used on the device (a 32-bit one needs less than the
        # host), and lives in the engine's statics with the interpreter.
        assert 20_000 < result.arena_bytes < 40_000 and result.arena_bytes % 16 == 0
        assert result.arena_measured_on == "device"
        assert result.ram.engine_buffers > result.arena_bytes


@pytest.mark.slow
@needs_sources
@needs_tools
def test_flash_roles_add_up_and_the_record_reads_back(m4_cmsis_nn, exported):
    from mnist_edge.artifacts import load_record

    artifacts, _ = exported
    tflm = _of(m4_cmsis_nn, "tflm")
    # The model's bytes are TFLM's constants, then at most the padding that aligns what follows.
    assert 0 <= tflm.flash.engine_constants - (artifacts / MODEL).stat().st_size < 16
    assert tflm.flash.engine_code > 30_000 and 0 < tflm.flash.harness < 20_000
    assert tflm.tflm is not None and tflm.tflm.library_files > 100
    record = load_record(
        Path(m4_cmsis_nn.out).parent, "firmware", Path(m4_cmsis_nn.out) / "firmware.json"
    )
    assert record.results == m4_cmsis_nn.results
    import json

    raw = json.loads((Path(m4_cmsis_nn.out) / "firmware.json").read_text())
    assert raw["format"] == "mnist-edge-firmware/3"
    assert raw["toolchain"].startswith("arm-none-eabi-gcc")
    assert raw["qemu"].startswith("QEMU emulator version")
    assert raw["sources"]["tensorflow/tflite-micro"]["tree_hash"] == (
        SOURCE_BY_NAME["tflite-micro"].tree_hash
    )


@pytest.mark.slow
@needs_sources
@needs_tools
def test_generated_projects_share_the_harness(m4_cmsis_nn):
    out = Path(m4_cmsis_nn.out)
    harness = "startup.c board.c board.h board.ld semihost.c semihost.h main.c Makefile"
    data = "inputs.bin golden.bin labels.bin indices.bin"
    common = set(f"{harness} {data} engine.h engine.mk README.md firmware.elf firmware.map".split())
    tflm, codegen = out / "cortex-m4-cmsis-nn", out / "cortex-m4-codegen"
    tflm_own = {"engine.cc", "tflm.mk", "model_data.cc", "model_data.h"}
    assert {p.name for p in tflm.iterdir()} >= common | tflm_own
    assert {p.name for p in codegen.iterdir()} >= common | {"model.c", "model.h"}
    for name in harness.split():  # the same harness, but for what names the engine
        ours, theirs = (tflm / name).read_text(), (codegen / name).read_text()
        assert ours.count("\n") > 5, name
        if name == "board.ld":  # each engine's stack reservation
            stack = re.compile(r"__stack_size = 0x[0-9A-F]+;")
            ours, theirs = stack.sub("", ours), stack.sub("", theirs)
        if name not in ("main.c", "Makefile"):
            assert ours == theirs, name
    for name in ("startup.c", "board.c", "board.ld", "main.c", "Makefile", "engine.cc"):
        head = (tflm / name).read_text().splitlines()[:30]
        assert any("Generated by mnist-edge" in line for line in head), name
    engine = (tflm / "engine.cc").read_text()
    # CMSIS-NN's int8-only registrations, one Add per operator kind of the model.
    for registration in ("CONV_2D_INT8", "MAX_POOL_2D_INT8", "FULLY_CONNECTED_INT8"):
        assert f"tflite::Register_{registration}()" in engine
    result = _of(m4_cmsis_nn, "tflm")
    model_data = (tflm / "model_data.h").read_text()  # the arena beside the model's bytes
    assert f"constexpr unsigned int kTensorArenaSize = {result.arena_bytes};" in model_data
    assert "mps2-an386" in (tflm / "Makefile").read_text()
    assert (out / "LICENSES" / "tensorflow_tflite-micro.txt").is_file()


@pytest.mark.extended
@needs_sources
@needs_tools
def test_reference_kernels_use_the_generic_registrations(m55_reference):
    engine = (Path(m55_reference.out) / "cortex-m55-reference" / "engine.cc").read_text()
    assert "resolver.AddConv2D());" in engine and "Register_" not in engine
    tflm = (Path(m55_reference.out) / "cortex-m55-reference" / "tflm.mk").read_text()
    assert "-mcpu=cortex-m55" in tflm and "-DCMSIS_NN" not in tflm


def _run_plain_qemu(project: Path, cpu: str) -> subprocess.CompletedProcess:
    """The ELF run in QEMU by hand, in its project folder (the inputs' files are there)."""
    command = qemu_command(BOARDS[cpu], project / "firmware.elf")
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("project", ["cortex-m4-cmsis-nn", "cortex-m4-codegen"])
@pytest.mark.slow
@needs_sources
@needs_tools
def test_elf_prints_the_documented_lines_in_plain_qemu(m4_cmsis_nn, exported, project):
    from tests.test_cengine import assert_out_lines_are_host_tflms

    folder = Path(m4_cmsis_nn.out) / project
    done = _run_plain_qemu(folder, "cortex-m4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    outs = [line for line in lines if line.startswith("OUT ")]
    instrs = [line for line in lines if line.startswith("INSTR ")]
    layers = [line for line in lines if line.startswith("LAYER ")]
    assert len(outs) == len(instrs) == IMAGES and layers
    assert len(lines) == 2 * IMAGES + len(layers) + 2
    assert all(re.fullmatch(r"INSTR \d+ \d+", line) for line in instrs)
    assert all(re.fullmatch(r"LAYER 0 \S+ \d+", line) for line in layers)
    assert re.fullmatch(r"CALIBRATION \d+ \d+", lines[-2])
    assert re.fullmatch(
        rf"RESULT golden {IMAGES}/{IMAGES} correct \d+/{IMAGES} arena \d+ stack \d+", lines[-1]
    )
    # Every output against the tflite-micro interpreter's, computed by the test.
    assert_out_lines_are_host_tflms(done.stdout, exported[0] / MODEL, folder)


def _copied_project(run, tmp_path: Path, name: str = "cortex-m4-cmsis-nn") -> Path:
    """A project as the firmware command wrote it, copied to change freely."""
    project = tmp_path / "project"
    shutil.copytree(Path(run.out) / name, project)
    return project


def _make_with_its_makefile(project: Path) -> None:
    """Build TFLM's project with its own Makefile, as a user would, against the cached library
    (the one compiled for its tflm.mk)."""
    from mnist_edge.files import cache_dir
    from mnist_edge.firmware.tflm.library import library_key
    from mnist_edge.sources import SourceTree

    tree = SourceTree(cache_dir() / "firmware" / "sources")
    key = library_key((project / "tflm.mk").read_text(), find_toolchain(), tree)
    library = cache_dir() / "firmware" / "lib" / key
    assert (library / "libtflm.a").is_file()
    done = subprocess.run(
        ["make", "-C", str(project), f"SOURCES={tree.root}", f"LIB_DIR={library}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@needs_sources
@needs_tools
def test_shipped_makefile_rebuilds_the_same_elf(m4_cmsis_nn, tmp_path):
    from mnist_edge.files import sha256_file

    project = _copied_project(m4_cmsis_nn, tmp_path)
    (project / "firmware.elf").unlink()
    shutil.rmtree(project / "build", ignore_errors=True)
    _make_with_its_makefile(project)
    assert sha256_file(project / "firmware.elf") == _of(m4_cmsis_nn, "tflm").elf_sha256
    ran = _run_plain_qemu(project, "cortex-m4")
    assert ran.returncode == 0 and f"golden {IMAGES}/{IMAGES}" in ran.stdout


@pytest.mark.parametrize("name", ["cortex-m4-cmsis-nn", "cortex-m4-codegen"])
@pytest.mark.slow
@needs_sources
@needs_tools
def test_firmware_exits_1_when_a_golden_vector_differs(m4_cmsis_nn, tmp_path, name):
    # Both engines read golden.bin at run time: flip one bit of input 3's output 7.
    project = _copied_project(m4_cmsis_nn, tmp_path, name)
    golden = bytearray((project / "golden.bin").read_bytes())
    golden[3 * 10 + 7] ^= 1
    (project / "golden.bin").write_bytes(bytes(golden))
    ran = _run_plain_qemu(project, "cortex-m4")
    assert ran.returncode == 1
    uart = parse_uart(ran.stdout)
    assert uart.summary.identical == IMAGES - 1 and uart.summary.count == IMAGES


@pytest.mark.slow
@needs_sources
@needs_tools
def test_qemu_timeout_is_one_line_and_kills_qemu(m4_cmsis_nn):
    elf = Path(m4_cmsis_nn.out) / "cortex-m4-cmsis-nn" / "firmware.elf"
    with pytest.raises(MnistEdgeError, match=r"did not finish firmware\.elf within 0\.05 s"):
        run_firmware(BOARDS["cortex-m4"], elf, timeout_s=0.05, cwd=elf.parent)
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            running.append(cmdline.read_bytes())
        except OSError:
            continue
    assert not any(str(elf).encode() in c for c in running)


@pytest.mark.slow
@needs_sources
@needs_tools
def test_over_budget_writes_nothing_and_relinks_from_the_cache(
    m4_cmsis_nn, exported, mnist, tmp_path
):
    artifacts, _ = exported
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("before")
    before = snapshot(out)
    with pytest.raises(CheckFailed) as caught:
        firmware(
            artifacts / MODEL,
            mnist.x_test[:5],  # other images: a relink, not a library build
            mnist.y_test[:5],
            cpus=["cortex-m4"],
            kernels=["cmsis-nn"],
            out=out,
            sources=SOURCES_DIR,
            max_flash=100_000,
            max_ram=10_000,
            run=False,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(
        r"flash: cortex-m4 tflm cmsis-nn needs [\d,]+ bytes \(the whole ELF\), [\d,]+ over "
        r"--max-flash 100,000",
        message,
    )
    assert re.search(
        r"RAM: cortex-m4 tflm cmsis-nn needs [\d,]+ bytes .* over --max-ram 10,000", message
    )
    assert snapshot(out) == before
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.slow
@needs_sources
@needs_tools
def test_relink_without_run_is_fast_and_cached(exported, mnist, tmp_path, m4_cmsis_nn):
    artifacts, _ = exported
    report = firmware(
        artifacts / MODEL,
        mnist.x_test[:3],
        mnist.y_test[:3],
        cpus=["cortex-m4"],
        kernels=["cmsis-nn"],
        out=tmp_path / "out",
        sources=SOURCES_DIR,
        run=False,
    )
    (result,) = report.results
    assert result.tflm.library_cached and not result.ran and not report.passed
    assert result.arena_measured_on == "host" and result.arena_bytes > 20_000
    assert result.build_seconds < 60
    # The inputs are a file beside the ELF, read at run time: none of their bytes in flash.
    assert (tmp_path / "out" / "cortex-m4-cmsis-nn" / "inputs.bin").stat().st_size == 3 * 784
    assert (tmp_path / "out" / "cortex-m4-cmsis-nn" / "firmware.elf").is_file()


@pytest.mark.slow
@needs_sources
@needs_tools
def test_existing_output_is_not_replaced_without_overwrite(m4_cmsis_nn, exported, mnist):
    artifacts, _ = exported
    before = snapshot(Path(m4_cmsis_nn.out))
    with pytest.raises(MnistEdgeError, match="already exist.*--overwrite"):
        firmware(
            artifacts / MODEL,
            mnist.x_test[:2],
            mnist.y_test[:2],
            cpus=["cortex-m4"],
            kernels=["cmsis-nn"],
            out=m4_cmsis_nn.out,
            sources=SOURCES_DIR,
        )
    assert snapshot(Path(m4_cmsis_nn.out)) == before


# ----------------------------------------------------------------------------- refused models


def _with_operator_replaced(data: bytes, old: str, new: str) -> bytes:
    """The flatbuffer with every use of one builtin operator code changed to another."""
    from ai_edge_litert import schema_py_generated as schema

    codes = {k: v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    patched = bytearray(data)
    for i in range(model.OperatorCodesLength()):
        table = model.OperatorCodes(i)._tab
        for slot, layout in ((4, "<b"), (10, "<i")):  # deprecated_builtin_code, builtin_code
            offset = table.Offset(slot)
            if offset and struct.unpack_from(layout, patched, table.Pos + offset)[0] == codes[old]:
                struct.pack_into(layout, patched, table.Pos + offset, codes[new])
    return bytes(patched)


def test_model_with_an_operator_the_library_lacks(exported, mnist, tmp_path):
    from mnist_edge.model_info import read_model

    artifacts, _ = exported
    model = tmp_path / "model_tanh.tflite"
    model.write_bytes(
        _with_operator_replaced((artifacts / "model_int8.tflite").read_bytes(), "SOFTMAX", "TANH")
    )
    assert "TANH" in {name for name, _ in read_model(model.read_bytes()).opcodes}
    with pytest.raises(ModelError, match=r"uses TANH v\d, which the firmware's TFLM library"):
        firmware(
            model,
            mnist.x_test[:2],
            mnist.y_test[:2],
            cpus=["cortex-m4"],
            kernels=["cmsis-nn"],
            out=tmp_path / "out",
            sources=SOURCES_DIR,
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "file, match",
    [
        ("model_float16.tflite", "TFLM has no float16 kernels"),
        ("model_dynamic.tflite", "TFLM has no hybrid kernels"),
        ("model_float32.tflite", "a float32 model; the firmware runs full-integer int8"),
    ],
)
def test_models_tflm_cannot_run_on_a_microcontroller(exported_all, mnist, tmp_path, file, match):
    artifacts, _ = exported_all
    with pytest.raises(ModelError, match=match):
        firmware(
            artifacts / file,
            mnist.x_test[:2],
            mnist.y_test[:2],
            cpus=["cortex-m4"],
            kernels=["reference"],
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_missing_tools_before_any_work(exported, mnist, tmp_path, monkeypatch):
    artifacts, _ = exported
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="apt-get install gcc-arm-none-eabi"):
        firmware(
            artifacts / "model_int8.tflite",
            mnist.x_test[:2],
            mnist.y_test[:2],
            cpus=["cortex-m4"],
            kernels=["reference"],
            out=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_the_cli_names_every_board_kernel_and_engine():
    from mnist_edge.firmware import ENGINES
    from mnist_edge.firmware.boards import BOARDS, KERNELS
    from mnist_edge.options import FIRMWARE_CPUS, FIRMWARE_ENGINES, FIRMWARE_KERNELS

    assert set(BOARDS) == set(FIRMWARE_CPUS) and tuple(KERNELS) == FIRMWARE_KERNELS
    assert tuple(ENGINES) == FIRMWARE_ENGINES


# The quick model's operators, in TFLM's order, named as its profiler tags them with their index.
TFLM_OPERATORS = [
    "CONV_2D_0",
    "MAX_POOL_2D_1",
    "CONV_2D_2",
    "MAX_POOL_2D_3",
    "CONV_2D_4",
    "RESHAPE_5",
    "FULLY_CONNECTED_6",
    "FULLY_CONNECTED_7",
    "SOFTMAX_8",
]


@pytest.mark.slow
@needs_sources
@needs_tools
def test_both_engines_record_their_layers(m4_cmsis_nn):
    import dataclasses
    import json

    tflm, codegen = _of(m4_cmsis_nn, "tflm"), _of(m4_cmsis_nn, "codegen")
    assert [layer.name for layer in tflm.layers] == TFLM_OPERATORS
    assert [layer.name for layer in codegen.layers][-3:] == ["fc_6", "fc_7", "softmax_8"]
    for result in (tflm, codegen):
        assert result.layers_image == 0
        total = sum(layer.instructions for layer in result.layers)
        # Everything but the interpreter's (or the harness's) own few hundred instructions.
        assert 0.99 * result.instructions_per_inference < total
        assert total < 1.01 * result.instructions_per_inference
    # The convolutions dominate.
    convolutions = sum(x.instructions for x in tflm.layers if x.name.startswith("CONV_2D"))
    assert convolutions > 0.9 * tflm.instructions_per_inference
    record = json.loads((Path(m4_cmsis_nn.out) / "firmware.json").read_text())
    first = [r for r in record["results"] if r["engine"] == "tflm"][0]["layers"][0]
    assert first == dataclasses.asdict(tflm.layers[0])
