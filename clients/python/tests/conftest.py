"""A real `ctstats serve` on loopback over the demo's dataset, for the client's tests.

`ctstats demo --no-serve` makes the dataset, a ledger with one principal per role and a
release; two more researchers are added with the command line (one with a tiny budget, one with
none) before the service starts. CTSTATS_BIN names the binary (default:
$CARGO_TARGET_DIR/debug/ctstats, else ~/.cache/ctstats/target/debug/ctstats).
"""

import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest


def _binary() -> str:
    if os.environ.get("CTSTATS_BIN"):
        return os.environ["CTSTATS_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/ctstats/target"))
    return str(Path(target) / "debug" / "ctstats")


def _run(*args: str) -> str:
    out = subprocess.run([_binary(), *args], check=True, capture_output=True, text=True)
    return out.stdout


def _token(text: str, label: str) -> str:
    match = re.search(rf"^\s*{label} token[^:]*:\s*(cts_[0-9a-f]+)", text, re.M)
    assert match, f"no {label} token in the demo's output"
    return match.group(1)


def _add(data: Path, name: str) -> tuple:
    out = _run("principal", "add", "--data", str(data), "--name", name, "--role", "researcher")
    pid = re.search(r"^id:\s*(\S+)", out, re.M).group(1)
    token = re.search(r"^token:\s*(\S+)", out, re.M).group(1)
    return pid, token


@pytest.fixture(scope="session")
def service():
    binary = _binary()
    assert os.access(binary, os.X_OK), f"no ctstats binary at {binary} (set CTSTATS_BIN)"
    work = Path(tempfile.mkdtemp(prefix="ctstats-client-"))
    demo = _run("demo", "--dir", str(work / "demo"), "--no-serve", "--persons", "500")
    data = work / "demo" / "data"
    poor_id, poor = _add(data, "poor-researcher")
    _run("budget", "set", "--data", str(data), "--principal", poor_id,
         "--epsilon", "0.2", "--delta", "1e-6")
    _, unbudgeted = _add(data, "unbudgeted-researcher")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [binary, "serve", "--data", str(data), "--no-upload", "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            if server.poll() is not None:
                raise RuntimeError((work / "server.log").read_text()[-2000:])
            try:
                httpx.get(f"{url}/v1/dimensions", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield {
            "url": url,
            "researcher": _token(demo, "researcher"),
            "analyst": _token(demo, "analyst"),
            "admin": _token(demo, "admin"),
            "ngo": _token(demo, "ngo"),
            "poor": poor,
            "unbudgeted": unbudgeted,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
