"""cluster.yaml passes Ray's own cluster-config validator and keeps its safety defaults."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO
from tests.servers import S3Server


def setup_steps(commands: list[str]) -> list[str]:
    """The cluster/setup.sh steps a list of set-up commands runs, in order."""
    return [c.split("cluster/setup.sh ", 1)[1].split()[0] for c in commands if "cluster/setup.sh " in c]


@pytest.mark.parametrize("path", ["cluster.yaml", "cluster/onprem.yaml", "cluster/aws-s3.yaml"])
def test_cluster_configs_are_valid_for_ray_and_run_the_one_setup_script(path: str) -> None:
    config = yaml.safe_load((REPO / path).read_text())
    validate_config(prepare_config(config))  # what `ray up` does before it starts anything
    text = (REPO / path).read_text()
    # every set-up step is cluster/setup.sh's: the script tests/study/test_ray_up.py runs through `ray up`
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert all("cluster/setup.sh " in c for c in config[key]), (key, config[key])
    assert setup_steps(config["setup_commands"]) == ["settings", "shared-fs", "install"]
    head = setup_steps(config["head_setup_commands"])
    assert head[-3:] == ["install", "record", "mlflow"]  # the database before its server
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    commands = " ".join(c for key in config if key.endswith("_commands") for c in config[key])
    assert "0.0.0.0" not in text and "sqlite" not in commands and "|| true" not in commands and "pgrep" not in text
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"]) or config["available_node_types"]["head"][
        "resources"
    ] == {"CPU": 0, "GPU": 0}  # no trials on the head


def test_the_aws_config_mounts_efs_over_nfs_and_keeps_the_record() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    settings = config["setup_commands"][0]
    assert "BSS_NFS=fs-XXXXXXXX.efs." in settings  # plain NFSv4.1: no amazon-efs-utils, no `mount -t efs`
    assert "mount -t efs" not in (REPO / "cluster.yaml").read_text()
    assert setup_steps(config["head_setup_commands"]) == ["apt", "install", "record", "mlflow"]
    assert "cluster,postgres" in config["head_setup_commands"][1]
    assert setup_steps(config["worker_setup_commands"]) == ["mps"]
    (cluster_extra,) = [
        line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("cluster =")
    ]
    assert '"ray[default,tune]' in cluster_extra and '"boto3' in cluster_extra
    assert "cluster/down.sh cluster.yaml" in (REPO / "cluster.yaml").read_text()


def test_the_setup_script_keeps_the_record_safe() -> None:
    """What a first `ray up` broke on, read in the script itself (the on-premises test runs it)."""
    script = (REPO / "cluster" / "setup.sh").read_text()
    assert 'apt-get "${lock[@]}" update' in script and "DPkg::Lock::Timeout" in script
    assert "nfsvers=4.1" in script and "mount -t nfs4" in script
    assert 'chown "$(id -u):$(id -g)" "$SHARED"' in script  # a new EFS root is root's, mode 755
    assert "umask 077" in script and "ALTER ROLE bss LOGIN PASSWORD" in script  # a rerun recovers the role
    assert "pg_restore" in script and "pg_dump" in script and "mlflow-keeper.pid" in script
    assert "pgrep -f" not in script  # matches its own `bash -c` command line under Ray's runner
    done = subprocess.run(["bash", "-n", str(REPO / "cluster" / "setup.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["bash", str(REPO / "cluster" / "setup.sh"), "nonsense"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: cluster/setup.sh")


def test_validator_rejects_a_broken_config() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["max_wrokers"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def test_kuberay_manifest_keeps_trials_off_the_head_and_ports_private() -> None:
    documents = list(yaml.safe_load_all((REPO / "k8s" / "raycluster.yaml").read_text()))
    cluster = next(d for d in documents if d["kind"] == "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and workers["maxReplicas"] >= 1
    text = (REPO / "k8s" / "raycluster.yaml").read_text()
    # dependencies come with the image, not from a postStart hook racing the container's start
    assert "postStart" not in text and "pip install" not in text
    images = {c["image"] for c in head["template"]["spec"]["containers"] + workers["template"]["spec"]["containers"]}
    assert images == {"registry.example.com/bss-study:0.1.0"} and (REPO / "k8s" / "Dockerfile").is_file()
    assert "0.0.0.0" not in text and "LoadBalancer" not in text and "NodePort" not in text
    # every container's command is used as written and ends with KubeRay's own `ray start`; the GPU
    # workers start NVIDIA MPS before it (trials sharing a GPU run concurrently)
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    worker_cmd = " ".join(workers["template"]["spec"]["containers"][0]["args"])
    head_cmd = " ".join(head["template"]["spec"]["containers"][0]["args"])
    assert worker_cmd.index("nvidia-cuda-mps-control -d") < worker_cmd.index('eval "$KUBERAY_GEN_RAY_START_CMD"')
    assert head_cmd.endswith('eval "$KUBERAY_GEN_RAY_START_CMD"') and "mps" not in head_cmd
    assert head["rayStartParams"]["num-gpus"] == "0"
    # the record: PostgreSQL in a pod of its own on a volume of its own (not the shared one), inside the
    # cluster only; its password from a Secret; the MLflow server's backend store on it; no SQLite
    assert "sqlite" not in text
    service = next(d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "bss-study-postgres")
    assert service["spec"]["type"] == "ClusterIP"
    database = next(d for d in documents if d["kind"] == "StatefulSet")
    (claim,) = database["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (container,) = database["spec"]["template"]["spec"]["containers"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"POSTGRES_PASSWORD": "bss-study-postgres"}
    head_env = {e["name"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert "PGPASSWORD" in head_env
    # MLflow: a container of its own (Kubernetes restarts it), Ready only once it answers on loopback
    ray_container, mlflow = head["template"]["spec"]["containers"]
    assert ray_container["name"] == "ray-head" and mlflow["name"] == "mlflow"
    assert "--backend-store-uri=postgresql://bss@bss-study-postgres:5432/mlflow" in mlflow["command"]
    assert "--host=127.0.0.1" in mlflow["command"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "127.0.0.1:5000/health" in " ".join(mlflow[probe]["exec"]["command"])
    # the shared claim names a ReadWriteMany class (a cloud's default block disk cannot be one)
    claim = next(d for d in documents if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "efs-sc"
    for named in ("efs-sc", "standard-rwx", "azurefile-csi"):
        assert named in text
    assert "[postgres]" in (REPO / "k8s" / "Dockerfile").read_text()


KUBERNETES = "1.30.0"


def manifest_errors(documents: list[dict]) -> list[str]:
    """Every object strictly against its schema: Kubernetes' own (kubernetes-validate) for its kinds;
    for the RayCluster, KubeRay's fields (k8s/schema/raycluster-v1.json) and each pod template as a
    Kubernetes PodTemplateSpec. One message per error."""
    schema = json.loads((REPO / "k8s" / "schema" / "raycluster-v1.json").read_text())
    errors: list[str] = []

    def kube(document: dict, where: str) -> None:
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {exc.message} at {list(exc.path)}")

    for document in documents:
        where = f"{document['kind']} {document['metadata']['name']}"
        if document["kind"] != "RayCluster":
            kube(document, where)
            continue
        for error in jsonschema.Draft7Validator(schema).iter_errors(document):
            errors.append(f"{where}: {error.message} at {list(error.path)}")
        spec = document["spec"]
        groups = [("headGroupSpec", spec["headGroupSpec"])]
        groups += [(f"workerGroupSpecs[{g['groupName']}]", g) for g in spec.get("workerGroupSpecs", [])]
        for name, group in groups:
            template = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": group["template"],
            }
            kube(template, f"{where} {name}.template")
    return errors


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "raycluster-s3.yaml"])
def test_every_kubernetes_object_passes_its_schema_strictly(manifest: str) -> None:
    documents = [d for d in yaml.safe_load_all((REPO / "k8s" / manifest).read_text()) if d]
    assert {d["kind"] for d in documents} >= {"RayCluster", "PersistentVolumeClaim", "Service", "StatefulSet"}
    assert manifest_errors(documents) == []


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("worker group", "maxReplica"),
        ("container", "imagePullPolicyy"),
        ("claim", "storageClass"),
        ("cluster", "enableInTreeAutoscaler"),
    ],
)
def test_an_unknown_field_fails_the_schema_check(where: str, field: str) -> None:
    """A broken copy of the manifest, one misspelt field each: the strict check names it."""
    documents = copy.deepcopy([d for d in yaml.safe_load_all((REPO / "k8s" / "raycluster.yaml").read_text()) if d])
    cluster = next(d for d in documents if d["kind"] == "RayCluster")
    target = {
        "worker group": cluster["spec"]["workerGroupSpecs"][0],
        "container": cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0],
        "claim": next(d for d in documents if d["kind"] == "PersistentVolumeClaim")["spec"],
        "cluster": cluster["spec"],
    }[where]
    target[field] = "x"
    errors = manifest_errors(documents)
    assert errors and any(field in e for e in errors), errors


def docker_context(root: Path) -> set[str]:
    """The files `docker build` sends from ``root``, by .dockerignore's patterns (the two forms it
    uses: a name at the root, ``**/pattern`` at any depth; the test refuses any other form)."""
    patterns = [
        p.strip() for p in (root / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    assert all("/" not in p.removeprefix("**/") and not p.startswith("!") for p in patterns), patterns
    rooted = [p for p in patterns if not p.startswith("**/")]
    anywhere = [p.removeprefix("**/") for p in patterns if p.startswith("**/")]
    sent: set[str] = set()
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(fnmatch.fnmatchcase(parts[0], p) for p in rooted):
            continue
        if any(fnmatch.fnmatchcase(part, p) for part in parts for p in anywhere):
            continue
        if path.is_file():
            sent.add("/".join(parts))
    return sent


def test_the_image_leaves_local_folders_out_and_names_the_driver_it_needs(tmp_path: Path) -> None:
    for name in (".venv/bin/python", "runs/demo/trials.parquet", ".git/HEAD", "study/cli.py", "pyproject.toml",
                 "study/__pycache__/cli.cpython-311.pyc", ".matrix/oldest/bin/python", "k8s/Dockerfile"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".dockerignore").write_text((REPO / ".dockerignore").read_text())
    sent = docker_context(tmp_path)
    assert sent == {"study/cli.py", "pyproject.toml", "k8s/Dockerfile", ".dockerignore"}
    assert not any(p.startswith((".venv/", "runs/", ".git/")) for p in docker_context(REPO))
    dockerfile = (REPO / "k8s" / "Dockerfile").read_text()
    assert "driver 580" in dockerfile and "TORCH_INDEX" in dockerfile and "-c /tmp/keep.txt" in dockerfile


def test_the_aws_config_without_a_shared_file_system_keeps_everything_in_the_bucket() -> None:
    config = yaml.safe_load((REPO / "cluster" / "aws-s3.yaml").read_text())
    text = (REPO / "cluster" / "aws-s3.yaml").read_text()
    settings = config["setup_commands"][0]
    assert "BSS_BUCKET=s3://" in settings and "BSS_NFS=" not in text and ".efs." not in text
    for node in config["available_node_types"].values():  # every node reaches the bucket by its role
        assert node["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert setup_steps(config["head_setup_commands"]) == ["apt", "install", "record", "mlflow"]
    assert "storage: s3://BUCKET/studies" in text and "--from s3://" in text
    assert "aws_access_key_id" not in text.lower() and "AWS_SECRET_ACCESS_KEY" not in text


def test_the_record_copies_go_to_the_bucket_and_come_back(tmp_path: Path, s3: S3Server) -> None:
    """cluster/objects.py, which setup.sh's record and dump steps run with BSS_BUCKET set, against a
    real S3-compatible server: a dump put and got back whole and private; a missing copy is exit 3."""
    bucket = s3.bucket(f"record-{uuid.uuid4().hex[:8]}")
    dump = tmp_path / "optuna.dump"
    dump.write_bytes(os.urandom(200_000))
    tool = [sys.executable, str(REPO / "cluster" / "objects.py")]
    assert subprocess.run([*tool, "put", str(dump), f"{bucket}/record/optuna.dump"], timeout=60).returncode == 0
    back = tmp_path / "restored" / "optuna.dump"
    back.parent.mkdir()
    assert subprocess.run([*tool, "get", f"{bucket}/record/optuna.dump", str(back)], timeout=60).returncode == 0
    assert back.read_bytes() == dump.read_bytes() and (back.stat().st_mode & 0o777) == 0o600
    missing = subprocess.run([*tool, "get", f"{bucket}/record/pgpass", str(tmp_path / "pgpass")], timeout=60)
    assert missing.returncode == 3 and not (tmp_path / "pgpass").exists()
    script = (REPO / "cluster" / "setup.sh").read_text()
    for call in ('fetch_record "$db.dump"', 'store_record "$db.dump"', "fetch_record pgpass", "store_record pgpass"):
        assert call in script, call


def test_the_kuberay_manifest_without_a_shared_volume_keeps_trials_in_the_bucket() -> None:
    text = (REPO / "k8s" / "raycluster-s3.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(text) if d]
    cluster = next(d for d in documents if d["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    worker = workers["template"]["spec"]
    assert "volumes" not in worker and "volumeMounts" not in worker["containers"][0]  # no shared volume at all
    assert worker["containers"][0]["envFrom"] == [{"secretRef": {"name": "bss-study-s3"}}]
    ray_head, mlflow = head["containers"]
    assert ray_head["envFrom"] == mlflow["envFrom"] == [{"secretRef": {"name": "bss-study-s3"}}]
    assert "--artifacts-destination=s3://BUCKET/mlflow-artifacts" in mlflow["command"]
    (claim,) = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]
    assert "storage: s3://BUCKET/studies" in text and "--from s3://" in text
    assert "AWS_SECRET_ACCESS_KEY=..." in text and "sqlite" not in text and "0.0.0.0" not in text
