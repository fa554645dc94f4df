#!/usr/bin/env bash
# Gateway and autoscaler benchmark, in one run:
#  1. throughput and p99 of the same replica called directly, through Tidal's gateway (Host
#     routing), and through nginx configured as a reverse proxy to it (hey, 10 s each at
#     concurrency 8 and 64), with the ratios gateway/direct and gateway/nginx;
#  2. the time from a load step to the scale decision and to the extra replica being Ready.
#
#   bash bench/gateway.sh              # DURATION=10s by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
WORK=$(mktemp -d /tmp/tidal-gwbench.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tidal-target}
API=18501; GW=18580; NGINX=18590
export TIDAL_SERVER=http://127.0.0.1:$API
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need hey hey
need nginx nginx
echo "== building tidal (release)"
cargo build --release -q -p tidal
T=$CARGO_TARGET_DIR/release/tidal

"$T" up --data-dir "$WORK/data" --listen 127.0.0.1:$API --gateway-listen 127.0.0.1:$GW >"$WORK/up.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "$TIDAL_SERVER/healthz" >/dev/null && break; sleep 0.1; done

ready_pods() { "$T" get pods -o json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["items"] if p["status"].get("conditions",[{}])[0].get("status")=="True"))'; }

# 1. A fixed single replica (autoscalerClass none) for the proxy comparison.
sed "s|gs://kfserving-examples/models/sklearn/1.0/model|$ROOT/examples/models/sklearn-iris|; s|autoscalerClass: \"keda\"|autoscalerClass: \"none\"|" examples/seed/sklearn-v2-iris.yaml > "$WORK/fixed.yaml"
"$T" apply -f "$WORK/fixed.yaml" >/dev/null
for _ in $(seq 1 300); do [ "$(ready_pods)" = 1 ] && break; sleep 0.1; done
PORT=$("$T" get pods -o jsonpath='{.items[0].metadata.annotations.tidal\.dev/port}')
HOST=$("$T" get isvc sklearn-v2-iris -o jsonpath='{.status.url}' | cut -d/ -f3)
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  upstream replica { server 127.0.0.1:$PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://replica; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
nginx -c "$WORK/nginx.conf"
BODY='{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[[6.8,2.8,4.8,1.4]]}]}'
URL_PATH=/v2/models/sklearn-v2-iris/infer
declare -A RPS P99 ERR
run() { # run NAME CONCURRENCY URL [HOST]
  local out args=(-z "$DURATION" -c "$2" -m POST -T application/json -d "$BODY")
  [ -n "${4:-}" ] && args+=(-host "$4")
  out=$(hey "${args[@]}" "$3")
  RPS[$1,$2]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  P99[$1,$2]=$(awk '/ 99% in/ {printf "%.2f", $3*1000}' <<<"$out")
  ERR[$1,$2]=$(awk '/^  \[/ && $1 != "[200]" {n += $2} END {print n+0}' <<<"$out")
}
for c in 8 64; do
  echo "== concurrency $c"
  run direct "$c" "http://127.0.0.1:$PORT$URL_PATH"; sleep 1
  run gateway "$c" "http://127.0.0.1:$GW$URL_PATH" "$HOST"; sleep 1
  run nginx "$c" "http://127.0.0.1:$NGINX$URL_PATH"; sleep 1
done
echo
echo "| path | concurrency | req/s | p99 ms | non-200 |"
echo "|---|---|---|---|---|"
for c in 8 64; do for s in direct gateway nginx; do
  printf '| %s | %s | %.0f | %s | %s |\n' "$s" "$c" "${RPS[$s,$c]}" "${P99[$s,$c]}" "${ERR[$s,$c]}"
done; done
for c in 8 64; do
  awk -v g="${RPS[gateway,$c]}" -v d="${RPS[direct,$c]}" -v n="${RPS[nginx,$c]}" -v c="$c" \
    'BEGIN {printf "concurrency %s: gateway/direct %.2f, gateway/nginx %.2fx\n", c, g/d, g/n}'
done
"$T" delete -f "$WORK/fixed.yaml" >/dev/null
sleep 2

# 2. Reaction time: the seed (keda, cpu 50%), one replica, then a load step.
sed "s|gs://kfserving-examples/models/sklearn/1.0/model|$ROOT/examples/models/sklearn-iris|" examples/seed/sklearn-v2-iris.yaml > "$WORK/keda.yaml"
"$T" apply -f "$WORK/keda.yaml" >/dev/null
for _ in $(seq 1 300); do [ "$(ready_pods)" = 1 ] && break; sleep 0.1; done
sleep 2
# A batch of 256 rows per request, so the replicas (not the gateway) do most of the work.
ROWS=$(python3 -c 'print(",".join(["[6.8,2.8,4.8,1.4]"] * 256))')
BIG="{\"inputs\":[{\"name\":\"input-0\",\"shape\":[256,4],\"datatype\":\"FP32\",\"data\":[$ROWS]}]}"
hey -z 20s -c 16 -m POST -T application/json -d "$BIG" -host "$HOST" "http://127.0.0.1:$GW$URL_PATH" >"$WORK/step.out" & LOAD=$!
START=$(date +%s.%N); DECIDED=""; READY=""
while [ -z "$READY" ]; do
  now=$(date +%s.%N)
  if [ -z "$DECIDED" ] && [ "$("$T" get deploy sklearn-v2-iris-predictor -o jsonpath='{.spec.replicas}')" -ge 2 ]; then DECIDED=$now; fi
  if [ -n "$DECIDED" ] && [ "$(ready_pods)" -ge 2 ]; then READY=$(date +%s.%N); fi
  awk -v n="$now" -v s="$START" 'BEGIN {exit !(n - s > 30)}' && break
  sleep 0.05
done
wait $LOAD || true
echo
if [ -n "$READY" ]; then
  awk -v s="$START" -v d="$DECIDED" -v r="$READY" 'BEGIN {printf "load step -> scale decision: %.2f s (goal <= 1 s); -> extra replica Ready: %.2f s (goal <= 3 s)\n", d - s, r - s}'
else
  echo "no scale-out within 30 s"
fi
echo "KEDA polls every 30 s and the HPA syncs every 15 s by default; machine: $(nproc) cores shared by hey, the gateway and the replicas."
