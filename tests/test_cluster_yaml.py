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


def test_validator_rejects_a_broken_config() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["max_wrokers"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))
