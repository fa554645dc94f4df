#!/usr/bin/env bash
# LLM benchmark: Tidal vs llama.cpp on the same GGUF (SmolLM2-135M-Instruct Q4_1), in one run.
#  1. Tidal (`tidal serve`, OpenAI-compatible /openai/v1/completions, SSE streaming): decode tok/s
#     of 1 stream, aggregate decode tok/s of 8 concurrent streams (goal: >= 4x the single stream),
#     and time to first token (p50, p90). Decode rates count the tokens received while all the
#     streams decode together (from the last stream's first token to the first stream's last),
#     over that time: for 1 stream, its tokens after the first over first-to-last. The prefill
#     shows in TTFT, and the end-to-end column (all tokens over the time from the first request
#     sent) includes it. Single streams and rounds of 8 alternate, so that the shared machine's
#     drift moves both sides of the ratio alike.
#  2. llama.cpp through the PyPI package llama-cpp-python (built from source by pip, native CPU
#     flags), in-process with its streaming API, n_threads=2: single-stream decode tok/s and TTFT,
#     and the ratio Tidal / llama.cpp single stream (goal: >= 0.8x).
# Every request asks for exactly MAX_TOKENS tokens (temperature 0; ignore_eos on Tidal, a logits
# processor masking the end-of-generation tokens for llama.cpp); the token counts are checked.
# The two engines run one after the other, never at the same time.
#
#   bash bench/llm.sh                       # full run
#   REPS=3 REPS_CONCURRENT=2 bash bench/llm.sh
#   SKIP_TIDAL=1 bash bench/llm.sh          # only the llama.cpp half (no cargo build)
#   SKIP_LLAMACPP=1 bash bench/llm.sh       # only the Tidal half
#
# Knobs: MAX_TOKENS (128), STREAMS (8), REPS (5 single-stream requests), REPS_CONCURRENT (5 rounds
# of STREAMS), LLAMA_THREADS (2), N_CTX (2048), READY_TIMEOUT (180 s), GGUF (a .gguf path; default:
# scripts/fetch-models), LLAMA_CPP_PYTHON (pip requirement, default llama-cpp-python==0.3.36),
# CMAKE_ARGS (default -DGGML_NATIVE=ON).
#
# Installs what it needs: cmake, ninja and g++ (Debian, for pip's source build of llama.cpp), one
# Python virtual environment /var/tmp/tidal-bench-llm (kept between runs; the first
# llama-cpp-python build takes 5-15 minutes on 2 cores), and a release build of tidal.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_TOKENS=${MAX_TOKENS:-128}
STREAMS=${STREAMS:-8}
REPS=${REPS:-5}
REPS_CONCURRENT=${REPS_CONCURRENT:-5}
LLAMA_THREADS=${LLAMA_THREADS:-2}
N_CTX=${N_CTX:-2048}
READY_TIMEOUT=${READY_TIMEOUT:-180}
PORT=${PORT:-18681}
VENV=/var/tmp/tidal-bench-llm
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=ON}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tidal-target}
WORK=$(mktemp -d /tmp/tidal-llmbench.XXXXXX)
RESULTS=$WORK/results.tsv
: >"$RESULTS"
TIDAL_PID=""
stop_tidal() {
  if [ -n "$TIDAL_PID" ]; then
    kill "$TIDAL_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$TIDAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$TIDAL_PID" 2>/dev/null || true
    wait "$TIDAL_PID" 2>/dev/null || true
    TIDAL_PID=""
  fi
}
cleanup() { stop_tidal; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Both engines spin their worker threads on every core they were given: anything else running
# (a cargo build) makes the numbers meaningless, llama.cpp's OpenMP threads worst of all.
awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {exit !(l > 0.5)}' &&
  echo "   WARNING: the machine is busy (1-minute load $(cut -d' ' -f1 /proc/loadavg)); expect noisy, low numbers" >&2

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
GGUF=${GGUF:-$(bash scripts/fetch-models)}
[ -s "$GGUF" ] || { echo "no GGUF file at $GGUF" >&2; exit 1; }
echo "== model: $GGUF ($(du -h "$GGUF" | cut -f1))"

if [ -z "${SKIP_LLAMACPP:-}" ]; then
  echo "== preparing llama-cpp-python (venv $VENV)"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    need cmake cmake
    need ninja ninja-build
    need g++ g++
    echo "   building llama.cpp from source with CMAKE_ARGS=$CMAKE_ARGS (takes minutes)"
    start=$(date +%s)
    "$VENV/bin/pip" install -q --disable-pip-version-check "$LLAMA_CPP_PYTHON"
    echo "   built in $(($(date +%s) - start)) s"
  fi
fi

if [ -z "${SKIP_TIDAL:-}" ]; then
  echo "== building tidal (release)"
  cargo build --release -q -p tidal
  TIDAL=$CARGO_TARGET_DIR/release/tidal
  # The Tidal client needs only the standard library; prefer the bench venv, else any python3.
  PY=python3; [ -x "$VENV/bin/python" ] && PY=$VENV/bin/python

  echo "== starting tidal serve on :$PORT"
  "$TIDAL" serve --model_name=smollm2 --model_dir="$(dirname "$GGUF")" --http_port="$PORT" \
    --max_num_seqs="$STREAMS" >"$WORK/tidal.log" 2>&1 &
  TIDAL_PID=$!
  start=$(date +%s)
  until curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1; do
    if ! kill -0 "$TIDAL_PID" 2>/dev/null; then
      echo "tidal exited before becoming ready; its log:" >&2; tail -n 40 "$WORK/tidal.log" >&2; exit 1
    fi
    if [ $(($(date +%s) - start)) -ge "$READY_TIMEOUT" ]; then
      echo "tidal not ready after $READY_TIMEOUT s; its log:" >&2; tail -n 40 "$WORK/tidal.log" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "   ready in $(($(date +%s) - start)) s; models: $(curl -s "http://127.0.0.1:$PORT/openai/v1/models" | head -c 300)"
  if ! "$PY" bench/llm_client.py tidal --url "http://127.0.0.1:$PORT" --model smollm2 --out "$RESULTS" \
      --max-tokens "$MAX_TOKENS" --streams "$STREAMS" --reps "$REPS" --reps-concurrent "$REPS_CONCURRENT"; then
    echo "the Tidal run failed; the server log's tail:" >&2; tail -n 40 "$WORK/tidal.log" >&2; exit 1
  fi
  stop_tidal # free the cores before llama.cpp runs
fi

if [ -z "${SKIP_LLAMACPP:-}" ]; then
  "$VENV/bin/python" bench/llm_client.py llamacpp --gguf "$GGUF" --out "$RESULTS" \
    --max-tokens "$MAX_TOKENS" --reps "$REPS" --threads "$LLAMA_THREADS" --ctx "$N_CTX"
fi

echo
echo "| engine | streams | decode tok/s | end-to-end tok/s | per-stream decode tok/s | TTFT p50 ms | TTFT p90 ms | tokens/stream | requests |"
echo "|---|---|---|---|---|---|---|---|---|"
while IFS=$'\t' read -r engine streams decode e2e per ttft50 ttft90 tmin tmax n; do
  [ "$streams" -gt 1 ] && decode="$decode (aggregate)"
  toks=$tmin; [ "$tmin" != "$tmax" ] && toks="$tmin-$tmax"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$engine" "$streams" "$decode" "$e2e" "$per" "$ttft50" "$ttft90" "$toks" "$n"
done <"$RESULTS"
echo
val() { awk -F'\t' -v e="$1" -v s="$2" '$1 == e && $2 == s {print $3}' "$RESULTS"; }
T1=$(val tidal 1); TN=$(val tidal "$STREAMS"); L1=$(val llama.cpp 1)
if [ -n "$T1" ] && [ -n "$TN" ]; then
  awk -v a="$TN" -v b="$T1" -v n="$STREAMS" 'BEGIN {r = a / b; printf "Tidal %s-stream aggregate / 1-stream decode: %.2fx (goal >= 4x) %s\n", n, r, (r >= 4 ? "PASS" : "MISS")}'
  e2e() { awk -F'\t' -v e="$1" -v s="$2" '$1 == e && $2 == s {print $4}' "$RESULTS"; }
  awk -v a="$(e2e tidal "$STREAMS")" -v b="$(e2e tidal 1)" -v n="$STREAMS" 'BEGIN {printf "Tidal %s-stream / 1-stream end to end (prefill included): %.2fx\n", n, a / b}'
fi
if [ -n "$T1" ] && [ -n "$L1" ]; then
  awk -v a="$T1" -v b="$L1" 'BEGIN {r = a / b; printf "Tidal / llama.cpp single-stream decode: %.2fx (goal >= 0.8x) %s\n", r, (r >= 0.8 ? "PASS" : "MISS")}'
fi
echo "machine: $(nproc) cores, shared by the server and the client; llama.cpp: $("$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)' 2>/dev/null || echo "not run"), n_threads=$LLAMA_THREADS, n_ctx=$N_CTX, in-process (no HTTP); max_tokens=$MAX_TOKENS, temperature 0."
