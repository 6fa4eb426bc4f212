"""A job scored by two models: two tiny models with different seeds, each served by its own real
`rmscore worker` on its own queue. The job's results per model equal `rmscore score` with that
model, and GET /v1/jobs/{id}/compare gives their accuracy side by side, an agreement below 1 and
exactly the pairs where the two references prefer different sides.

Real Redis (db 8), a real SQLite file; the API in process (FastAPI's TestClient, auth disabled).
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from harness import migrated, service_env, start_worker_proc
from testkit import CLI, REDIS_URL, REPO, clean_env, run_cli, wait_until

BROKER = f"{REDIS_URL}/8"
PAIRS = 40


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory, other_tiny_model_dir: Path) -> Path:
    """The session's seed-1 tiny model under the name `tiny-b` (a link: the name is the path's)."""
    path = tmp_path_factory.mktemp("models-b") / "tiny-b"
    path.symlink_to(other_tiny_model_dir, target_is_directory=True)
    return path


@pytest.fixture(scope="module")
def pairs_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mm-data") / "hh40.jsonl"
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        lines = list(islice(f, PAIRS))
    path.write_text("".join(lines))
    return path


def reference(pairs: Path, model: Path, out: Path) -> list[dict[str, Any]]:
    cmd = [*CLI, "score", str(pairs), "--model", str(model), "--device", "cpu", "-o", str(out)]
    subprocess.run(cmd, env=clean_env(), cwd=REPO, check=True, capture_output=True, timeout=600)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, second_model: Path
) -> Iterator[tuple[Any, dict[str, str]]]:
    import redis
    from fastapi.testclient import TestClient

    from api.main import create_app
    from rmscore.settings import Settings

    tmp = tmp_path_factory.mktemp("multimodel")
    db_url = f"sqlite:///{tmp / 'mm.db'}"
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    migrated(db_url)
    env = service_env(db_url, BROKER, tiny_model_dir, RMSCORE_MODELS=json.dumps([str(second_model)]))
    workers = [
        start_worker_proc(env, "tiny@mm-a", tmp / "a.log", ["--model", str(tiny_model_dir)]),
        start_worker_proc(env, "tiny-b@mm-b", tmp / "b.log", ["--model", str(second_model)]),
    ]
    settings = Settings(
        database_url=db_url,
        broker_url=BROKER,
        model=str(tiny_model_dir),
        models=[str(second_model)],
        auth="disabled",
        _env_file=None,
    )
    try:
        for w in workers:
            w.wait_ready(r)
        # Local mode answers loopback Host names only (TestClient's default is "testserver").
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            yield client, env
    finally:
        for w in workers:
            w.stop()
        r.flushdb()


def test_two_models_compare_against_rmscore_score(
    stack: tuple[Any, dict[str, str]],
    pairs_file: Path,
    tiny_model_dir: Path,
    second_model: Path,
    tmp_path: Path,
) -> None:
    client, env = stack
    items = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    r = client.post("/v1/jobs", json={"kind": "pairwise", "models": ["tiny", "tiny-b"], "items": items})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    ref_a = reference(pairs_file, tiny_model_dir, tmp_path / "a.jsonl")
    ref_b = reference(pairs_file, second_model, tmp_path / "b.jsonl")

    job = wait_until(
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("completed", "failed") and j,
        180,
        "the two-model job",
        0.3,
    )
    assert job["status"] == "completed", job
    assert job["models"] == ["tiny", "tiny-b"]
    assert job["request_counts"] == {"total": 2 * PAIRS, "completed": 2 * PAIRS, "failed": 0}

    # Each model's results are that model's `rmscore score` output (its own worker scored them).
    for name, ref in (("tiny", ref_a), ("tiny-b", ref_b)):
        got = client.get(f"/v1/jobs/{job_id}/results", params={"format": "json", "limit": 1000, "model": name})
        recs = got.json()["data"]
        assert [x["line"] for x in recs] == [x["line"] for x in ref]
        for g, w in zip(recs, ref, strict=True):
            assert g["chosen_score"] == pytest.approx(w["chosen_score"], abs=1e-4)
            assert g["rejected_score"] == pytest.approx(w["rejected_score"], abs=1e-4)

    right_a = {x["line"]: x["chosen_score"] > x["rejected_score"] for x in ref_a}
    right_b = {x["line"]: x["chosen_score"] > x["rejected_score"] for x in ref_b}
    differ = sorted(line for line in right_a if right_a[line] != right_b[line])
    assert differ, "the two seeds should disagree somewhere on 40 pairs"

    cmp = client.get(f"/v1/jobs/{job_id}/compare").json()
    assert cmp["models"] == ["tiny", "tiny-b"]
    assert cmp["n"] == PAIRS
    assert cmp["agreement"] == pytest.approx(1 - len(differ) / PAIRS)
    assert cmp["agreement"] < 1
    assert cmp["disagreements_total"] == len(differ)
    assert [d["line"] for d in cmp["disagreements"]] == differ
    for d in cmp["disagreements"]:
        assert d["scores"]["tiny"]["correct"] == right_a[d["line"]]
        assert d["scores"]["tiny-b"]["correct"] == right_b[d["line"]]
    assert cmp["accuracy"]["tiny"] == pytest.approx(sum(right_a.values()) / PAIRS)
    assert cmp["accuracy"]["tiny-b"] == pytest.approx(sum(right_b.values()) / PAIRS)
    assert [s["subset"] for s in cmp["subsets"]] == ["all"]

    # Paging the disagreements: one at a time, the same lines in order.
    seen, after = [], 0
    while True:
        page = client.get(f"/v1/jobs/{job_id}/compare", params={"limit": 1, "after_line": after}).json()
        seen += [d["line"] for d in page["disagreements"]]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
    assert seen == differ

    # Summaries carry each model.
    assert job["by_model"]["tiny"]["accuracy"]["overall"] == pytest.approx(cmp["accuracy"]["tiny"])
    assert job["by_model"]["tiny-b"]["accuracy"]["overall"] == pytest.approx(cmp["accuracy"]["tiny-b"])

    # `rmscore compare` (local database) says the same.
    cli = run_cli(["compare", job_id, "--json", "--limit", "1000"], env)
    assert [d["line"] for d in json.loads(cli.stdout)["disagreements"]] == differ

    bad = client.get(f"/v1/jobs/{job_id}/compare", params={"models": "tiny,ghost"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_model"


def _serve_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real `rmscore api` process on the stack's database (one local tenant, as `rmscore up`)."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "api", "--port", str(port)],
            env={**env, "RMSCORE_AUTH": "disabled"},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "rmscore api", 0.3)
    return proc, f"http://127.0.0.1:{port}"


def test_cli_shows_and_exports_every_model(stack: tuple[Any, dict[str, str]], pairs_file: Path, tmp_path: Path) -> None:
    """`rmscore results/status/compare/report` on a job scored by two models, locally and through the
    API: every model's results with a `model` field (or one model with --model), the file format the
    suffix names, lines counted once, the compare table without a repeated or `None` row."""
    import csv
    import gzip

    import pyarrow.parquet as pq

    _, env = stack
    env = {**env, "COLUMNS": "200"}  # rich tables on one line each
    submitted = run_cli(["submit", str(pairs_file), "--models", "tiny,tiny-b", "--wait"], env)
    job = submitted.stdout.strip()
    # One unit for the rate everywhere (the progress bar and the summary): results, one per line and model.
    assert "results/s" in submitted.stderr and "items/s" not in submitted.stderr

    status = run_cli(["status", job], env).stderr
    assert "results/s" in status
    assert f"{PAIRS}, each scored by 2 models" in status
    assert f"{2 * PAIRS} / 0 of {2 * PAIRS} results" in status
    assert f"rmscore compare {job}" in status and "GET /v1/jobs" not in status

    html = tmp_path / "report.html"
    run_cli(["report", job, "-o", str(html)], env)
    assert f'<div class="v">{PAIRS}</div><div class="k">lines × 2 models = {2 * PAIRS} results' in html.read_text()

    shown = run_cli(["compare", job], env).stderr
    rows = [line.split("│")[1].strip() for line in shown.splitlines() if line.count("│") >= 5]
    assert rows.count("all") == 1 and "overall" not in rows  # no subsets: one row, not repeated as a total
    assert "None" not in shown  # these pairs have no custom_id and no subset

    api, url = _serve_api(env, tmp_path / "api.log")
    remote_env = {**env, "RMSCORE_API_URL": url}
    try:
        for mode, e in (("local", env), ("api", remote_env)):
            every = [json.loads(x) for x in run_cli(["results", job], e).stdout.splitlines()]
            assert [(r["model"], r["line"]) for r in every] == [
                (m, n) for m in ("tiny", "tiny-b") for n in range(1, PAIRS + 1)
            ], mode
            by_model = {m: [r for r in every if r["model"] == m] for m in ("tiny", "tiny-b")}
            assert [r["chosen_score"] for r in by_model["tiny"]] != [r["chosen_score"] for r in by_model["tiny-b"]]
            only_b = [json.loads(x) for x in run_cli(["results", job, "--model", "tiny-b"], e).stdout.splitlines()]
            assert only_b == by_model["tiny-b"], mode

            gz, csv_path, pq_path = (tmp_path / f"{mode}.{suffix}" for suffix in ("jsonl.gz", "csv", "parquet"))
            for path in (gz, csv_path, pq_path):
                run_cli(["results", job, "-o", str(path)], e)
            with gzip.open(gz, "rt", encoding="utf-8") as f:
                assert [json.loads(x) for x in f] == every, mode
            with open(csv_path, newline="", encoding="utf-8") as f:
                table = list(csv.DictReader(f))
            assert [(r["model"], int(r["line"]), float(r["chosen_score"])) for r in table] == [
                (r["model"], r["line"], pytest.approx(r["chosen_score"])) for r in every
            ], mode
            rows_pq = pq.read_table(pq_path).to_pylist()
            assert [(r["model"], r["line"], r["chosen_score"]) for r in rows_pq] == [
                (r["model"], r["line"], r["chosen_score"]) for r in every
            ], mode

            bad = run_cli(["results", job, "-o", str(tmp_path / f"{mode}.txt")], e, check=False)
            assert bad.returncode == 2 and "unknown_output_format" in bad.stderr, (mode, bad.stderr)
            assert not (tmp_path / f"{mode}.txt").exists()
            ghost = run_cli(["results", job, "--model", "ghost"], e, check=False)
            assert ghost.returncode == 2 and "unknown_model" in ghost.stderr, (mode, ghost.stderr)
    finally:
        api.terminate()
        api.wait(timeout=30)
