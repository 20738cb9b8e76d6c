"""The one exception type the CLI turns into a clean message (no stack trace)."""


class W2SError(Exception):
    """A user-facing error: bad config, unknown model, missing data. The message says how to fix it."""
