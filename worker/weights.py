"""Which weights a worker holds, by content: part of the model identity the score cache keys on.

A local model directory has no revision, so its path says nothing about what is in it: replace the
weights in place (same names, same sizes, even the same mtimes) and a path-keyed cache would serve
the old model's scores. So every regular file at the top of the directory (weights, config,
tokenizer, chat template: everything `from_pretrained` reads) is hashed with SHA-256 at every load,
and the digest of (name, size, file digest) over all of them names the weights. Nothing is skipped
on a stat match: a file rewritten with the same size and mtime must still change the digest, and
only reading the bytes proves it did not. The files are hashed in parallel (hashlib releases the
GIL), so the cost is one read of the model at the disk's or the cores' rate; see README (Score
cache) for the figures.

A hub model loads from a snapshot named by its commit, which already names the content: its
identity is that commit, and nothing is hashed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

MAX_HASH_THREADS = 8  # shards of an 8B model: 4 (safetensors); more threads only contend for the disk
RETRIES = 3  # a file that changes while it is hashed is hashed again, then the load fails


class WeightsChanged(RuntimeError):
    """A model file kept changing while it was hashed: the worker cannot say which weights it holds."""


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of one file, hashed again if it changed (size, mtime, inode) meanwhile."""
    for _ in range(RETRIES):
        before = _stamp(path)
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if _stamp(path) == before:
            return before[0], digest
    raise WeightsChanged(f"{path} changed while it was being hashed ({RETRIES} tries)")


def directory_digest(directory: str | Path, *, threads: int | None = None) -> str:
    """`sha256:<hex>` over every regular top-level file of `directory`: its name, size and content.

    Symlinks are followed (a hub snapshot's files are links to blobs); subdirectories are left out,
    as `from_pretrained` does not read them.
    """
    root = Path(directory)
    files = sorted(p for p in root.iterdir() if p.is_file())
    if not files:
        raise FileNotFoundError(f"{root} holds no files to identify a model by")
    n = threads or min(MAX_HASH_THREADS, len(files), os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, n), thread_name_prefix="rmscore-hash") as pool:
        digests = list(pool.map(file_digest, files))
    combined = hashlib.sha256()
    for path, (size, digest) in zip(files, digests, strict=True):
        combined.update(f"{path.name}\0{size}\0{digest}\n".encode())
    return f"sha256:{combined.hexdigest()}"


class PendingIdentity:
    """`weights_identity` started beside the model load: a directory is hashed on a background thread
    while `from_pretrained` reads the same files, so the load pays roughly max(load, hash), not the sum."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._pool: ThreadPoolExecutor | None = None
        self._digest: Future[str] | None = None
        if Path(model).is_dir():
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rmscore-weights")
            self._digest = self._pool.submit(directory_digest, model)

    def result(self, commit_hash: str | None) -> str | None:
        """The identity (waits for the digest); `commit_hash`: the loaded config's, for a hub model."""
        if self._digest is None:
            return weights_identity(self.model, commit_hash)
        try:
            return self._digest.result()
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def weights_identity(model: str, commit_hash: str | None) -> str | None:
    """What names the weights of `model` as loaded: a content digest for a directory, the commit for
    a hub snapshot; None when neither is known (the score cache is then off for this model)."""
    if Path(model).is_dir():
        return directory_digest(model)
    if commit_hash:
        return f"git:{commit_hash}"
    log.warning("%s: no commit hash and not a directory; the score cache is off for it", model)
    return None
