"""Measurement half of bench/llm.sh: streams completions and times every token.

    python bench/llm_client.py tidal --url http://127.0.0.1:18681 --model smollm2 --out FILE
    python bench/llm_client.py llamacpp --gguf PATH --out FILE

Both subcommands append one tab-separated line per measured configuration to --out:

    engine  streams  decode_tok_s  end_to_end_tok_s  per_stream_decode_tok_s  ttft_p50_ms  ttft_p90_ms
    tokens_min  tokens_max  samples

decode_tok_s is the median over repetitions of the steady decode rate: the tokens received while
all N streams are decoding together (from the last stream's first token to the first stream's
last token), over that time; for one stream, its tokens after the first over (last - first). The prefill is
left out of it for one stream and for N alike, and so is any step in which only some of the N
streams decode: when the requests reach the server a few milliseconds apart, the first ones are
prefilled alone and the others in the next step, and a window from the first stream's first token
would count that later prefill as decoding time. The prefill is measured as TTFT (from the moment
the request is sent to the first non-empty token), and end_to_end_tok_s (all tokens / time from
the first request sent to the last token received) includes everything.

The Tidal half needs only the standard library (http.client + threads), so it can run from any
Python 3.8+. The llama.cpp half needs the PyPI package llama-cpp-python.

Each request's prompt starts with a distinct request number so that a prefix cache (llama.cpp's
reuse of the previous prompt's KV cache, or one in Tidal) cannot skip the prefill: every TTFT is a
cold prefill of the whole prompt.
"""

import argparse
import http.client
import json
import math
import statistics
import sys
import threading
import time
import urllib.parse

PROMPT = (
    "The following is a detailed, step-by-step explanation of how a lighthouse keeper in the "
    "nineteenth century maintained the lamp, kept the logbook, and signalled to passing ships "
    "during a storm that lasted three days and three nights.\n\n"
    "Chapter 1.\n"
)

_counter = 0
_counter_lock = threading.Lock()


def next_prompt():
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    return f"[{n}] {PROMPT}"


def percentile(xs, q):
    """Linear-interpolation percentile (q in 0..100), like numpy's default."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Sample:
    """Timings of one streamed request (seconds, time.perf_counter())."""

    __slots__ = ("sent", "times", "tokens", "error")

    def __init__(self):
        self.sent = None
        self.times = []  # arrival of each non-empty content chunk
        self.tokens = 0
        self.error = None

    @property
    def chunks(self):
        return len(self.times)

    @property
    def first(self):
        return self.times[0] if self.times else None

    @property
    def last(self):
        return self.times[-1] if self.times else None

    @property
    def ttft(self):
        return self.first - self.sent

    @property
    def decode_tps(self):
        span = self.last - self.first
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else float("nan")


def decode_rate(samples):
    """Aggregate decode rate while all the streams decode together (see the module docs).

    Chunks are counted as tokens scaled by each stream's tokens / chunks (a token that ends inside
    a UTF-8 character arrives with the next one)."""
    start = max(s.first for s in samples)
    end = min(s.last for s in samples)
    if end <= start:
        return float("nan")
    decoded = sum(
        sum(1 for t in s.times if start < t <= end) * s.tokens / s.chunks for s in samples
    )
    return decoded / (end - start)


def end_to_end_rate(samples):
    """All tokens over the time from the first request sent to the last token."""
    wall = max(s.last for s in samples) - min(s.sent for s in samples)
    return sum(s.tokens for s in samples) / wall if wall > 0 else float("nan")


def emit(out, engine, streams, decode, end_to_end, per_stream, ttfts, tokens, samples):
    line = "\t".join(
        [
            engine,
            str(streams),
            f"{decode:.1f}",
            f"{end_to_end:.1f}",
            f"{per_stream:.1f}",
            f"{percentile(ttfts, 50) * 1000:.1f}",
            f"{percentile(ttfts, 90) * 1000:.1f}",
            str(min(tokens)),
            str(max(tokens)),
            str(samples),
        ]
    )
    print("  result:", line.replace("\t", " | "), flush=True)
    with open(out, "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------------------------------------
# Tidal (any OpenAI-compatible server) over HTTP + SSE


def stream_request(url, body, timeout):
    """POST a streaming completion and time each content chunk. Returns a Sample."""
    s = Sample()
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    payload = json.dumps(body).encode()
    usage_tokens = None
    try:
        conn.connect()
        s.sent = time.perf_counter()
        conn.request(
            "POST",
            u.path,
            body=payload,
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        resp = conn.getresponse()
        if resp.status != 200:
            s.error = f"HTTP {resp.status}: {resp.read(500).decode(errors='replace')}"
            return s
        while True:
            line = resp.readline()
            if not line:
                break
            now = time.perf_counter()
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            if ev.get("error"):
                s.error = json.dumps(ev["error"])[:500]
                break
            if ev.get("usage") and ev["usage"].get("completion_tokens") is not None:
                usage_tokens = ev["usage"]["completion_tokens"]
            for ch in ev.get("choices") or []:
                text = ch.get("text")
                if text is None:
                    text = (ch.get("delta") or {}).get("content")
                if text:
                    s.times.append(now)
    except Exception as e:  # noqa: BLE001 - reported, not raised, so one bad stream is visible
        s.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    s.tokens = usage_tokens if usage_tokens is not None else s.chunks
    if s.error is None and s.first is None:
        s.error = "no content chunk received"
    return s


def concurrent_round(url, make_body, n, timeout):
    """Fires n streams at once (threads released by a barrier). Returns (samples, wall seconds)."""
    samples = [None] * n
    barrier = threading.Barrier(n)

    def worker(i):
        body = make_body()
        barrier.wait()
        samples[i] = stream_request(url, body, timeout)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [s.error for s in samples if s.error]
    if errors:
        raise SystemExit(f"{len(errors)}/{n} streams failed; first error: {errors[0]}")
    wall = max(s.last for s in samples) - min(s.sent for s in samples)
    return samples, wall


def check_tokens(samples, max_tokens, engine):
    bad = [s.tokens for s in samples if s.tokens != max_tokens]
    if bad:
        print(
            f"  WARNING: {engine}: {len(bad)}/{len(samples)} streams generated {sorted(set(bad))} "
            f"tokens, not {max_tokens} (ignore_eos not honoured?)",
            file=sys.stderr,
            flush=True,
        )


def cmd_tidal(a):
    url = a.url.rstrip("/") + a.path

    def body(max_tokens=a.max_tokens):
        return {
            "model": a.model,
            "prompt": next_prompt(),
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    print(f"== tidal: warm-up ({a.warmup} single + 1 round of {a.streams})", flush=True)
    for _ in range(a.warmup):
        s = stream_request(url, body(16), a.timeout)
        if s.error:
            raise SystemExit(f"warm-up request failed: {s.error}")
    concurrent_round(url, lambda: body(16), a.streams, a.timeout)

    # Single streams and rounds of N alternate, so that a drift in the shared machine's speed
    # moves both sides of the ratio alike instead of landing on one of them.
    print(
        f"== tidal: 1 stream x {a.reps} reps alternating with {a.streams} concurrent streams x "
        f"{a.reps_concurrent} reps, max_tokens={a.max_tokens}",
        flush=True,
    )
    singles, decodes, e2es, all_samples = [], [], [], []
    for r in range(max(a.reps, a.reps_concurrent)):
        if r < a.reps:
            s = stream_request(url, body(), a.timeout)
            if s.error:
                raise SystemExit(f"request failed: {s.error}")
            print(f"  1 stream, rep {r + 1}: {s.tokens} tokens, TTFT {s.ttft * 1000:.1f} ms, decode {s.decode_tps:.1f} tok/s", flush=True)
            singles.append(s)
        if r < a.reps_concurrent:
            samples, wall = concurrent_round(url, body, a.streams, a.timeout)
            total = sum(s.tokens for s in samples)
            decodes.append(decode_rate(samples))
            e2es.append(end_to_end_rate(samples))
            all_samples += samples
            print(
                f"  {a.streams} streams, rep {r + 1}: {total} tokens in {wall:.2f} s = {total / wall:.1f} tok/s end to end, "
                f"{decodes[-1]:.1f} tok/s decoding; TTFT max {max(s.ttft for s in samples) * 1000:.0f} ms, "
                f"first tokens within {(max(s.first for s in samples) - min(s.first for s in samples)) * 1000:.0f} ms",
                flush=True,
            )
    check_tokens(singles, a.max_tokens, "tidal")
    decode = statistics.median(s.decode_tps for s in singles)
    e2e = statistics.median(end_to_end_rate([s]) for s in singles)
    emit(a.out, "tidal", 1, decode, e2e, decode, [s.ttft for s in singles], [s.tokens for s in singles], len(singles))

    check_tokens(all_samples, a.max_tokens, "tidal")
    # A round whose streams never all decode at once (more streams than the server batches, or
    # very short generations) has no steady window: report it rather than average a NaN.
    steady = [d for d in decodes if not math.isnan(d)]
    if len(steady) < len(decodes):
        print(
            f"  WARNING: {len(decodes) - len(steady)}/{len(decodes)} rounds never had all {a.streams} "
            "streams decoding at once (is --max_num_seqs below --streams?)",
            file=sys.stderr,
            flush=True,
        )
    if not steady:
        raise SystemExit("no round had all streams decoding together; no decode rate to report")
    decodes = steady
    emit(
        a.out,
        "tidal",
        a.streams,
        statistics.median(decodes),
        statistics.median(e2es),
        statistics.median(s.decode_tps for s in all_samples),
        [s.ttft for s in all_samples],
        [s.tokens for s in all_samples],
        len(all_samples),
    )


# ---------------------------------------------------------------------------------------------
# llama.cpp in-process via llama-cpp-python


def cmd_llamacpp(a):
    import llama_cpp
    from llama_cpp import Llama

    print(f"== llama.cpp: llama-cpp-python {llama_cpp.__version__}, n_threads={a.threads}, n_ctx={a.ctx}", flush=True)
    llm = Llama(
        model_path=a.gguf,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        n_ctx=a.ctx,
        verbose=False,
    )
    # ignore_eos: llama-cpp-python has no such flag, so every end-of-generation token (it stops on
    # any of them, not only on token_eos()) gets a -inf logit in a logits processor, which also
    # counts the sampled tokens. (Not create_completion's logit_bias: in 0.3.x, passing it together
    # with logits_processor drops both, as it assigns the result of list.extend, None.)
    n_vocab = llm.n_vocab()
    eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t)]
    print(f"  vocab {n_vocab}, end-of-generation tokens {eog} masked", flush=True)

    def run(max_tokens):
        llm.reset()  # no KV-cache reuse from the previous request: a full prefill every time
        s = Sample()
        count = [0]

        def no_eos(input_ids, scores):  # called once per sampled token, scores indexed by id
            count[0] += 1
            scores[eog] = -math.inf
            return scores

        s.sent = time.perf_counter()
        for chunk in llm.create_completion(
            next_prompt(),
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            logits_processor=llama_cpp.LogitsProcessorList([no_eos]),
        ):
            now = time.perf_counter()
            if chunk["choices"][0]["text"]:
                s.times.append(now)
        s.tokens = count[0]
        if not s.times:
            raise SystemExit("llama.cpp produced no text for a request")
        return s

    print(f"== llama.cpp: warm-up ({a.warmup})", flush=True)
    for _ in range(a.warmup):
        run(16)
    print(f"== llama.cpp: 1 stream x {a.reps} reps, max_tokens={a.max_tokens}", flush=True)
    singles = []
    for r in range(a.reps):
        s = run(a.max_tokens)
        print(
            f"  rep {r + 1}: {s.tokens} tokens ({s.chunks} text chunks), TTFT {s.ttft * 1000:.1f} ms, "
            f"decode {s.decode_tps:.1f} tok/s",
            flush=True,
        )
        singles.append(s)
    check_tokens(singles, a.max_tokens, "llama.cpp")
    decode = statistics.median(s.decode_tps for s in singles)
    e2e = statistics.median(end_to_end_rate([s]) for s in singles)
    emit(a.out, "llama.cpp", 1, decode, e2e, decode, [s.ttft for s in singles], [s.tokens for s in singles], len(singles))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tidal", "llamacpp"):
        q = sub.add_parser(name)
        q.add_argument("--out", required=True, help="results file (TSV lines are appended)")
        q.add_argument("--max-tokens", type=int, default=128)
        q.add_argument("--reps", type=int, default=5, help="single-stream repetitions")
        q.add_argument("--warmup", type=int, default=2)
        if name == "tidal":
            q.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:18681")
            q.add_argument("--path", default="/openai/v1/completions")
            q.add_argument("--model", default="smollm2")
            q.add_argument("--streams", type=int, default=8)
            q.add_argument("--reps-concurrent", type=int, default=5)
            q.add_argument("--timeout", type=float, default=300.0)
        else:
            q.add_argument("--gguf", required=True)
            q.add_argument("--threads", type=int, default=2)
            q.add_argument("--ctx", type=int, default=2048)
    a = p.parse_args()
    {"tidal": cmd_tidal, "llamacpp": cmd_llamacpp}[a.cmd](a)


if __name__ == "__main__":
    main()
