"""deploy/docker-compose.yml: a valid Compose file that runs the image with Prometheus and Grafana."""

from __future__ import annotations

from pathlib import Path

import yaml
from compose_spec import PyCompose

from tests.deploy.helpers import DEPLOY
from tests.helpers import REPO

COMPOSE = DEPLOY / "docker-compose.yml"


def test_compose_file_follows_the_compose_specification() -> None:
    compose = PyCompose.from_yaml(COMPOSE.read_text())  # strict: an unknown key is an error
    compose.validate()  # every volume and network a service names is declared
    assert sorted(compose.service_names()) == ["collector", "grafana", "prometheus"]


def test_collector_is_built_from_the_repository_and_exposes_the_image_ports() -> None:
    collector = yaml.safe_load(COMPOSE.read_text())["services"]["collector"]
    assert (DEPLOY / collector["build"]["context"]).resolve() == REPO
    assert collector["ports"] == ["4317:4317", "4318:4318", "8888:8888", "127.0.0.1:16686:16686"]
    # the query API on the compose network for Grafana, published on the host's loopback only
    assert collector["environment"]["GENAI_COLLECTOR_QUERY__ENDPOINT"] == "0.0.0.0:16686"
    assert "collector-data:/data" in collector["volumes"]


def test_every_bind_mount_exists_and_prometheus_scrapes_the_collector_service() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"

    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["prometheus"]["volumes"]}
    config = yaml.safe_load((DEPLOY / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    [job] = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["collector:8888"]}]
    for rule_file in config["rule_files"]:
        mounted = mounts[str(Path("/etc/prometheus") / rule_file)]
        assert (DEPLOY / mounted).resolve() == (DEPLOY / "prometheus" / rule_file).resolve()
