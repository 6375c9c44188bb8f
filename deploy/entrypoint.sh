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
# The container lives as long as both its node and the API do. The API cannot outlive its node: once
# the raylet is gone (the head stayed away past RAY_gcs_rpc_server_reconnect_timeout_s, the RayCluster
# was recreated, the GCS declared the node dead, a crash) the driver has nothing to connect through and
# would answer 503 for ever while /health stays 200. So the node runs as `ray start --block`, which
# checks its processes every second and exits non-zero (stopping the rest) when one of them dies; this
# script then stops the API and exits non-zero, and the container is restarted with a fresh node.
# SIGTERM/SIGINT (pod deletion, `docker stop`) stop the API first (it drains and leaves Ray), then the
# node; the exit code is then the API's (0 after a clean stop).
#
# RAY_ADDRESS unset: everything runs embedded in this container (PostgreSQL, Valkey, a Ray head).
# RAY_ADDRESS=auto: a Ray node already runs in this container's network and process namespace.
set -eu

case "${RAY_ADDRESS:-}" in
  "" | auto | ray://*) exec whatsapp-bridge "$@" ;;
esac

# Same settings as the cluster's nodes (README "Operations"); 600 s to wait out a head restart.
export RAY_enable_metrics_collection="${RAY_enable_metrics_collection:-0}" \
  RAY_event_stats="${RAY_event_stats:-0}" \
  RAY_task_events_report_interval_ms="${RAY_task_events_report_interval_ms:-0}" \
  RAY_enable_timeline="${RAY_enable_timeline:-0}" \
  REPORTER_UPDATE_INTERVAL_MS="${REPORTER_UPDATE_INTERVAL_MS:-60000}" \
  RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}" \
  RAY_gcs_rpc_server_reconnect_timeout_s="${RAY_gcs_rpc_server_reconnect_timeout_s:-600}" \
  RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"
# (No drain wait on SIGTERM for this node: it holds no sessions, and the API has left it by then.)

# Seconds the API gets to stop after SIGTERM, and the node after that, before SIGKILL. Keep their sum
# below the pod's terminationGracePeriodSeconds (deploy/kuberay/api.yaml) and compose's
# stop_grace_period for `api`.
API_STOP_TIMEOUT_S="${WHATSAPP_BRIDGE_STOP_TIMEOUT_S:-25}"
NODE_STOP_TIMEOUT_S="${RAY_NODE_STOP_TIMEOUT_S:-10}"

log() {
  printf '%s entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

alive() {
  kill -0 "$1" 2>/dev/null
}

# Wait until process $1 has exited, at most $2 seconds; then SIGKILL it. Its exit code in $status.
reap() {
  _waited=0
  while alive "$1" && [ "$_waited" -lt "$2" ]; do
    sleep 1 &
    wait "$!" || :
    _waited=$((_waited + 1))
  done
  if alive "$1"; then
    log "pid $1 did not stop within $2 s: killing it"
    kill -KILL "$1" 2>/dev/null || :
  fi
  status=0
  wait "$1" || status=$?
}

stop_requested=""
api=""
node=""
# shellcheck disable=SC2317,SC2329  # called from the traps below
on_signal() {
  stop_requested="$1"
  # Before the API runs the node gets it (its own handler stops its processes); after, the API.
  if [ -n "$api" ]; then
    kill -TERM "$api" 2>/dev/null || :
  elif [ -n "$node" ]; then
    kill -TERM "$node" 2>/dev/null || :
  fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# The node's output goes through a FIFO so that this script sees when the node is up ("Ray runtime
# started.", printed once the raylet has registered) before it starts the driver; a `cat` relays the
# rest. Extra `ray start` options (e.g. --node-ip-address=...) in RAY_START_ARGS.
fifo="$(mktemp -u "${TMPDIR:-/tmp}/wab-ray-start.XXXXXX")"
mkfifo -m 600 "$fifo"
# shellcheck disable=SC2086
ray start --block --address="$RAY_ADDRESS" --num-cpus=0 --resources='{"wa_session": 0}' \
  --object-store-memory="${RAY_OBJECT_STORE_BYTES:-104857600}" --disable-usage-stats \
  ${RAY_START_ARGS:-} >"$fifo" 2>&1 &
node=$!
exec 3<"$fifo"
rm -f "$fifo"
started=""
while IFS= read -r line <&3; do
  printf '%s\n' "$line"
  case "$line" in
    *"Ray runtime started."*) started=1 && break ;;
  esac
done
cat <&3 &
relay=$!
exec 3<&-

if [ -z "$started" ] || [ -n "$stop_requested" ]; then
  reap "$node" "$NODE_STOP_TIMEOUT_S"
  reap "$relay" 2
  if [ -n "$stop_requested" ]; then
    log "stopped ($stop_requested) while the Ray node was starting"
    exit 0
  fi
  log "the Ray node did not start (exit $status)"
  exit 1
fi

whatsapp-bridge "$@" &
api=$!

# Until the API or the node exits, or a signal arrives.
while [ -z "$stop_requested" ] && alive "$api" && alive "$node"; do
  sleep 1 &
  wait "$!" || :
done

if [ -n "$stop_requested" ]; then
  # on_signal has sent the API SIGTERM already.
  reap "$api" "$API_STOP_TIMEOUT_S"
  code=$status
  log "the API stopped ($stop_requested, exit $code); stopping the Ray node"
elif ! alive "$node"; then
  reap "$node" 0
  log "the Ray node of this container exited (exit $status): stopping the API; the container must be" \
    "restarted to join the cluster again"
  kill -TERM "$api" 2>/dev/null || :
  reap "$api" "$API_STOP_TIMEOUT_S"
  code=1
else
  reap "$api" 0
  code=$status
  log "the API exited (exit $code); stopping the Ray node"
fi

if alive "$node"; then
  kill -TERM "$node" 2>/dev/null || :
  reap "$node" "$NODE_STOP_TIMEOUT_S"
fi
reap "$relay" 2
exit "$code"
