"""cluster.yaml passes Ray's own cluster-config validator and keeps its safety defaults."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO


def test_cluster_yaml_is_valid_for_ray() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does before it starts anything
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}  # no trials on the head
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    assert not any("0.0.0.0" in c for c in config["head_setup_commands"])
    # a node whose shared file system does not mount fails its setup, loudly
    assert not any("|| true" in c for c in config["setup_commands"])
    assert any("mountpoint -q /mnt/shared ||" in c and "exit 1" in c for c in config["setup_commands"])
    # the head has Ray's dashboard and job server (ray[default]), the AWS autoscaler's boto3 and psycopg
    assert any(".[cluster,postgres]" in c for c in config["head_setup_commands"])
    # the record lives in PostgreSQL on the head's own disk, behind the MLflow server: no SQLite on EFS,
    # and the database's password only in ~/.pgpass (mode 600 through umask 077)
    text = (REPO / "cluster.yaml").read_text()
    assert "sqlite" not in text
    assert any("install -y -q postgresql" in c for c in config["head_setup_commands"])
    (server,) = [c for c in config["head_setup_commands"] if "mlflow server" in c]
    assert "--backend-store-uri postgresql://bss@127.0.0.1:5432/mlflow" in server and "--host 127.0.0.1" in server
    assert any("umask 077" in c and "~/.pgpass" in c for c in config["head_setup_commands"])
    (cluster_extra,) = [
        line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("cluster =")
    ]
    assert '"ray[default,tune]' in cluster_extra and '"boto3' in cluster_extra
    # GPU workers start NVIDIA MPS before Ray (the setup commands run before the start commands)
    assert any("nvidia-cuda-mps-control -d" in c for c in config["worker_setup_commands"])
    assert not any("mps" in c for c in config["head_setup_commands"] + config["setup_commands"])


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
    assert worker_cmd.index("nvidia-cuda-mps-control -d") < worker_cmd.index("$KUBERAY_GEN_RAY_START_CMD")
    assert head_cmd.endswith("$KUBERAY_GEN_RAY_START_CMD") and "mps" not in head_cmd
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
    assert (
        "PGPASSWORD" in head_env and "--backend-store-uri postgresql://bss@bss-study-postgres:5432/mlflow" in head_cmd
    )
    assert "[postgres]" in (REPO / "k8s" / "Dockerfile").read_text()
