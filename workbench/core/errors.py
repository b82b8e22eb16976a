"""The one error type users see: a one-line message, never a traceback."""


class WorkbenchError(Exception):
    """A user-facing error. Its message is a single line that says what is wrong and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
