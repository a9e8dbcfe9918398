"""Shared fixtures: the real MNIST, and one small seeded model trained and exported once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mnist_edge.data import IDX_FILES, Mnist, default_cache_dir, load_mnist

# A quick but real run: the first 10,000 training images, 2 epochs (about 5 s on 2 cores).
QUICK_LIMIT = 10_000
QUICK_EPOCHS = 2
QUICK_MIN_ACCURACY = 0.93  # measured 0.952 with seed 0
CALIBRATION = 100


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    """The real MNIST from the cache (fetched on first use, like any user's first run)."""
    return load_mnist()


@pytest.fixture(scope="session")
def idx_folder(mnist: Mnist) -> Path:
    """The cached folder holding the four raw IDX files."""
    folder = default_cache_dir()
    assert all((folder / spec.name).is_file() for spec in IDX_FILES.values()), folder
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist: Mnist):
    """A seeded quick training run: (artifacts folder, TrainResult)."""
    from mnist_edge.model import train

    artifacts = tmp_path_factory.mktemp("trained")
    result = train(mnist, artifacts, epochs=QUICK_EPOCHS, limit=QUICK_LIMIT, seed=0)
    return artifacts, result


def _export_quick_model(tmp_path_factory, trained, mnist: Mnist, name: str, **options):
    from mnist_edge.export import export

    source, _ = trained
    artifacts = tmp_path_factory.mktemp(name)
    shutil.copy(source / "model.keras", artifacts / "model.keras")
    return artifacts, export(artifacts, mnist, calibration_size=CALIBRATION, **options)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained, mnist: Mnist):
    """The quick model exported to all three files: (artifacts folder, ExportResult)."""
    return _export_quick_model(tmp_path_factory, trained, mnist, "exported", int8=True)


@pytest.fixture(scope="session")
def exported_all(tmp_path_factory, trained, mnist: Mnist):
    """The quick model in all six formats: (artifacts folder, ExportResult)."""
    return _export_quick_model(tmp_path_factory, trained, mnist, "exported_all", formats=["all"])


@pytest.fixture()
def exported_copy(tmp_path: Path, exported) -> Path:
    """A private copy of the exported artifacts, for tests that change files."""
    source, _ = exported
    target = tmp_path / "artifacts"
    shutil.copytree(source, target)
    return target


@pytest.fixture()
def perturbed_copy(exported_copy: Path) -> Path:
    """Artifacts whose model_float32.tflite comes from really damaged weights."""
    import numpy as np

    from mnist_edge.export import convert_tflite_float32
    from mnist_edge.model import load_keras_model

    model = load_keras_model(exported_copy / "model.keras")
    rng = np.random.default_rng(0)
    model.set_weights(
        [w + rng.normal(0, 0.5 * (w.std() + 1e-3), w.shape) for w in model.get_weights()]
    )
    (exported_copy / "model_float32.tflite").write_bytes(convert_tflite_float32(model))
    return exported_copy


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under a folder with its SHA-256: equal snapshots mean nothing changed."""
    from mnist_edge.files import sha256_file

    return {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A real 2 MiB tmpfs (root only); skipped where mounting is not permitted."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
