"""Start an OpenAI-compatible server on loopback, for tests, benchmarks and offline use.

    with llama_server(path) as base_url:              # llama-cpp-python's server: one request at a time
        llm = load(f"openai:gemma@{base_url}")
    with batching_server(path, parallel=8) as base_url:  # llama.cpp's own llama-server: continuous batching
        ...

Each server is started directly from an argv list (no shell), so the PID we hold is the server's own and
terminating it cannot leave an orphan behind. Both get the Gemma chat template (``--chat_format gemma`` /
``--chat-template gemma``): the GGUF has none, and llama_cpp.server's llama-2 fallback answers Gemma with empty
strings. ``llama-server`` is built by ``scripts/llama-server.sh build`` (found through
``$EMPLIFAI_LLAMA_SERVER``, or on the PATH).
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
    with _serving(cmd, port, "llama_cpp.server", "/v1/models", startup_timeout) as base:
        yield base


def find_llama_server() -> Path | None:
    """llama.cpp's ``llama-server`` binary: ``$EMPLIFAI_LLAMA_SERVER``, else the PATH; None when absent."""
    env = os.environ.get("EMPLIFAI_LLAMA_SERVER")
    if env:
        return Path(env) if Path(env).is_file() else None
    found = shutil.which("llama-server")
    return Path(found) if found else None


@contextlib.contextmanager
def batching_server(
    model_path: str | os.PathLike[str],
    *,
    binary: str | os.PathLike[str] | None = None,
    port: int | None = None,
    parallel: int = 8,
    n_threads: int | None = None,
    n_ctx: int = 16384,
    chat_template: str = "gemma",
    extra_args: Sequence[str] = (),
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Run llama.cpp's ``llama-server`` with ``parallel`` slots (continuous batching, prompt cache) and yield
    its base URL. The KV cache is unified: the ``n_ctx`` cells are shared, so any one slot can take a long
    prompt while the others are idle."""
    exe = Path(binary) if binary is not None else find_llama_server()
    if exe is None or not exe.is_file():
        raise BackendUnavailable("llama-server not found: run `bash scripts/llama-server.sh build` and set "
                                 "EMPLIFAI_LLAMA_SERVER to the path it prints")
    port = port or free_port()
    cmd = [
        str(exe), "-m", str(Path(model_path).resolve()),
        "--host", "127.0.0.1", "--port", str(port),
        "-t", str(n_threads or os.cpu_count() or 1),
        # --no-cache-idle-slots: with a unified KV cache the server otherwise clears every idle slot when a new
        # task arrives, so a slot between two requests of one item loses that item's prompt (8 items scored in
        # parallel went from 30 s at concurrency 1 to > 10 min at 8)
        "--parallel", str(parallel), "--cont-batching", "--kv-unified", "--no-cache-idle-slots", "-c", str(n_ctx),
        # --swa-full: a sliding-window model (Gemma 3) otherwise keeps only the window's last cells, so a new
        # item cannot resume from the prompt header it shares with the slot's previous item and re-evaluates
        # it whole; --cache-ram 0: the host-memory prompt cache saves every prompt a slot leaves and searches
        # them all for each new item, which no item seen once can use (score mode at concurrency 8 measured
        # 0.52-0.86 items/s with it, 1.04-1.10 without)
        "--swa-full", "--cache-ram", "0",
        "--chat-template", chat_template, "--no-webui",
        *extra_args,
    ]  # fmt: skip
    with _serving(cmd, port, "llama-server", "/health", startup_timeout) as base:
        yield base


@contextlib.contextmanager
def _serving(cmd: list[str], port: int, name: str, ready_path: str, timeout: float) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        env = {"OMP_WAIT_POLICY": "PASSIVE"} | dict(os.environ)  # see llamacpp.py: no spin-wait collapse
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            _wait_ready(proc, name, f"{base}{ready_path}", timeout, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], name: str, url: str, timeout: float, log: IO[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendUnavailable(f"{name} exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # llama-server answers 503 while loading
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise BackendUnavailable(f"{name} did not answer on {url} within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: IO[bytes], n: int = 3000) -> str:
    try:
        log.seek(0)
        return log.read().decode("utf-8", errors="replace")[-n:]
    except OSError:
        return ""
