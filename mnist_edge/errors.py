"""The project's exceptions: user errors the CLI prints as one line, without a traceback."""


class MnistEdgeError(Exception):
    """A user-facing error: bad input, a missing file or dependency. The CLI exits 2."""

    exit_code = 2


class DataError(MnistEdgeError):
    """MNIST could not be found, fetched or validated."""


class ModelError(MnistEdgeError):
    """A model file is missing, unreadable or not the model we expect."""


class MissingDependencyError(MnistEdgeError):
    """An optional package (an install extra) is needed and absent."""


class CheckFailed(MnistEdgeError):
    """A check ran and failed (an export outside tolerance). The CLI exits 1."""

    exit_code = 1
