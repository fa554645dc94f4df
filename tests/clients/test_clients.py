"""Real clients against `tidal serve`: tritonclient[http] (JSON and binary tensors) and the
kserve package's REST client (v1 and v2), on the scikit-learn fixtures, checked against the
predictions scikit-learn itself made (expected.json)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "sklearn" / "tests" / "fixtures"
TIDAL = os.environ.get("TIDAL_BIN", str(ROOT / "target" / "debug" / "tidal"))
# Every fixture: the shared ones and the generated variants (kernels, probabilities, string
# labels, pickle protocols, compressors).
CASES = sorted(p.parent.name for p in FIXTURES.glob("*/expected.json"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, name="model", env=None, ready_timeout=30):
        self.port = free_port()
        self.name = name
        self.proc = subprocess.Popen(
            [TIDAL, "serve", f"--model_name={name}", f"--model_dir={model_dir}", f"--http_port={self.port}"],
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode())
                time.sleep(0.1)
        raise RuntimeError("tidal serve did not become ready")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture(params=CASES)
def served(request):
    case = request.param
    expected = json.loads((FIXTURES / case / "expected.json").read_text())
    server = Server(FIXTURES / case, name=case.replace("-", "_"))
    yield server, expected
    server.stop()


def expected_array(expected, key="predict"):
    return np.array(expected[key])


def check_predictions(got, expected):
    want = expected_array(expected)
    if got.dtype == object:  # BYTES: string class labels
        got = np.array([g.decode() if isinstance(g, bytes) else g for g in got.ravel()]).reshape(got.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-9, atol=1e-12)
    else:
        assert got.tolist() == want.tolist()


def test_tritonclient_json_and_binary(served):
    server, expected = served
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(server.name)
    meta = client.get_model_metadata(server.name)
    assert meta["name"] == server.name and meta["platform"] == "sklearn"
    assert client.get_server_metadata()["name"] == "tidal"
    x = np.array(expected["inputs"], dtype=np.float64)
    for binary in (False, True):
        inp = triton.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton.InferRequestedOutput("output-0", binary_data=binary)
        # No Content-Type header on purpose: tritonclient sends none, and Tidal reads JSON anyway.
        result = client.infer(server.name, [inp], outputs=[out], request_id="req-7")
        assert result.get_response()["id"] == "req-7"
        check_predictions(result.as_numpy("output-0"), expected)
    if "predict_proba" in expected:
        inp = triton.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=True)
        got = client.infer(server.name, [inp], parameters={"predict_proba": True}).as_numpy("output-0")
        np.testing.assert_allclose(got, np.array(expected["predict_proba"]), rtol=1e-9, atol=1e-12)


def test_kserve_rest_client_v1_and_v2(served):
    server, expected = served
    x = np.array(expected["inputs"], dtype=np.float64)

    async def run():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=10))
        try:
            assert await v2.is_server_ready(server.url)
            for binary in (False, True):
                inp = InferInput(name="input-0", shape=list(x.shape), datatype="FP64")
                inp.set_data_from_numpy(x, binary_data=binary)
                req = InferRequest(model_name=server.name, infer_inputs=[inp], request_id="kserve-1")
                res = await v2.infer(server.url, req, model_name=server.name)
                assert res.id == "kserve-1"
                check_predictions(res.outputs[0].as_numpy(), expected)
        finally:
            await v2.close()
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=1, timeout=10))
        try:
            res = await v1.infer(server.url, {"instances": expected["inputs"]}, model_name=server.name)
            check_predictions(np.array(res["predictions"]), expected)
        finally:
            await v1.close()

    asyncio.run(run())


def test_predict_proba_switch():
    case = "iris-logreg"
    expected = json.loads((FIXTURES / case / "expected.json").read_text())
    server = Server(FIXTURES / case, name="proba", env={"PREDICT_PROBA": "true"})
    try:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        x = np.array(expected["inputs"], dtype=np.float64)
        inp = triton.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=True)
        got = client.infer("proba", [inp]).as_numpy("output-0")
        np.testing.assert_allclose(got, np.array(expected["predict_proba"]), rtol=1e-9, atol=1e-12)
    finally:
        server.stop()


def test_errors_reach_the_client_with_their_message():
    server = Server(FIXTURES / "iris-svc", name="iris")
    try:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        inp = triton.InferInput("input-0", [1, 3], "FP64")
        inp.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]]))
        with pytest.raises(triton.InferenceServerException) as e:
            client.infer("iris", [inp])
        assert "X has 3 features, but SVC is expecting 4 features as input." in str(e.value)
        with pytest.raises(triton.InferenceServerException) as e:
            client.infer("nope", [inp])
        assert "Model with name nope does not exist." in str(e.value)
    finally:
        server.stop()
