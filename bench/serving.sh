#!/usr/bin/env bash
# Serving benchmark: Tidal vs KServe's Python ModelServer vs MLServer (+ mlserver-sklearn), all
# serving the same scikit-learn joblib model over the Open Inference Protocol v2, measured in one
# run with `hey` at concurrency 8 and 64 (10 s each by default). Prints req/s, p50, p99 and the
# ratios against Tidal.
#
#   bash bench/serving.sh                 # full run
#   DURATION=3s bash bench/serving.sh     # quicker
#
# Installs what it needs: hey (Debian), two Python virtual environments under /var/tmp (kept
# between runs), and a release build of tidal.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
MODEL_DIR=${MODEL_DIR:-$ROOT/crates/sklearn/tests/fixtures/iris-svc}
WORK=$(mktemp -d /tmp/tidal-bench.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tidal-target}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey >/dev/null; }

venv() { # venv DIR PACKAGES...
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    python3 -m venv "$dir"
  fi
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
}
echo "== preparing peers (pip, cached under /var/tmp)"
venv /var/tmp/tidal-bench-kserve kserve scikit-learn joblib
venv /var/tmp/tidal-bench-mlserver mlserver mlserver-sklearn scikit-learn joblib
echo "== building tidal (release)"
cargo build --release -q -p tidal
TIDAL=$CARGO_TARGET_DIR/release/tidal

wait_ready() { # wait_ready URL
  for _ in $(seq 1 150); do
    if curl -sf "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "server at $1 did not become ready" >&2; return 1
}

MODEL_FILE=$( (ls "$MODEL_DIR"/*.joblib "$MODEL_DIR"/*.pkl 2>/dev/null || true) | head -1)
cat > "$WORK/kserve_server.py" <<PY
# KServe's own ModelServer with a minimal sklearn model (the sklearnserver package is not on PyPI).
import uuid
import joblib, kserve, numpy as np
from kserve import Model, ModelServer, InferResponse, InferOutput

class SKLearn(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.model = joblib.load(path)
        self.ready = True
    def predict(self, payload, headers=None):
        x = payload.inputs[0].as_numpy()
        y = self.model.predict(x)
        out = InferOutput(name="output-0", shape=list(y.shape), datatype="INT64")
        out.set_data_from_numpy(y.astype(np.int64))
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id or str(uuid.uuid4()))

if __name__ == "__main__":
    ModelServer(http_port=18181, grpc_port=18182, enable_grpc=False).start([SKLearn("iris", "$MODEL_FILE")])
PY
mkdir -p "$WORK/mlserver/iris"
cp "$MODEL_FILE" "$WORK/mlserver/iris/model.joblib"
echo '{"host":"127.0.0.1","http_port":18281,"grpc_port":18282,"metrics_port":18283,"parallel_workers":0}' > "$WORK/mlserver/settings.json"
echo '{"name":"iris","implementation":"mlserver_sklearn.SKLearnModel","parameters":{"uri":"./model.joblib"}}' > "$WORK/mlserver/iris/model-settings.json"

echo "== starting servers"
"$TIDAL" serve --model_name iris --model_dir "$MODEL_DIR" --http_port 18081 >"$WORK/tidal.log" 2>&1 & PIDS+=($!)
/var/tmp/tidal-bench-kserve/bin/python "$WORK/kserve_server.py" >"$WORK/kserve.log" 2>&1 & PIDS+=($!)
(cd "$WORK/mlserver" && exec /var/tmp/tidal-bench-mlserver/bin/mlserver start .) >"$WORK/mlserver.log" 2>&1 & PIDS+=($!)
wait_ready http://127.0.0.1:18081/v2/models/iris/ready
wait_ready http://127.0.0.1:18181/v2/models/iris/ready
wait_ready http://127.0.0.1:18281/v2/models/iris/ready

BODY='{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[[6.8,2.8,4.8,1.4]]}]}'
for port in 18081 18181 18281; do
  out=$(curl -s -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$port/v2/models/iris/infer")
  echo "  :$port -> $out"
  grep -q '"outputs"' <<<"$out" || { echo "the server on :$port did not answer the smoke request" >&2; exit 1; }
done

declare -A RPS P50 P99 ERR
run() { # run NAME PORT CONCURRENCY
  local out
  out=$(hey -z "$DURATION" -c "$3" -m POST -T application/json -d "$BODY" "http://127.0.0.1:$2/v2/models/iris/infer")
  RPS[$1,$3]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  P50[$1,$3]=$(awk '/ 50% in/ {printf "%.2f", $3*1000}' <<<"$out")
  P99[$1,$3]=$(awk '/ 99% in/ {printf "%.2f", $3*1000}' <<<"$out")
  ERR[$1,$3]=$(awk '/^  \[/ && $1 != "[200]" {n += $2} END {print n+0}' <<<"$out")
}
for c in 8 64; do
  for s in tidal:18081 kserve:18181 mlserver:18281; do
    echo "== hey -z $DURATION -c $c  ${s%%:*}"
    run "${s%%:*}" "${s##*:}" "$c"
    sleep 1
  done
done

echo
echo "| server | concurrency | req/s | p50 ms | p99 ms | non-200 | Tidal req/s ÷ server req/s |"
echo "|---|---|---|---|---|---|---|"
for c in 8 64; do
  for s in tidal kserve mlserver; do
    ratio=$(awk -v a="${RPS[tidal,$c]}" -v b="${RPS[$s,$c]}" 'BEGIN {printf "%.1fx", a/b}')
    printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$s" "$c" "${RPS[$s,$c]}" "${P50[$s,$c]}" "${P99[$s,$c]}" "${ERR[$s,$c]}" "$ratio"
  done
done
echo
echo "machine: $(nproc) cores; hey and the server share them. model: $(basename "$MODEL_DIR")"
