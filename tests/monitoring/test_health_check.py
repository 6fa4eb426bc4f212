"""`rmscore worker --check` (the containers' health check) follows the worker's heartbeat: 0 while
the worker beats, 1 once a worker killed without any goodbye lets its heartbeat expire."""

from __future__ import annotations

from harness import start_worker_proc
from monkit import Fleet
from testkit import clean_env, run_cli, wait_until

HEARTBEAT_TTL = "2"


def test_check_finds_the_worker_of_this_host_by_model(fleet: Fleet) -> None:
    # What compose runs: no name, the configured model, any worker of it on this host.
    proc = run_cli(["worker", "--check"], fleet.env)
    assert proc.stdout.split() == [fleet.worker.name]


def test_check_fails_once_a_killed_workers_heartbeat_is_stale(fleet: Fleet) -> None:
    from rmscore import keys

    name = "tiny-check@victim"
    env = {**fleet.env, "RMSCORE_HEARTBEAT_TTL": HEARTBEAT_TTL, "RMSCORE_HEARTBEAT_INTERVAL": "0.5"}
    victim = start_worker_proc(env, name, fleet.tmp / "victim.log", ["--model", str(fleet.check_model_dir)])
    try:
        victim.wait_ready(fleet.redis)
        check = ["worker", "--check", "--name", name]
        assert run_cli(check, clean_env(**fleet.env)).stdout.strip() == name
        victim.kill()  # SIGKILL: the heartbeat key is neither renewed nor deleted
        wait_until(lambda: not fleet.redis.exists(keys.worker_heartbeat(name)), 60, "the heartbeat to expire")
        proc = run_cli(check, fleet.env, check=False)
        assert proc.returncode == 1 and "no live worker" in proc.stderr
        # The steady worker is still alive and still passes.
        assert run_cli(["worker", "--check", "--name", fleet.worker.name], fleet.env).returncode == 0
    finally:
        if victim.alive():
            victim.kill()
