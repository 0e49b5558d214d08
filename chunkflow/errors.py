"""The one exception type for bad input.

A `ChunkflowError` carries a message meant for the user: it names the file, option or value at
fault and what was expected. The command line prints it as one line and exits non-zero. The
message loses the credentials of any URL in it (`chunkflow.redact`), wherever it goes next.
"""

from chunkflow.redact import redact


class ChunkflowError(Exception):
    """Bad input or an unusable resource, described in one line."""

    def __init__(self, message: object = "", *args):
        super().__init__(redact(str(message)), *args)


class Terminated(BaseException):
    """SIGTERM arrived (e.g. a Kubernetes eviction): stop now, like Ctrl-C."""


# What ends the run however deep it is raised: never turned into an error of one task.
STOPS = (KeyboardInterrupt, Terminated)


class ParameterError(ChunkflowError):
    """A library function's bad argument; the message names each parameter as `name`.

    The command line says its flags instead (`flag_names`), so the library never knows how an
    option is spelled.
    """


def renamed(message: str, names: dict[str, str]) -> str:
    """`message` with each `parameter` replaced by its name in `names` (others lose the quotes)."""
    import re

    return re.sub(r"`(\w+)`", lambda m: names.get(m.group(1), m.group(1)), message)


class flag_names:  # noqa: N801 (used as a context manager, like contextlib's)
    """Within it, a `ParameterError` is raised again as a `ChunkflowError` that speaks of the
    flags `names` maps the parameters to."""

    def __init__(self, **names: str):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, err, traceback):
        if isinstance(err, ParameterError):
            raise ChunkflowError(renamed(str(err), self.names)) from err
        return False
