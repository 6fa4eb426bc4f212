"""The docker/ deployment is wired correctly, checked without a Docker engine.

docker/compose.yaml must validate against the Compose Specification schema, hold every service of the
fleet with the dependencies that make start-up ordered, reserve an NVIDIA GPU for workers, keep every
secret in docker/.env, and run only `rmscore` commands and options that exist.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rmscore.settings import DEFAULT_MODEL, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if p.suffix != ".dockerignore")
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

REQUIRED_SERVICES = ("redis", "postgres", "migrate", "api", "worker", "flower")
SECRETS = ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "RMSCORE_FLOWER_BASIC_AUTH")
SECRET_NAME = re.compile(r"pass(word)?|secret|token|basic_auth|api_key", re.IGNORECASE)
# ${VAR}, ${VAR:-default}, ${VAR:?error}; `$$` is an escaped dollar left to the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])[^}]*)?\}")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def env_example_names() -> set[str]:
    """Names set or shown commented-out (`# NAME=…`) in docker/.env.example."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# --------------------------------------------------------------------------- shape


def test_compose_validates_against_the_compose_spec() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_every_service_of_the_fleet_exists() -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in services()]
    assert not missing, f"docker/compose.yaml lacks services {missing}"


@pytest.mark.parametrize(
    ("service", "needs", "condition"),
    [
        ("migrate", "postgres", "service_healthy"),
        ("api", "redis", "service_healthy"),
        ("api", "migrate", "service_completed_successfully"),
        ("worker", "redis", "service_healthy"),
        ("worker", "migrate", "service_completed_successfully"),
        ("flower", "redis", "service_healthy"),
    ],
)
def test_start_up_is_ordered_by_health(service: str, needs: str, condition: str) -> None:
    depends = services()[service].get("depends_on") or {}
    assert isinstance(depends, dict), f"{service}.depends_on must name conditions, not just services"
    assert depends.get(needs, {}).get("condition") == condition


def test_stateful_services_keep_data_and_report_health() -> None:
    redis, postgres = services()["redis"], services()["postgres"]
    assert "--appendonly yes" in " ".join(redis["command"]), "redis must persist queued chunks (AOF)"
    assert "--requirepass" in " ".join(redis["command"])
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    for name in ("redis", "postgres", "api", "worker", "flower"):
        assert services()[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def worker_services() -> dict[str, Any]:
    return {name: s for name, s in services().items() if name == "worker" or name.startswith("worker-")}


def test_each_worker_reserves_one_nvidia_gpu() -> None:
    assert "worker" in worker_services()
    for name, worker in worker_services().items():
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name} reserves {len(devices)} device entries"
        (gpu,) = devices
        assert gpu["driver"] == "nvidia"
        assert "gpu" in gpu["capabilities"]
        assert gpu.get("count") == 1 or len(gpu.get("device_ids", [])) == 1, f"{name} must hold exactly one GPU"
    pinned = [
        w["deploy"]["resources"]["reservations"]["devices"][0].get("device_ids") for w in worker_services().values()
    ]
    ids = [i[0] for i in pinned if i]
    assert len(ids) == len(set(ids)), f"two pinned workers share a GPU: {ids}"


def test_workers_share_one_model_cache_and_default_to_the_8b_model() -> None:
    worker = services()["worker"]
    env = environment(worker)
    cache_dir = env.get("HF_HOME")
    assert cache_dir, "worker must set HF_HOME so the model downloads once"
    volumes = worker["volumes"]
    named = [v for v in volumes if v.split(":")[1] == cache_dir and not v.startswith((".", "/"))]
    assert named, f"HF_HOME={cache_dir} must be a named volume, got {volumes}"
    assert named[0].split(":")[0] in compose()["volumes"]
    assert re.fullmatch(r"\$\{RMSCORE_MODEL:-(.+)\}", env["RMSCORE_MODEL"]).group(1) == DEFAULT_MODEL
    assert worker["healthcheck"]["test"][-3:] == ["rmscore", "worker", "--check"]


# --------------------------------------------------------------------------- secrets and settings


def test_nothing_secret_is_hard_coded() -> None:
    leaks: list[str] = []
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value and not INTERPOLATION.search(value):
                leaks.append(f"{name}: {key}={value}")
    for text in strings(compose()):
        # user:password@ in a URL must be a reference, as must the argument after --requirepass.
        for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", text):
            if not INTERPOLATION.fullmatch(password):
                leaks.append(f"password in URL: {text}")
        for password in re.findall(r"--requirepass\s+(\S+)", text):
            if "$" not in password:
                leaks.append(f"literal redis password: {text}")
    assert not leaks, "secrets must come from docker/.env:\n" + "\n".join(leaks)


def test_compose_refuses_to_start_without_secrets() -> None:
    text = "\n".join(strings(compose()))  # values only: a comment that shows the form does not count
    for secret in SECRETS:
        assert re.search(r"\$\{" + secret + r":\?", text), f"use ${{{secret}:?…}} so a missing secret stops compose"


def test_env_example_has_every_variable_compose_reads() -> None:
    used = {m.group(1) for text in strings(compose()) for m in INTERPOLATION.finditer(text)}
    assert used, "compose.yaml reads no variables at all?"
    missing = sorted(used - env_example_names())
    assert not missing, f"docker/.env.example lacks {missing}"


def test_env_example_lists_every_setting() -> None:
    expected = {f"RMSCORE_{name.upper()}" for name in Settings.model_fields}
    missing = sorted(expected - env_example_names())
    assert not missing, f"docker/.env.example lacks settings {missing}"


def test_env_example_holds_no_real_secret() -> None:
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    for secret in (*SECRETS, "HF_TOKEN"):
        assert values.get(secret) == "", f"{secret} must be left empty in docker/.env.example"


# --------------------------------------------------------------------------- images


def test_dockerfiles_pin_base_images_and_run_as_a_user() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.api", "Dockerfile.worker"}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        for image in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
            tag = image.split("@")[0].rpartition(":")[2] if ":" in image else ""
            assert "@sha256:" in image or (re.search(r"\d", tag) and tag != "latest"), (
                f"{dockerfile.name}: base image {image} is not pinned"
            )
        users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
        assert users and users[-1] not in ("root", "0"), f"{dockerfile.name} must end as a non-root user"
        # Dependencies install before the source is copied, so code edits reuse the dependency layer.
        lines = text.splitlines()
        first_source = min(i for i, line in enumerate(lines) if re.match(r"COPY\s+rmscore\b", line))
        deps = min(i for i, line in enumerate(lines) if "pip install -r" in line)
        assert deps < first_source, f"{dockerfile.name}: install dependencies before copying the source"


def test_compose_builds_each_image_from_its_dockerfile() -> None:
    dockerfiles = {s["build"]["dockerfile"] for s in services().values() if "build" in s}
    assert dockerfiles == {"docker/Dockerfile.api", "docker/Dockerfile.worker"}
    for service in services().values():
        if "build" in service:
            assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


# --------------------------------------------------------------------------- commands are real


def rmscore_commands() -> set[tuple[str, ...]]:
    """Every `rmscore …` invocation in compose.yaml and the Dockerfiles, as argument tuples."""
    found: set[tuple[str, ...]] = set()

    def add(argv: list[str]) -> None:
        if "rmscore" in argv:
            found.add(tuple(argv[argv.index("rmscore") :]))

    for service in services().values():
        for argv in (service.get("command"), (service.get("healthcheck") or {}).get("test")):
            if isinstance(argv, str):
                argv = shlex.split(argv)
            if argv:
                add([a for a in argv if a not in ("CMD", "CMD-SHELL")])
    for dockerfile in DOCKERFILES:
        for exec_form in re.findall(
            r"^(?:CMD|ENTRYPOINT|HEALTHCHECK.*CMD)\s+(\[.*\])", dockerfile.read_text(), re.MULTILINE
        ):
            add(json.loads(exec_form))
    return found


def rmscore_argv() -> list[str]:
    script = Path(sys.executable).with_name("rmscore")
    if script.exists():
        return [str(script)]
    # Not installed as a script (editable install missing): run the same entry point.
    return [sys.executable, "-c", "from rmscore.cli import main; main()"]


def test_the_deployment_uses_rmscore_commands() -> None:
    commands = {c[1] for c in rmscore_commands() if len(c) > 1}
    assert {"api", "worker", "flower", "db"} <= commands


@pytest.mark.parametrize("argv", sorted(rmscore_commands()), ids=" ".join)
def test_each_rmscore_command_exists_with_its_options(argv: tuple[str, ...]) -> None:
    # Subcommand words come first; after the first option come options and their values.
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    subcommand = list(argv[1:first_option])
    options = [a.split("=")[0] for a in argv[first_option:] if a.startswith("--")]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*rmscore_argv(), *subcommand, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"`rmscore {' '.join(subcommand)} --help` failed:\n{done.stdout}{done.stderr}"
    for option in options:
        assert re.search(re.escape(option) + r"\b", done.stdout), (
            f"`rmscore {' '.join(subcommand)}` has no {option} option:\n{done.stdout}"
        )
