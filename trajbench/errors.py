"""The one exception type for bad input: the CLI prints its message and exits non-zero."""


class TrajbenchError(Exception):
    """A user-facing error: unknown id, level out of range, corrupt file, bad config, ...

    The CLI prints ``trajbench: error: <message>`` and exits with status 2, without a traceback.
    """
