"""Standard HTTP request metrics on a service's own ``/metrics`` (the cloud app, in process): counted
and timed per route template, method and exact status; unmatched paths share the handler ``none``."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.cloud.app import create_app
from services.cloud.settings import CloudSettings

TOKEN = "unit-test-token-0123456789abcdef"


def _samples(text: str, name: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[(s.labels["handler"], s.labels["method"], s.labels["status"])] = s.value
    return out


def test_requests_are_counted_and_timed_per_route_template_method_and_status() -> None:
    app = create_app(CloudSettings.model_validate(dict(token=TOKEN, models="digits-cnn", threads=1)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v1/info").status_code == 401
        for i in range(3):
            assert client.get(f"/no/such/path/{i}").status_code == 404
        assert client.post("/v1/infer/digits-cnn", content=b"x", headers=auth).status_code in (415, 422, 503)
        text = client.get("/metrics", headers=auth).text
    counts = _samples(text, "http_requests_total")
    assert counts[("/v2/health/live", "GET", "200")] == 2
    assert counts[("/v1/info", "GET", "401")] == 1
    assert counts[("none", "GET", "404")] == 3
    assert any(h == "/v1/infer/{model}" and m == "POST" for h, m, _ in counts)
    durations = _samples(text, "http_request_duration_seconds_count")
    assert durations[("/v2/health/live", "GET", "200")] == 2


def test_an_unexpected_exception_answers_a_json_500_that_names_it() -> None:
    """A bug in a handler (here a route added to raise) must still answer in the API's shape, not
    Starlette's plain-text "Internal Server Error", leave the service serving, and count as a 500."""
    app = create_app(CloudSettings.model_validate(dict(token=TOKEN, models="digits-cnn", threads=1)))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json()["type"] == "InternalError" and "RuntimeError" in r.json()["error"]
        assert client.get("/v2/health/live").status_code == 200
        text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert _samples(text, "http_requests_total")[("/boom", "GET", "500")] == 1  # counted as the 500 it was
