"""deploy/ and the Docker build checked by the tools that consume them (haproxy, kubectl, sh):
processes, so they live here rather than in the unit tier; each is skipped where its tool is
missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)"
)
def test_haproxy_config_is_valid() -> None:
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_manifests() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = re.findall(r"^kind: (\w+)$", done.stdout, re.M)
    assert sorted(kinds) == sorted(
        [
            "Namespace",
            "ConfigMap",
            "Service",
            "Service",
            "Service",
            "PersistentVolumeClaim",
            "Deployment",
            "Deployment",
            "StatefulSet",
            "StatefulSet",
            "HorizontalPodAutoscaler",
            "Job",
        ]
    )


def test_docker_image_installs_the_pinned_ui() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    command = re.search(r"--no-deps \"\$\(/opt/metricgate/bin/python -c '(.+?)'\)\"", text)
    assert command, "the Dockerfile installs the ui extra's mlflow without dependencies"
    # The same one-liner, run against this environment's metadata, names the pinned mlflow.
    done = subprocess.run(
        [sys.executable, "-c", command.group(1)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == _extras()["ui"][0]


def test_docker_install_line_quotes_right_in_sh() -> None:
    # Docker runs a shell-form RUN with /bin/sh -c: the same line, its venv paths pointed at this
    # environment and pip replaced by echo, must name exactly the pinned mlflow.
    line = next(
        ln for ln in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if "--no-deps" in ln
    )
    line = line.removeprefix("RUN ").replace("/opt/metricgate/bin/pip install", "echo")
    line = line.replace("/opt/metricgate/bin/python", sys.executable)
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["--no-deps", _extras()["ui"][0]]
