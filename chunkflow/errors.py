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
