"""docker-compose.yml checked statically, with no Docker: it parses, it is valid Compose, it names only
images built here or pinned public ones, its dependencies and health checks hold together, and it
carries no secret. `compose_problems` names every fault; the tests below also break a copy of the file
on purpose to show that each check catches its fault."""

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).parent / "compose_spec" / "compose-spec.json"  # vendored: see its README.md

FABRIC_VERSION = "2.5.16"
# Every image not built from the repository's Dockerfile, with its pinned tag.
PUBLIC_IMAGES = {
    "hyperledger/fabric-orderer": FABRIC_VERSION,
    "hyperledger/fabric-peer": FABRIC_VERSION,
    "hyperledger/fabric-tools": FABRIC_VERSION,
    "postgres": "16.6-alpine",
    "redis": "7.4.2-alpine",
}
# Environment variables whose value is a secret: only ever interpolated from the environment or .env.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEYS?$|PSEUDONYM_KEY)", re.IGNORECASE)
INTERPOLATED = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
SECRET_IN_URL = re.compile(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]+)@")
KEY_MATERIAL = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SECRET_IN_JSON = re.compile(r'"key"\s*:\s*"([^"]*)"')  # a peer instance's shared key (TRAINING_FEDERATION_PEERS)


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {str(name): "" if value is None else str(value) for name, value in environment.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return {name: {"condition": "service_started"} for name in dependencies}
    return dependencies


def one_shot_services(document: dict[str, Any]) -> set[str]:
    """Services that run to completion: the ones others wait for with service_completed_successfully."""
    return {
        name
        for service in document["services"].values()
        for name, dependency in depends_on(service).items()
        if dependency.get("condition") == "service_completed_successfully"
    }


def schema_problems(document: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    return [
        f"schema: {'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def compose_problems(document: Any) -> list[str]:
    """Every fault of a parsed compose document, as readable sentences (empty if none)."""
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        return ["the file has no services mapping"]
    problems = schema_problems(document)
    services: dict[str, dict[str, Any]] = document["services"]
    one_shot = one_shot_services(document)
    for name, service in services.items():
        problems += _image_problems(name, service)
        for target, dependency in depends_on(service).items():
            if target not in services:
                problems.append(f"{name}: depends on {target!r}, which is not a service")
            elif dependency.get("condition") == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
        if name in one_shot:
            if service.get("restart") not in (None, "no", "on-failure"):
                problems.append(f"{name}: runs once, but restart is {service['restart']!r}")
        else:
            test = (service.get("healthcheck") or {}).get("test")
            if not test or service["healthcheck"].get("disable") or test in (["NONE"], "NONE"):
                problems.append(f"{name}: a long-running service without a healthcheck")
        problems += _secret_problems(name, service)
    return problems


def _image_problems(name: str, service: dict[str, Any]) -> list[str]:
    if "build" in service:
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if (REPO / context).resolve() != REPO or dockerfile != "Dockerfile":
            return [f"{name}: built from something other than the repository's Dockerfile"]
        return []
    image = service.get("image")
    if not image:
        return [f"{name}: neither built nor given an image"]
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag:
        return [f"{name}: image {image} has no pinned tag"]
    if repository not in PUBLIC_IMAGES:
        return [f"{name}: image {repository} is not one of the allowed public images"]
    if tag != PUBLIC_IMAGES[repository]:
        return [f"{name}: image {image} is not the pinned {repository}:{PUBLIC_IMAGES[repository]}"]
    return []


def _secret_problems(name: str, service: dict[str, Any]) -> list[str]:
    problems = []
    if "env_file" in service:
        problems.append(f"{name}: env_file is not used (secrets come from the environment or an uncommitted .env)")
    for variable, value in environment_of(service).items():
        if SECRET_NAME.search(variable) and not variable.endswith("_PATH") and value and not INTERPOLATED.match(value):
            problems.append(f"{name}: {variable} holds a literal secret")
        password = SECRET_IN_URL.search(value)
        if password and not INTERPOLATED.match(password.group(1)):
            problems.append(f"{name}: {variable} holds a literal password in a URL")
        if KEY_MATERIAL.search(value):
            problems.append(f"{name}: {variable} holds a private key")
        if any(not INTERPOLATED.match(key) for key in SECRET_IN_JSON.findall(value)):
            problems.append(f"{name}: {variable} holds a literal key")
    return problems


# --- the real file ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def test_the_compose_file_parses_as_yaml(compose):
    assert isinstance(compose["services"], dict)


def test_the_compose_file_is_valid_against_the_compose_specification(compose):
    assert schema_problems(compose) == []


def test_the_compose_file_has_no_problems(compose):
    assert compose_problems(compose) == []


def test_the_stack_has_every_component(compose):
    expected = {
        *(f"{org}-prepare" for org in ORGANISATIONS),
        "genesis",
        "orderer0",
        "orderer1",
        "orderer2",
        "peer0-hospital",
        "peer1-hospital",
        "peer0-research",
        "ordering-join",
        "hospital-setup",
        "research-setup",
        "hospital-commit",
        "chaincode-hospital",
        "chaincode-research",
        "postgres",
        "redis",
        "web",
        "custodian-worker",
        "compute-worker",
        "beat",
    }
    assert expected <= set(compose["services"])


def test_fabric_images_share_one_2_5_release(compose):
    tags = {s["image"].rpartition(":")[2] for s in compose["services"].values() if "hyperledger/" in s.get("image", "")}
    assert tags == {FABRIC_VERSION}
    assert FABRIC_VERSION.startswith("2.5.")


def test_the_compute_worker_gets_no_database_credentials_and_no_keys(compose):
    environment = environment_of(compose["services"]["compute-worker"])
    assert set(environment) <= {"CELERY_BROKER_URL", "ANALYTICS_BLOB_DIR", "HEALTH_PLATFORM_VAR_DIR"}
    mounts = [str(volume).split(":")[0] for volume in compose["services"]["compute-worker"].get("volumes", [])]
    assert mounts == ["blobs"]


def test_the_app_reaches_the_ledger_through_fabric_with_an_exported_client_identity(compose):
    environment = environment_of(compose["services"]["web"])
    # Both organisations' gateways, in order of preference; the TLS CA file is the exported bundle of both.
    assert environment["LEDGER_URL"] == "fabric://peer0.hospital:7051,peer0.research:9051/health/health"
    for variable in ("FABRIC_CERT_PATH", "FABRIC_KEY_PATH", "FABRIC_TLS_CA_PATH"):
        assert environment[variable].startswith("/var/fabric-client/")
    assert "export-client /var/fabric-client" in " ".join(compose["services"]["hospital-setup"]["command"])


def test_fabric_settings_are_ones_the_network_scripts_read(compose):
    scripts = (REPO / "network" / "env.sh").read_text() + (REPO / "network" / "fabric.sh").read_text()
    for service in network_steps(compose):
        for variable in environment_of(compose["services"][service]):
            if variable != "FABRIC_LOGGING_SPEC":
                assert f"${{{variable}" in scripts or f"${variable}" in scripts, f"{service}: {variable}"


def test_mounted_repository_paths_and_scripts_exist(compose):
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source
    for builder_step in ("detect", "build", "release"):
        assert (REPO / "chaincode" / "builder" / "bin" / builder_step).stat().st_mode & 0o111


def test_the_dockerfile_builds_from_python_3_11_slim_and_the_lock_file():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert re.search(r"^USER app$", dockerfile, re.MULTILINE)


def test_no_env_file_or_secret_reaches_the_repository_or_the_image():
    ignored = (REPO / ".gitignore").read_text().split()
    docker_ignored = (REPO / ".dockerignore").read_text().split()
    assert "/.env" in ignored
    assert ".env" in docker_ignored
    assert ".venv" in docker_ignored
    assert "var" in docker_ignored


# --- the trust domains: each organisation's keys in its own volumes ------------------------------------

ORGANISATIONS = ("ordering", "hospital", "research")
PUBLIC_VOLUME = "fabric-public"
CLIENT_EXPORTS = {"hospital": "hospital-client", "research": "research-client"}
# Each peer organisation's platform instance (README: "One platform instance per organisation"): its services that
# reach the ledger, and the one volume of the network they mount, read-only: their organisation's client export.
APP_SERVICES = {
    "hospital": ("web", "custodian-worker", "beat"),
    "research": ("northgate-web", "northgate-custodian-worker", "northgate-beat"),
}
INSTANCES = {"hospital": "", "research": "northgate-"}  # the prefix of each instance's services and stores


def mounts(service: dict[str, Any]) -> list[tuple[str, bool]]:
    """(source, read-only) of each of a service's volumes (short syntax)."""
    found = []
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        found.append((source, rest.split(":")[-1] == "ro" if ":" in rest else False))
    return found


def organisation_of_volume(volume: str) -> str | None:
    """The organisation whose private volume this is (named <org>-...), None for any other."""
    return next((org for org in ORGANISATIONS if volume.startswith(f"{org}-")), None)


def network_steps(document: dict[str, Any]) -> dict[str, list[str]]:
    """service -> its network/fabric.sh arguments (every call of the script in its command)."""
    found = {}
    for name, service in document["services"].items():
        command = service.get("command") or []
        text = command if isinstance(command, str) else " ".join(map(str, command))
        calls = re.findall(r"fabric\.sh ([^&]*)", text)
        if calls:
            found[name] = [call.strip() for call in calls]
    return found


def trust_domain_problems(document: dict[str, Any]) -> list[str]:
    """Every way the compose file lets one organisation's containers reach another's keys."""
    problems = []
    steps = network_steps(document)
    for name, service in document["services"].items():
        owners = {organisation_of_volume(source) for source, _ in mounts(service)} - {None}
        if len(owners) > 1:
            problems.append(f"{name}: mounts the private volumes of {', '.join(sorted(owners))}")
        for owner in owners:
            # A container of the organisation: a step or node of the script naming it, or the app (the
            # hospital's) with the client export only.
            named = any(re.search(rf"\b{owner}\b", call) for call in steps.get(name, []))
            if not named and name not in APP_SERVICES.get(owner, ()):
                problems.append(f"{name}: mounts {owner}'s private volumes, but is not one of {owner}'s containers")
        for source, read_only in mounts(service):
            publishing = any(call.startswith(("prepare-org", "genesis")) for call in steps.get(name, []))
            if source == PUBLIC_VOLUME and not read_only and not publishing:
                problems.append(f"{name}: mounts {PUBLIC_VOLUME} writable, but publishes nothing")
        instance = next((org for org, names in APP_SERVICES.items() if name in names), None)
        if instance is not None:
            fabric_mounts = [m for m in mounts(service) if m[0] == PUBLIC_VOLUME or organisation_of_volume(m[0])]
            if fabric_mounts != [(CLIENT_EXPORTS[instance], True)]:
                problems.append(f"{name}: mounts {fabric_mounts} of the network, not the client export read-only")
    return problems


def test_no_container_reaches_another_organisations_keys(compose):
    assert trust_domain_problems(compose) == []
    declared = set(compose["volumes"])
    for org in ORGANISATIONS:
        assert f"{org}-crypto" in declared


def test_three_raft_orderers_each_its_own_node(compose):
    steps = network_steps(compose)
    orderers = sorted(call for calls in steps.values() for call in calls if call.startswith("node orderer"))
    assert orderers == ["node orderer0.ordering", "node orderer1.ordering", "node orderer2.ordering"]
    aliases = {
        alias
        for service in compose["services"].values()
        for alias in (service.get("networks") or {}).get("default", {}).get("aliases", [])
    }
    assert {"orderer0.ordering", "orderer1.ordering", "orderer2.ordering", "peer1.hospital"} <= aliases


def test_each_peer_organisation_has_its_own_chaincode_service_and_setup(compose):
    steps = network_steps(compose)
    assert steps["chaincode-hospital"] == ["chaincode hospital"]
    assert steps["chaincode-research"] == ["chaincode research"]
    for org in ("hospital", "research"):
        assert f"approve {org}" in steps[f"{org}-setup"]
        volumes = [source for source, _ in mounts(compose["services"][f"chaincode-{org}"])]
        assert volumes == [f"{org}-chaincode"]
    assert steps["hospital-commit"][0] == "commit hospital"


def test_a_container_mounting_another_organisations_keys_is_caught(compose):
    def two_organisations(document):
        document["services"]["peer0-hospital"]["volumes"].append("research-crypto:/var/fabric/orgs/research")

    def foreign(document):
        document["services"]["orderer0"]["volumes"] = ["hospital-crypto:/var/fabric/orgs/hospital"]

    def app_with_keys(document):
        document["services"]["web"]["volumes"].append("hospital-crypto:/var/fabric/orgs/hospital:ro")

    def public_writable(document):
        document["services"]["peer0-research"]["volumes"] = ["fabric-public:/var/fabric/public"]

    def problems(change):
        document = copy.deepcopy(compose)
        change(document)
        return trust_domain_problems(document)

    assert "peer0-hospital: mounts the private volumes of hospital, research" in problems(two_organisations)
    assert "orderer0: mounts hospital's private volumes, but is not one of hospital's containers" in problems(foreign)
    assert any(problem.startswith("web: mounts") for problem in problems(app_with_keys))
    assert "peer0-research: mounts fabric-public writable, but publishes nothing" in problems(public_writable)


# --- the checks catch a broken file ------------------------------------------------------------------


def broken(compose: dict[str, Any], change) -> list[str]:
    document = copy.deepcopy(compose)
    change(document)
    return compose_problems(document)


def test_a_file_that_is_not_compose_is_caught():
    assert compose_problems(yaml.safe_load("just: [a, list]")) == ["the file has no services mapping"]
    assert compose_problems(yaml.safe_load("- 1")) == ["the file has no services mapping"]


def test_a_schema_violation_is_caught(compose):
    def change(document):
        document["services"]["redis"]["ports"] = {"not": "a list"}

    assert any(problem.startswith("schema: services/redis/ports") for problem in broken(compose, change))


def test_an_unpinned_or_unknown_image_is_caught(compose):
    assert "redis: image redis has no pinned tag" in broken(
        compose, lambda document: document["services"]["redis"].update(image="redis")
    )
    assert "redis: image redis:latest is not the pinned redis:7.4.2-alpine" in broken(
        compose, lambda document: document["services"]["redis"].update(image="redis:latest")
    )
    assert "redis: image example/redis is not one of the allowed public images" in broken(
        compose, lambda document: document["services"]["redis"].update(image="example/redis:1.0")
    )


def test_a_build_from_elsewhere_is_caught(compose):
    assert "web: built from something other than the repository's Dockerfile" in broken(
        compose, lambda document: document["services"]["web"].update(build={"context": "other"})
    )


def test_a_dependency_on_a_missing_service_is_caught(compose):
    def change(document):
        document["services"]["web"]["depends_on"]["ghost"] = {"condition": "service_started"}

    assert "web: depends on 'ghost', which is not a service" in broken(compose, change)


def test_a_long_running_service_without_a_healthcheck_is_caught(compose):
    problems = broken(compose, lambda document: document["services"]["orderer1"].pop("healthcheck"))
    assert "orderer1: a long-running service without a healthcheck" in problems
    assert "ordering-join: waits for orderer1 to be healthy, but orderer1 has no healthcheck" in problems


def test_a_literal_secret_is_caught(compose):
    def change(document):
        document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
        document["services"]["web"]["environment"] = dict(
            document["services"]["web"]["environment"],
            DATABASE_URL="postgres://health_platform:hunter2@postgres:5432/health_platform",
            DJANGO_SECRET_KEY="not-so-secret",
            TRAINING_FEDERATION_PEERS='{"org:northgate": {"url": "http://northgate-web:8000", "key": "a2V5"}}',
        )
        document["services"]["web"]["env_file"] = [".env"]

    problems = broken(compose, change)
    assert "postgres: POSTGRES_PASSWORD holds a literal secret" in problems
    assert "web: TRAINING_FEDERATION_PEERS holds a literal key" in problems
    assert "web: DATABASE_URL holds a literal password in a URL" in problems
    assert "web: DJANGO_SECRET_KEY holds a literal secret" in problems
    assert any(problem.startswith("web: env_file") for problem in problems)


def test_each_organisation_runs_its_own_platform_instance_on_its_own_stores(compose):
    """One platform instance per organisation: St Mary's (the hospital's) and Northgate (the research
    organisation's), each with its own database server, broker, var folder (its keys) and blob folder, its own
    organisation's client identity, and the other as its federation peer, the shared key interpolated."""
    services = compose["services"]
    stores: dict[str, set[str]] = {}
    for organisation, prefix in INSTANCES.items():
        environment = environment_of(services[f"{prefix}web"])
        assert environment["FABRIC_MSP_ID"] == {"hospital": "HospitalMSP", "research": "ResearchMSP"}[organisation]
        assert f"@{prefix}postgres:5432/" in environment["DATABASE_URL"]
        assert environment["CELERY_BROKER_URL"] == f"redis://{prefix}redis:6379/0"
        for service in (f"{prefix}web", f"{prefix}custodian-worker", f"{prefix}beat", f"{prefix}compute-worker"):
            assert service in services
        stores[organisation] = {
            source
            for name in (*APP_SERVICES[organisation], f"{prefix}compute-worker")
            for source, _ in mounts(services[name])
        }
        hosted = environment["TRAINING_HOSTED_ORGANISATIONS"]
        peers = SECRET_IN_JSON.sub('"key": "-"', environment["TRAINING_FEDERATION_PEERS"])
        [(peer, entry)] = json.loads(peers).items()
        assert peer != hosted
        assert entry["url"].startswith("http://")
        assert entry["url"].split("//")[1].split(":")[0] in services
        assert SECRET_IN_JSON.findall(environment["TRAINING_FEDERATION_PEERS"]) == [
            "${TRAINING_FEDERATION_KEY:?set TRAINING_FEDERATION_KEY in the environment or .env}"
        ]
        assert environment["TRAINING_AGGREGATOR_HOST"] == f"{prefix}custodian-worker"
    assert stores["hospital"].isdisjoint(stores["research"])
