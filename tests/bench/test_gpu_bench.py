"""bench/gpu.py runs on CPU with a shrunken model and reports every measurement, so it cannot rot
between the runs on a GPU host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
METHODS = ("engine", "packed", "pipeline-bs16", "pipeline-bs1")
SMALL = ["--device", "cpu", "--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4",
         "--kv-heads", "2", "--vocab", "2048", "--n-items", "32", "--chunk", "16"]  # fmt: skip


def run_bench(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), *SMALL, "--data", str(DATA), "--out", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def check_report(done: subprocess.CompletedProcess[str], out: Path) -> dict:
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["items"] == 32 and report["tokens"] > 32 * 20, "HH-RLHF conversations are not that short"
    by_method = {r["method"]: r for r in report["results"]}
    assert set(by_method) == set(METHODS), report["results"]
    for name, r in by_method.items():
        assert "error" not in r, r
        assert r["items"] > 0 and r["tokens_per_s"] > 0 and r["mfu"] > 0, r
        # The printed table has the same row, as soon as it is measured.
        assert any(line.split()[:2] == [name, str(r["items"])] for line in done.stdout.splitlines()), done.stdout
    # Every method scored the same conversations, so equal item counts mean equal token counts.
    for r in by_method.values():
        if r["items"] == report["items"]:
            assert r["tokens"] == report["tokens"]
    return report


def test_cpu_run_reports_all_methods(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    report = check_report(run_bench(out), out)
    # The stand-in tokenizer is calibrated to Llama-3's ~4 characters per token on English.
    assert 100 < report["mean_tokens"] < 400, report["mean_tokens"]


def test_runs_with_a_real_tokenizer(tmp_path: Path) -> None:
    from worker.tiny_model import build_tokenizer

    tokenizer_dir = tmp_path / "tokenizer"
    build_tokenizer(1000).save_pretrained(tokenizer_dir)
    out = tmp_path / "gpu.json"
    report = check_report(run_bench(out, "--tokenizer", str(tokenizer_dir)), out)
    assert report["tokenizer"] == str(tokenizer_dir)


def test_help_documents_the_flop_formula() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "2 * P * n" in done.stdout and "--peak-tflops" in done.stdout
