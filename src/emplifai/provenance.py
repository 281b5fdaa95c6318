"""What produced a result: package versions, file and JSON digests, and the cache home.

Every score, run and artefact that leaves the program carries a signature built from these, so two results
can be told apart by what made them, not by file names or dates.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def dist_version(dist: str) -> str | None:
    """An installed distribution's version (recorded with every score), None when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def emplifai_home() -> Path:
    """Cache/state root: ``$EMPLIFAI_HOME`` or ``~/.cache/emplifai``."""
    env = os.environ.get("EMPLIFAI_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emplifai"


def json_digest(payload: Any, length: int = 16) -> str:
    """A short, stable id for a JSON-able value: sha256 of its canonical (sorted-key) JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a (possibly large) file, memoised per process on (real path, size, mtime)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(real, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def path_digest(path: Path, length: int = 16) -> str:
    """A short id of a file's or a folder's content (its files' bytes in path order)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        h.update(f.read_bytes())
    return h.hexdigest()[:length]


def file_sha256_remembered(path: Path) -> str:
    """:func:`file_sha256`, remembered across processes too, for weight files hashed at every start."""
    real = path.resolve()
    st = real.stat()
    key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    memo_path = emplifai_home() / "cache" / "sha256.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        memo[key] = file_sha256(real)
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(tmp, memo_path)
    return memo[key]
