"""Joining a Ray cluster has a bounded wait (issue 19): a refused port fails at once, a port that never answers
fails after --ray-timeout, SIGTERM while waiting exits 143 at once, and the last line is always w2strust's.

Only loopback addresses (127.0.0.1) are used. Ray itself is replaced by a stand-in module whose ``init`` never
returns (what the real one does for minutes on an address where no cluster answers), so these tests need no Ray
and send nothing anywhere: the real ``ray.init`` rewrites 127.0.0.1 to the machine's own address.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from w2strust.engine.ray_connect import check_reachable, host_port
from w2strust.errors import W2SError

HANGING_RAY = '''
import os, time
__version__ = "0.0-standin"
def is_initialized():
    return False
def init(*args, **kwargs):
    marker = os.environ.get("STANDIN_RAY_MARKER")
    if marker:
        open(marker, "a").write(f"{os.getpid()}\\n")
    while True:
        time.sleep(1)
'''


@pytest.fixture
def hanging_ray(tmp_path):
    """A PYTHONPATH holding the stand-in ``ray``, and a marker file each ``ray.init`` call appends its pid to."""
    (tmp_path / "fake" / "ray").mkdir(parents=True)
    (tmp_path / "fake" / "ray" / "__init__.py").write_text(HANGING_RAY)
    marker = tmp_path / "ray-init-called"
    env = {**os.environ, "TQDM_DISABLE": "1", "STANDIN_RAY_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")])}
    return env, marker


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _cmd(out: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "w2strust.cli", "run", "fairness", "--preset", "smoke", "--strategies", "no_tft",
            "--out", str(out), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", *extra]


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), ("ray://127.0.0.1:10001", ("127.0.0.1", 10001)),
    ("auto", None), ("127.0.0.1", None), ("[::1]:6379", ("::1", 6379)),
])
def test_host_port(address, expected):
    assert host_port(address) == expected


def test_a_refused_port_fails_at_once_naming_the_address():
    port = _free_port()
    started = time.time()
    with pytest.raises(W2SError, match=rf"127\.0\.0\.1:{port} .*refused.*ray start --head --port {port}"):
        check_reachable(f"127.0.0.1:{port}", 60)
    assert time.time() - started < 5


def test_the_cli_on_a_refused_port_is_one_line_exit_2(hanging_ray, tmp_path):
    env, marker = hanging_ray
    proc = subprocess.run(_cmd(tmp_path / "o", _free_port()), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2strust: error: cannot reach the Ray cluster at 127.0.0.1:")
    assert not marker.exists()  # Ray was never asked to connect


def test_a_port_that_never_answers_times_out_in_one_line(hanging_ray, silent_port, tmp_path):
    env, marker = hanging_ray
    started = time.time()
    proc = subprocess.run(_cmd(tmp_path / "o", silent_port, "--ray-timeout", "3"), capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"no Ray cluster answered at 127.0.0.1:{silent_port} within 3 s" in lines[0]
    assert "--ray-timeout" in lines[0] and "ray start --head" in lines[0]
    assert marker.exists() and time.time() - started < 120
    for pid in map(int, marker.read_text().split()):  # the probe that hung was killed
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_sigterm_while_connecting_exits_143_at_once(hanging_ray, silent_port, tmp_path):
    env, marker = hanging_ray
    proc = subprocess.Popen(_cmd(tmp_path / "o", silent_port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the connection attempt has started
    assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "ray.init never called"
    proc.send_signal(signal.SIGTERM)
    started = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.time() - started < 5, "SIGTERM waited for the connection attempt"
    assert err.strip().splitlines()[-1].startswith("w2strust: terminated"), err


def test_a_cluster_whose_gpus_a_cpu_driver_cannot_use_is_named(monkeypatch):
    from types import SimpleNamespace

    from w2strust.engine import scheduler

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    auto, cpu = SimpleNamespace(device="auto"), SimpleNamespace(device="cpu")
    note = scheduler.unused_cluster_gpus(4.0, [auto])
    assert note and "4 GPU(s)" in note and "start the study on a node that has one" in note
    assert scheduler.unused_cluster_gpus(0.0, [auto]) is None  # no GPUs to waste
    assert scheduler.unused_cluster_gpus(4.0, [cpu]) is None  # CPU asked for
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert scheduler.unused_cluster_gpus(4.0, [auto]) is None  # this machine plans CUDA stages
