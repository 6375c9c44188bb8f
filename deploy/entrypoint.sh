#!/bin/sh
# The container's entry point (deploy/Dockerfile): run `whatsapp-bridge`, first joining the Ray
# cluster at RAY_ADDRESS as a node of this container when one is given.
#
# Why a node: a Ray 2.x driver (the API) must run on a node of the cluster; `ray.init(address=
# "head:6379")` from a machine without a raylet waits for a local node and then fails. So this
# container starts one, with no session capacity (`wa_session: 0`) and no CPU for Ray tasks, and the
# API connects through it. Ray Client (`ray://head:10001`) was the other way; it was not chosen: its
# server runs on the head and holds the driver's state there, so a head restart ends the API's Ray
# session, while a node of our own reconnects to the restarted GCS (GCS fault tolerance) and the API
# keeps its handles; Ray Client also lacks streaming generators, which media downloads use.
#
# RAY_ADDRESS unset: everything runs embedded in this container (PostgreSQL, Valkey, a Ray head).
# RAY_ADDRESS=auto: a Ray node already runs in this container's network and process namespace.
set -eu

case "${RAY_ADDRESS:-}" in
  "" | auto | ray://*) ;;
  *)
    # Same settings as the cluster's nodes (README "Operations"); 600 s to wait out a head restart.
    export RAY_enable_metrics_collection="${RAY_enable_metrics_collection:-0}" \
      RAY_event_stats="${RAY_event_stats:-0}" \
      RAY_task_events_report_interval_ms="${RAY_task_events_report_interval_ms:-0}" \
      RAY_enable_timeline="${RAY_enable_timeline:-0}" \
      REPORTER_UPDATE_INTERVAL_MS="${REPORTER_UPDATE_INTERVAL_MS:-60000}" \
      RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}" \
      RAY_gcs_rpc_server_reconnect_timeout_s="${RAY_gcs_rpc_server_reconnect_timeout_s:-600}"
    # Extra `ray start` options (e.g. --node-ip-address=...) in RAY_START_ARGS.
    # shellcheck disable=SC2086
    ray start --address="$RAY_ADDRESS" --num-cpus=0 --resources='{"wa_session": 0}' \
      --object-store-memory="${RAY_OBJECT_STORE_BYTES:-104857600}" --disable-usage-stats \
      ${RAY_START_ARGS:-}
    ;;
esac

exec whatsapp-bridge "$@"
