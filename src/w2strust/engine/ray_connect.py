"""Joining a Ray cluster with a bounded wait.

``ray.init(address=...)`` on an address where no cluster answers retries for minutes, prints Ray's own warnings
the whole time, and blocks in C++ where Python's SIGTERM handler cannot run. So, before this process calls
``ray.init``: a plain TCP connect to the address (refused or unreachable: one line, at once), then a probe
child process that runs ``ray.init`` + ``ray.shutdown`` with its output captured, killed after ``timeout``
seconds. This process waits on the child, so SIGTERM / Ctrl-C stop it at once (the child is killed too); only
an address the probe joined is joined here, which then takes seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

from ..errors import W2SError

_PROBE = """
import logging, sys, ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
ray.shutdown()
"""


def host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``ray://HOST:PORT`` → (host, port); None for ``auto`` or an address without a port."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _advice(address: str) -> str:
    port, version = (host_port(address) or ("", 6379))[1], _ray_version()
    return (f"check that a Ray head runs there (`ray start --head --port {port}` on that machine), that the port is "
            f"reachable from here, and that it runs Ray {version} like this one")


def check_reachable(address: str, timeout: float) -> None:
    """A TCP connect to ``address``: a refused or unreachable port fails in one line, before Ray is started."""
    hp = host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=min(timeout, 10.0)):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__.replace("Error", " error").lower()
        raise W2SError(f"cannot reach the Ray cluster at {address} ({reason}); "
                       f"{_advice(address)}") from None


def _ray_version() -> str:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # noqa: BLE001 - only for the message
        return "(not installed)"


def probe(address: str, timeout: float, show_logs: bool = False) -> None:
    """Join and leave the cluster from a child process; fail in one line if that takes over ``timeout`` s."""
    cmd = [sys.executable, "-c", _PROBE, address]
    out = None if show_logs else subprocess.PIPE
    child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, text=True,
                             start_new_session=True)  # its own group: a killed probe takes Ray's helpers with it
    try:
        logs, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(child)
        raise W2SError(f"no Ray cluster answered at {address} within {timeout:g} s; {_advice(address)}"
                       f" (--ray-timeout to wait longer, --ray-logs to see Ray's own log)") from None
    except BaseException:  # SIGTERM / Ctrl-C while waiting: stop the probe, then stop
        _kill(child)
        raise
    if child.returncode != 0:
        last = [ln for ln in (logs or "").splitlines() if ln.strip()][-1:] or ["(no output; rerun with --ray-logs)"]
        raise W2SError(f"could not join the Ray cluster at {address}: {last[0].strip()[:300]}; "
                       f"{_advice(address)}")


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, 9)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.wait()


def connect(ray, address: str | None, timeout: float, show_logs: bool = False) -> None:
    """``ray.init`` with a bounded wait for a remote cluster (``address``), or a fresh local Ray (None)."""
    if ray.is_initialized():
        return
    if address:
        check_reachable(address, timeout)
        probe(address, timeout, show_logs)
    level = logging.INFO if show_logs else logging.ERROR
    # Ray's C++ core logs at warning level to stderr: only errors unless asked for (read when Ray starts)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "info" if show_logs else "error")
    ray.init(address=address, logging_level=level, log_to_driver=show_logs)
