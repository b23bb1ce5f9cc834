#!/usr/bin/env bash
# `ray down` that keeps the record: dump PostgreSQL's databases to the shared file system (or, in
# cluster/aws-s3.yaml, the bucket) first (cluster/setup.sh dump on the head), so the next `ray up`
# restores them onto a new head.
#   cluster/down.sh cluster.yaml   (or cluster/onprem.yaml, cluster/aws-s3.yaml; extra arguments go to `ray down`)
set -euo pipefail
CONFIG="${1:?usage: cluster/down.sh CLUSTER_YAML [ray down options]}"
shift
if ! ray exec "$CONFIG" 'bash ~/bss-study/cluster/setup.sh dump'; then
  echo "error: the record was not dumped (is the head up?); not taking the cluster down. To take it down" \
       "anyway (losing what the record got since the last dump): ray down -y $CONFIG" >&2
  exit 1
fi
exec ray down -y "$CONFIG" "$@"
