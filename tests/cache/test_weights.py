"""The weights digest (`worker.weights`): it follows the bytes of every model file, not their stat.

Pure logic on real files; the worker-level proof is tests/cache/test_cache_trust.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from worker.weights import PendingIdentity, directory_digest, weights_identity


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\x01" * 4096)
    (path / "config.json").write_text('{"num_labels": 1}')
    (path / "original").mkdir()  # subdirectories are not read by from_pretrained: left out
    (path / "original" / "consolidated.pth").write_bytes(b"x")
    return path


def test_same_size_and_mtime_with_other_bytes_is_another_digest(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    first = directory_digest(model)
    assert first.startswith("sha256:") and directory_digest(model) == first  # stable
    weights = model / "model.safetensors"
    st = weights.stat()
    with open(weights, "r+b") as f:  # in place: same inode
        f.seek(2048)
        f.write(b"\x02")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns, weights.stat().st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    assert directory_digest(model) != first


def test_config_and_names_count_subdirectories_do_not(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    first = directory_digest(model)
    (model / "original" / "consolidated.pth").write_bytes(b"y")
    assert directory_digest(model) == first
    (model / "config.json").write_text('{"num_labels": 1, "rope_theta": 1.0}')
    second = directory_digest(model)
    assert second != first
    (model / "config.json").rename(model / "config2.json")  # same bytes, another name
    assert directory_digest(model) != second
    assert directory_digest(model, threads=1) == directory_digest(model, threads=4)


def test_hub_models_are_named_by_their_commit_and_unknown_ones_not_at_all(tmp_path: Path) -> None:
    assert weights_identity("NCSOFT/Llama-3-OffsetBias-RM-8B", "abc123") == "git:abc123"
    assert weights_identity("NCSOFT/Llama-3-OffsetBias-RM-8B", None) is None
    model = _model(tmp_path / "m")
    assert weights_identity(str(model), None) == directory_digest(model)
    assert PendingIdentity(str(model)).result(None) == directory_digest(model)
    assert PendingIdentity("org/name").result("c0ffee") == "git:c0ffee"
