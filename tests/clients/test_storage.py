"""`tidal serve --storage_uri`: models fetched over http:// and from an S3-compatible store
(moto's server, a real S3 API on loopback), and a clear error when storage is unreachable."""

import functools
import http.server
import json
import os
import socket
import subprocess
import threading
import time

import boto3
import numpy as np
import pytest
import tritonclient.http as triton

from test_clients import FIXTURES, TIDAL, free_port, Server


def predict(server, case):
    expected = json.loads((FIXTURES / case / "expected.json").read_text())
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    x = np.array(expected["inputs"], dtype=np.float64)
    inp = triton.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    got = client.infer(server.name, [inp]).as_numpy("output-0")
    assert got.tolist() == expected["predict"]


class StorageServer(Server):
    """`tidal serve` with --storage_uri instead of --model_dir."""

    def __init__(self, uri, tmp_path, env=None):
        self.port = free_port()
        self.name = "model"
        self.proc = subprocess.Popen(
            [TIDAL, "serve", "--model_name=model", f"--storage_uri={uri}", f"--model_dir={tmp_path}", f"--http_port={self.port}"],
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode())
                time.sleep(0.1)
        raise RuntimeError("tidal serve did not start")


def test_http_storage(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FIXTURES / "iris-svc"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = StorageServer(f"http://127.0.0.1:{httpd.server_address[1]}/model.joblib", tmp_path / "dl")
        try:
            predict(server, "iris-svc")
        finally:
            server.stop()
    finally:
        httpd.shutdown()


def test_s3_storage(tmp_path):
    port = free_port()
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT": endpoint}
        deadline = time.time() + 30
        while True:
            try:
                s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
                s3.create_bucket(Bucket="models")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        s3.upload_file(str(FIXTURES / "iris-logreg" / "model.joblib"), "models", "sklearn/iris/model.joblib")
        server = StorageServer("s3://models/sklearn/iris", tmp_path / "dl", env=env)
        try:
            predict(server, "iris-logreg")
        finally:
            server.stop()
    finally:
        moto.terminate()
        moto.wait()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9/model.joblib", "s3://models/none", "ftp://host/model"])
def test_unreachable_storage_fails_fast_with_a_clear_error(tmp_path, uri):
    env = {"S3_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    started = time.time()
    proc = subprocess.run(
        [TIDAL, "serve", f"--storage_uri={uri}", f"--model_dir={tmp_path}", f"--http_port={free_port()}"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert uri.split("/")[0] in proc.stderr or "not supported" in proc.stderr, proc.stderr
    assert "cannot download" in proc.stderr or "not supported" in proc.stderr, proc.stderr
    assert time.time() - started < 60
