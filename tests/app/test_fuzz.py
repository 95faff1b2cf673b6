"""Property-based tests: throw malformed requests at the real server; never a 5xx, always the right 4xx."""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelship_contract.manifest import Datatype
from tests.app.modelserver_process import RunningServer

INFER = "/v2/models/digits/infer"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)
numbers = st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False)


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def tensor(**overrides) -> dict:
    base = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
    base.update(overrides)
    return {"inputs": [base]}


def assert_client_error(response: httpx.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert isinstance(message, str) and message


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_5xx(http: httpx.Client, body: bytes) -> None:
    response = http.post(INFER, content=body)
    assert_client_error(response)


@FUZZ
@given(payload=json_values)
def test_arbitrary_json_documents_get_400(http: httpx.Client, payload: object) -> None:
    assert_client_error(http.post(INFER, content=json.dumps(payload)))


@FUZZ
@given(field=st.sampled_from(["name", "shape", "datatype", "data", "parameters"]), value=json_values)
def test_any_field_replaced_by_junk(http: httpx.Client, field: str, value: object) -> None:
    body = tensor(**{field: value})
    valid = {
        "name": value == "input",
        "shape": isinstance(value, list) and value == [1, 64],
        "datatype": value == "FP32",
        "data": False,  # json_values never produces 64 numbers
        "parameters": True,  # tensor parameters are accepted and ignored
    }[field]
    response = http.post(INFER, json=body)
    if valid:
        assert response.status_code == 200, response.text
    else:
        assert_client_error(response)


@FUZZ
@given(
    shape=st.lists(st.integers(-3, 130), max_size=3),
    datatype=st.sampled_from([d.value for d in Datatype]),
    data=st.lists(numbers | st.booleans() | st.none() | st.text(max_size=2), max_size=130),
)
def test_shape_datatype_and_data_are_checked(
    http: httpx.Client, shape: list, datatype: str, data: list
) -> None:
    response = http.post(INFER, json=tensor(shape=shape, datatype=datatype, data=data))
    ok = (
        datatype == "FP32"
        and len(shape) == 2
        and shape[1] == 64
        and shape[0] >= 1
        and len(data) == shape[0] * 64
        and all(type(x) in (int, float) for x in data)
    )
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert_client_error(response)


@FUZZ
@given(rows=st.lists(st.lists(st.floats(0, 16, width=32), min_size=64, max_size=64), min_size=1, max_size=8))
def test_valid_rows_always_answer(http: httpx.Client, rows: list) -> None:
    response = http.post(INFER, json=tensor(shape=[len(rows), 64], data=rows))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["shape"] == [len(rows)]
    assert all(0 <= label <= 9 for label in outputs["label"]["data"])
    probabilities = outputs["probabilities"]["data"]
    for i in range(len(rows)):
        assert math.isclose(sum(probabilities[i * 10 : (i + 1) * 10]), 1.0, rel_tol=1e-3)


# "." and ".." are path steps the client resolves before sending, not names.
segments = st.text(min_size=1, max_size=20).filter(lambda t: t not in (".", ".."))


@FUZZ
@given(
    name=segments,
    version=st.none() | segments,
    endpoint=st.sampled_from(["", "/ready", "/infer"]),
)
def test_any_model_name_or_version_in_the_path(
    http: httpx.Client, name: str, version: str | None, endpoint: str
) -> None:
    path = "/v2/models/" + urllib.parse.quote(name, safe="")
    if version is not None:
        path += "/versions/" + urllib.parse.quote(version, safe="")
    method = "POST" if endpoint == "/infer" else "GET"
    response = http.request(method, path + endpoint, json=tensor() if method == "POST" else None)
    served = name == "digits" and version in (None, "1.0.0")
    if served:
        assert response.status_code == 200, response.text
    elif response.status_code == 307:  # a trailing "/" is redirected to the route without it
        assert urllib.parse.unquote(path + endpoint).endswith("/"), path
    else:
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert response.json()["error"]
