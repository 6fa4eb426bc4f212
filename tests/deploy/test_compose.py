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


def test_the_api_image_ships_without_the_worker() -> None:
    """The API image is torch-free by construction: it neither copies `worker/` nor sends it to the build."""
    text = (DOCKER / "Dockerfile.api").read_text()
    assert not re.search(r"^COPY\s+worker\b", text, re.MULTILINE), "Dockerfile.api copies worker/"
    assert "!worker" not in (DOCKER / "Dockerfile.api.dockerignore").read_text().splitlines()


def test_what_the_api_image_runs_needs_no_worker_package() -> None:
    """The API app, its job submission path, migrations and Flower's Celery app, with `worker` unimportable."""
    code = (
        "import sys\n"
        "sys.modules['worker'] = None  # any `import worker...` now fails, as in the API image\n"
        "import api.main, api.submission, db.migrate, db.producer, db.report, rmscore.broker, rmscore.cli\n"
        "api.main.create_app()\n"
        "rmscore.broker.app\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


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


# --------------------------------------------------------------------------- each service's own variables


def setting_properties() -> dict[str, set[str]]:
    """Each Settings property, by the fields it is made of (`self.x` in its body, through the other
    properties it reads): read from the source, so a new property cannot hide a variable."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Settings))
    reads = {
        node.name: {
            a.attr for a in ast.walk(node) if isinstance(a, ast.Attribute) and getattr(a.value, "id", "") == "self"
        }
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and any(getattr(d, "id", "") == "property" for d in node.decorator_list)
    }
    fields = set(Settings.model_fields)

    def expand(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = reads[name] & fields
        for other in reads[name] & set(reads) - seen:
            out |= expand(other, seen | {name})
        return out

    return {name: expand(name) for name in reads}


# Settings properties the code reads, by the fields they are made of.
SETTING_PROPERTIES = setting_properties()
# The code each rmscore service runs that reads settings (`settings.x` / `s.x`).
SERVICE_CODE = {
    "api": [*sorted((ROOT / "api").rglob("*.py")), ROOT / "rmscore" / "broker.py", ROOT / "db" / "producer.py"],
    "worker": [ROOT / "worker" / n for n in ("runner.py", "reconcile.py")]
    + [ROOT / "rmscore" / "broker.py", ROOT / "rmscore" / "cli" / "serve_worker.py"],
    "flower": [ROOT / "rmscore" / "cli" / "flower.py", ROOT / "rmscore" / "broker.py"],
}
# Variables a service gets besides RMSCORE_* settings, and why.
OTHER_VARIABLES = {
    "redis": {"REDIS_PASSWORD"},  # --requirepass, read by its shell
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},  # the image's initdb
    "worker": {"HF_HOME", "HF_TOKEN"},  # the shared model cache; gated models on the Hub
}
HUB_AND_FLOWER_SECRETS = ("HF_TOKEN", "RMSCORE_FLOWER_BASIC_AUTH")


def settings_read(files: list[Path]) -> set[str]:
    """RMSCORE_* variables of the Settings fields these files read."""
    fields = set(Settings.model_fields)
    read: set[str] = set()
    for path in files:
        for name in re.findall(r"\b(?:settings|s)\.([a-z_]+)\b", path.read_text()):
            read |= ({name} & fields) | SETTING_PROPERTIES.get(name, set())
    return {f"RMSCORE_{name.upper()}" for name in read}


def role(name: str) -> str:
    return "worker" if name.startswith("worker-") else name


def interpolated(service: dict[str, Any]) -> set[str]:
    """Every ${VAR} a service's environment values are built from."""
    return {m.group(1) for value in environment(service).values() for m in INTERPOLATION.finditer(value)}


def test_no_container_gets_docker_env_whole() -> None:
    for name, service in services().items():
        files = service.get("env_file") or []
        files = [files] if isinstance(files, str | dict) else files
        paths = [f["path"] if isinstance(f, dict) else f for f in files]
        assert not paths, f"{name}: env_file {paths} hands every secret in it to the container; list its variables"


def test_each_service_gets_only_the_variables_it_reads() -> None:
    needs = {svc: settings_read(files) for svc, files in SERVICE_CODE.items()}
    needs["migrate"] = {"RMSCORE_DATABASE_URL"}  # `rmscore db upgrade`
    assert {"RMSCORE_AUTH", "RMSCORE_CHUNK_SIZE", "RMSCORE_BROKER_URL"} <= needs["api"]  # the scan finds reads
    assert {"RMSCORE_DEVICE", "RMSCORE_LEASE_SECONDS", "RMSCORE_HEARTBEAT_TTL"} <= needs["worker"]
    for name, service in services().items():
        given = set(environment(service))
        want = needs.get(role(name), set()) | OTHER_VARIABLES.get(role(name), set())
        assert given <= want, f"{name} gets variables it never reads: {sorted(given - want)}"
        missing = needs.get(role(name), set()) - given
        assert not missing, f"{name} reads {sorted(missing)} but compose never passes them: set in docker/.env, ignored"


def test_secrets_reach_only_the_services_that_use_them() -> None:
    api = services()["api"]
    assert not set(environment(api)) & {*HUB_AND_FLOWER_SECRETS, "REDIS_PASSWORD", "POSTGRES_PASSWORD"}
    # Nor under another name: the API's values are built from the passwords of its two URLs only.
    assert not interpolated(api) & set(HUB_AND_FLOWER_SECRETS)
    holders = {
        secret: sorted(n for n, s in services().items() if secret in environment(s) or secret in interpolated(s))
        for secret in (*HUB_AND_FLOWER_SECRETS, "REDIS_PASSWORD", "POSTGRES_PASSWORD")
    }
    assert holders["HF_TOKEN"] == sorted(worker_services())
    assert holders["RMSCORE_FLOWER_BASIC_AUTH"] == ["flower"]
    # The bare passwords go to their own server; everyone else has them only inside a URL.
    assert [n for n in holders["REDIS_PASSWORD"] if "REDIS_PASSWORD" in environment(services()[n])] == ["redis"]
    assert [n for n in holders["POSTGRES_PASSWORD"] if "POSTGRES_PASSWORD" in environment(services()[n])] == [
        "postgres"
    ]
    assert "flower" not in holders["POSTGRES_PASSWORD"], "Flower reads the broker only"


def test_passed_through_settings_are_documented() -> None:
    passed = {k for s in services().values() for k, v in environment(s).items() if not v}
    missing = sorted(passed - env_example_names() - {"HF_TOKEN"})
    assert not missing, f"docker/.env.example lacks {missing}"


def published_host_ips() -> dict[str, str]:
    """service:port -> the host address a port is published on, with compose defaults applied."""
    out: dict[str, str] = {}
    for name, service in services().items():
        for port in service.get("ports") or []:
            text = INTERPOLATION.sub(lambda m: m.group(0).split(":-", 1)[1][:-1] if ":-" in m.group(0) else "", port)
            host_ip, _, rest = text.rpartition(":")[0].rpartition(":")
            out[f"{name}:{rest}"] = host_ip
    return out


def test_every_port_is_published_on_localhost_by_default() -> None:
    ips = published_host_ips()
    assert "api:8000" in ips, ips
    assert ips == dict.fromkeys(ips, "127.0.0.1"), f"published beyond localhost by default: {ips}"
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert values["API_BIND"] == "127.0.0.1", "docker/.env.example is what people copy: keep the API on localhost"
    readme = (DOCKER / "README.md").read_text()
    assert "TLS" in readme and "127.0.0.1:8000" in readme, "docker/README.md must say how to put TLS in front"


def test_docs_show_the_exited_migration() -> None:
    readme = (DOCKER / "README.md").read_text()
    ps = re.findall(r"docker compose[^\n`]*\bps\b[^\n`]*", readme)
    assert ps and all(re.search(r"\bps\b.*\s-a\b", c) for c in ps), f"`ps` hides the exited migrate without -a: {ps}"


# --------------------------------------------------------------------------- pinned dependencies

CONSTRAINTS = DOCKER / "constraints.txt"


def constraints() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", line.strip())
        assert m, f"docker/constraints.txt: {line!r} is not an exact name==version pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m.group(2)
    return pins


def lock_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_lock", DOCKER / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dockerfile", ["Dockerfile.worker", "Dockerfile.api"])
def test_images_install_their_dependencies_under_the_constraints(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text()
    assert re.search(r"^COPY .*\bdocker/constraints\.txt\b", text, re.MULTILINE), f"{dockerfile} must copy it"
    installs = re.findall(r"pip install (-r \S+[^\\\n]*)", text)
    assert installs and all(re.search(r"\s-c\s+constraints\.txt\b", i) for i in installs), installs
    ignore = (DOCKER / f"{dockerfile}.dockerignore").read_text().splitlines()
    assert "!docker/constraints.txt" in ignore, "the build context must include the constraints"


def test_constraints_pin_every_runtime_dependency_exactly() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = constraints()
    for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not pinned in docker/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} breaks {text}"
    for name in ("transformers", "tokenizers", "safetensors", "huggingface-hub", "celery", "kombu", "psycopg-binary"):
        assert name in pins, f"{name} is not pinned"
    # The worker image keeps its base image's CUDA torch: the pin must be that version.
    base = re.search(r"^FROM\s+pytorch/pytorch:([0-9.]+)-", (DOCKER / "Dockerfile.worker").read_text(), re.MULTILINE)
    assert base and pins["torch"] == base.group(1)


def test_constraints_cover_the_whole_dependency_closure() -> None:
    """Everything the runtime dependencies pull in (as installed here) is pinned too: an unpinned
    transitive dependency (huggingface-hub under transformers, say) would float from build to build."""
    import tomllib

    from packaging.requirements import Requirement

    lock = lock_module()
    roots = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    needed = lock.closure(roots, leaves={"torch"})
    assert {"transformers", "huggingface-hub", "kombu", "markupsafe"} <= set(needed)
    unpinned = sorted(set(needed) - set(constraints()))
    assert not unpinned, f"not in docker/constraints.txt (regenerate with docker/lock.py): {unpinned}"
