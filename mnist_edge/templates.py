"""The one template loader: the files a stage generates (C sources, Makefiles, READMEs) are real
files under each package's templates/ with `${name}` fields, filled in here."""

from __future__ import annotations

import string
from importlib import resources


class FileTemplate(string.Template):
    """Only `${name}` is a field, so Makefiles keep `$(VAR)`, `$@`, `$<` and `$$` as written."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!))
    | (?P<named>(?!))
    | {(?P<braced>[A-Za-z_][A-Za-z0-9_]*)}
    | (?P<invalid>(?!))
    )
    """


def template(package: str, name: str) -> FileTemplate:
    """The file `templates/NAME` of a package (NAME may be in a subfolder: "arm/board.ld")."""
    return FileTemplate((resources.files(package) / "templates" / name).read_text())


def render(package: str, name: str, values: dict[str, object]) -> str:
    """A template with its fields filled; KeyError names a field left without a value."""
    return template(package, name).substitute({k: str(v) for k, v in values.items()})
