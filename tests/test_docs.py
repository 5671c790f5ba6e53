"""The docs stay true: the settings reference is generated, links resolve, and every deployment
recipe (Dockerfile, Kubernetes YAML, systemd units) is valid and agrees with prodserve's settings.

The nginx recipe is run for real in tests/test_nginx.py; socket activation in tests/test_deploy.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from django_prodserve.conf import SETTINGS, resolve
from django_prodserve.server.master import LISTEN_FDS_ENV
from django_prodserve.server.supervisor import GENERATION_ENV
from tests.client import get
from tests.conftest import MANAGE, ROOT, children_of, require_tool

DOCS = ROOT / "docs"
DOCUMENTS = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ENV_VARS = {setting.env_var for setting in SETTINGS}


def block_after(document: Path, marker: str, language: str, count: int = 1) -> list[str]:
    """The first `count` fenced blocks in `language` after the `<!-- tested: ...` marker."""
    _, found, rest = document.read_text().partition(marker)
    blocks = re.findall(rf"```{language}\n(.*?)```", rest, re.S)[:count]
    assert found and len(blocks) == count, f"{document.name} lost its tested {language} block"
    return blocks


def valid_config(environ: dict[str, str]):
    """prodserve's configuration from these PRODSERVE_* variables, which must all be valid."""
    unknown = {name for name in environ if name.startswith("PRODSERVE_")} - ENV_VARS
    assert not unknown, f"not prodserve settings: {unknown}"
    config, _, problems = resolve({}, environ, {})
    assert problems == [], problems
    return config


def test_settings_reference_is_generated_from_the_registry():
    spec = importlib.util.spec_from_file_location(
        "generate_settings", DOCS / "generate_settings.py"
    )
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (DOCS / "settings.md").read_text() == generator.render(), (
        "docs/settings.md is stale: run `python docs/generate_settings.py` and commit the result"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document):
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
    local = [target for target in targets if "://" not in target]
    missing = [target for target in local if not (document.parent / target).exists()]
    assert missing == []


def test_every_prodserve_variable_the_docs_mention_is_a_setting():
    mentioned = set()
    for path in [*DOCUMENTS, DOCS / "Dockerfile"]:
        mentioned |= set(re.findall(r"\bPRODSERVE_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    # Internal: master to new master or generation, supervisor to generation.
    assert mentioned - ENV_VARS - {LISTEN_FDS_ENV, GENERATION_ENV} == set()


# Docker


def dockerfile() -> list[tuple[str, str]]:
    """docs/Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DOCS / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def image_environment() -> dict[str, str]:
    return dict(
        item.split("=", 1)
        for keyword, rest in dockerfile()
        if keyword == "ENV"
        for item in shlex.split(rest)
    )


def image_command() -> list[str]:
    [cmd] = [rest for keyword, rest in dockerfile() if keyword == "CMD"]
    return json.loads(cmd)  # exec form: a JSON array, or this raises


def test_dockerfile_runs_prodserve_as_pid_1_as_a_user_and_copies_what_exists():
    instructions = dockerfile()
    keywords = [keyword for keyword, _ in instructions]
    command = image_command()
    assert command[:3] == ["python", "testproject/manage.py", "prodserve"]
    assert ROOT / command[1] == MANAGE  # WORKDIR /app holds what the repository root holds
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _ = rest.split()
            assert all((ROOT / source).exists() for source in sources), rest
    config = valid_config(image_environment())
    port = config.bind[0].rsplit(":", 1)[1]
    assert ("EXPOSE", port) in instructions
    [healthcheck] = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}{config.health_check_path}'" in healthcheck
    # docker stop waits 10 s before SIGKILL: the drain must fit.
    assert config.graceful_timeout < 10


def test_dockerfile_build_steps_migrate_and_pass_check(tmp_path):
    """The RUN line that calls manage.py, with the image's environment (the database in tmp)."""
    [steps] = [rest for keyword, rest in dockerfile() if keyword == "RUN" and "manage.py" in rest]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODSERVE_")}
    env.update(image_environment(), TESTPROJECT_DB=str(tmp_path / "db.sqlite3"))
    for step in steps.split("&&"):
        python, *args = shlex.split(step)
        assert python == "python"
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "configuration OK"


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace (unshare --pid) needs root")
def test_dockerfile_command_as_pid_1_serves_then_stops_gracefully_on_sigterm(start_server):
    """`docker run` then `docker stop`, without docker: the image's CMD and ENV as PID 1 of a new
    PID namespace, where a signal with no handler would be ignored."""
    unshare = require_tool("unshare", "util-linux")
    environment = image_environment()
    del environment["TESTPROJECT_DB"]  # the test database instead of /data
    del environment["PRODSERVE_BIND"]  # a free loopback port instead of 0.0.0.0:8000
    server = start_server(
        *image_command()[3:], env=environment, launcher=(unshare, "--pid", "--fork")
    )
    [pid_1] = children_of(server.proc.pid)
    response = get(server.port, environment["PRODSERVE_HEALTH_CHECK_PATH"])
    assert (response.status, response.body) == (200, b"ok\n")
    os.kill(pid_1, signal.SIGTERM)  # from outside the namespace, like the container runtime
    assert server.wait_exit() == 0
    assert "SIGTERM: stopping gracefully" in server.output


# Kubernetes


def test_kubernetes_manifest_agrees_with_prodserve():
    [manifest] = block_after(DOCS / "deploy-kubernetes.md", "<!-- tested:", "yaml")
    objects = {item["kind"]: item for item in yaml.safe_load_all(manifest)}
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    config = valid_config({item["name"]: item["value"] for item in container["env"]})

    [port] = container["ports"]
    assert config.bind == (f"0.0.0.0:{port['containerPort']}",)
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"]["path"] == config.health_check_path
        assert probe["httpGet"]["port"] in (port["name"], port["containerPort"])
    # Liveness gives up later than prodserve's own timeout, which aborts a stuck worker first.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > config.timeout

    sleep, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(seconds) + config.graceful_timeout


# systemd


def test_systemd_units_pass_systemd_analyze_verify_and_agree_with_prodserve(tmp_path):
    analyze = require_tool("systemd-analyze", "systemd")
    socket_unit, service_unit = block_after(DOCS / "deploy-systemd.md", "<!-- tested:", "ini", 2)
    # The one substitution: the documented virtualenv's python is this one.
    service_unit = service_unit.replace("/srv/app/venv/bin/python", sys.executable)
    (tmp_path / "prodserve.socket").write_text(socket_unit)
    (tmp_path / "prodserve.service").write_text(service_unit)
    result = subprocess.run(
        [analyze, "verify", "prodserve.socket", "prodserve.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys and bad values too; it only says so on stderr.
    complaints = [line for line in result.stderr.splitlines() if "prodserve." in line]
    assert result.returncode == 0 and complaints == [], result.stderr

    directives = dict(
        line.split("=", 1) for line in service_unit.splitlines() if re.match(r"^[A-Z]\w*=", line)
    )
    assert directives["Type"] == "notify" and directives["KillMode"] == "mixed"
    environ = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in service_unit.splitlines()
        if line.startswith("Environment=")
    )
    config = valid_config(environ)
    assert int(directives["TimeoutStopSec"]) > config.graceful_timeout
    assert "ListenStream=" in socket_unit
