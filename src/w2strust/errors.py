"""The exceptions the CLI turns into a clean message and exit code (no stack trace), and the signals it notes."""


class W2SError(Exception):
    """A user-facing error: bad config, unknown model, missing data. The message says how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the current stage is abandoned, finished stages stay cached."""


# A Ctrl-C or SIGTERM whose KeyboardInterrupt is raised inside a finaliser (the ``__del__`` of an object freed after a
# stage) is printed as "Exception ignored" and lost: the run went on to train every remaining stage and exited 0. The
# CLI's handlers note each signal here too, and the scheduler and the training loops raise it again.
_received: list[type[KeyboardInterrupt]] = []


def on_signal(signum: int, frame: object) -> None:
    """The CLI's SIGINT and SIGTERM handler: note the signal, then raise as Python's own SIGINT handler does."""
    import signal

    kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    _received.append(kind)
    raise kind()


def raise_if_interrupted() -> None:
    """Raise a signal that ``on_signal`` noted (again: a finaliser may have swallowed the first raise)."""
    if _received:
        raise _received[0]()


def forget_signals() -> None:
    _received.clear()
