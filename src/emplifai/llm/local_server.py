"""Start llama-cpp-python's OpenAI-compatible server on loopback, for tests, benchmarks and offline use.

    with llama_server(path) as base_url:
        llm = load(f"openai:gemma@{base_url}")

The server is started directly from an argv list (no shell), so the PID we hold is the server's own and
terminating it cannot leave an orphan behind. ``--chat_format gemma`` is passed by default: the GGUF has no
chat template and the server's llama-2 fallback answers Gemma with empty strings.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from .base import BackendUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(
    model_path: str | os.PathLike[str],
    *,
    port: int | None = None,
    n_threads: int | None = None,
    n_ctx: int = 2048,
    chat_format: str = "gemma",
    extra_args: Sequence[str] = (),
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` and yield its base URL (``http://127.0.0.1:PORT``)."""
    port = port or free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(Path(model_path).resolve()),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", str(n_threads or os.cpu_count() or 1),
        "--n_ctx", str(n_ctx),
        "--chat_format", chat_format,
        *extra_args,
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        env = {"OMP_WAIT_POLICY": "PASSIVE"} | dict(os.environ)  # see llamacpp.py: no spin-wait collapse
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            _wait_ready(proc, base, startup_timeout, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], base: str, timeout: float, log: IO[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendUnavailable(f"llama_cpp.server exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise BackendUnavailable(f"llama_cpp.server did not answer on {base} within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: IO[bytes], n: int = 3000) -> str:
    try:
        log.seek(0)
        return log.read().decode("utf-8", errors="replace")[-n:]
    except OSError:
        return ""
