"""The project's exceptions: user errors the CLI prints as one line, without a traceback."""


class MnistEdgeError(Exception):
    """A user-facing error: bad input, a missing file or dependency (the CLI exits 2)."""


class DataError(MnistEdgeError):
    """MNIST could not be found, fetched or validated."""


class ModelError(MnistEdgeError):
    """A model file is missing, unreadable or not the model we expect."""


class MissingDependencyError(MnistEdgeError):
    """Something optional is needed and absent: a package (an install extra), a tool (a C
    compiler, the Arm toolchain) or pinned sources that cannot be had here."""


class CheckFailed(MnistEdgeError):
    """A check ran and failed: an export out of tolerance, a model over budget (the CLI exits 1).

    `label` starts the line the CLI prints ("error", "verify failed", "skipped 1 of 6").
    """

    def __init__(self, message: str, label: str = "error"):
        super().__init__(message)
        self.label = label


class DoesNotFit(MnistEdgeError):
    """A firmware's link overflowed a memory region of its board ("RAM" or "FLASH")."""

    def __init__(self, region: str, message: str):
        super().__init__(message)
        self.region = region


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), for a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
