"""Hostile requests against real processes (issue 15): every one a clear 4xx, none a 5xx, none hangs.

A local stack (redis-server, cloud, one executor, orchestrator with an API token) gets more than 100
hostile requests, each on its own connection (``hostile.py`` builds them as raw bytes): NPY headers
that broke the old parser, sent to the orchestrator, the executor and the cloud; decompression bombs
and inflating PNG chunks; non-ASCII digits; CR/LF meant for a response header; oversized and slow
headers and bodies; missing and wrong tokens on every internal endpoint. Then 48 decompression bombs
at once while ``/v2/health/live`` is polled: every poll must answer 200 (the latencies are printed,
not asserted; ``docs/BENCHMARKS.md`` has the figures).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import hostile as h
import httpx
import pytest
from hostile import Case, case, request

from edgesplit.models import get_spec
from services.orchestrator.v2 import json_limit
from tooling.proc import ServiceProcess, free_port, start_module, wait_ready
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services, pytest.mark.slow]
API = "hostile-suite-api-token-0123456789"
MODELS = ("alexnet-paper", "digits-cnn")
SLICE = "/v1/slices/alexnet-paper?subzone=0&strategy=rows&start=2&stop=4&out_rows=0,9"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=MODELS, log_dir=tmp_path_factory.mktemp("hostile"),
            executor=ExecutorGroup(count=1, threads=2),
            orchestrator=OrchestratorGroup(extra={"api_token": API, "max_body_bytes": 1 << 20,
                                                  "rate_per_s": 0}))) as st:
        yield st


def _npy_cases(token: str, cloud_token: str) -> list[Case]:
    auth = {"Authorization": f"Bearer {token}"}
    cloud = {"Authorization": f"Bearer {cloud_token}"}
    api = {"Authorization": f"Bearer {API}"}
    out = []
    for name, body in h.BAD_NPY.items():
        out.append(case(f"npy {name} -> orchestrator", "orch",
                        request("POST", "/v1/tasks?model=alexnet-paper", api, body)))
        out.append(case(f"npy {name} -> executor echo", "exec", request("POST", "/v1/echo", auth, body)))
    for name in ("descr-tuple", "shape-2^31-squared", "shape-70-dims", "shape-0-by-2^63", "void-0-of-2^63",
                 "nested-3900-chars"):
        body = h.BAD_NPY[name]
        out.append(case(f"npy {name} -> executor slice", "exec", request("POST", SLICE, auth, body)))
        out.append(case(f"npy {name} -> cloud", "cloud",
                        request("POST", "/v1/infer/alexnet-paper", cloud, body)))
    return out


def _image_cases() -> list[Case]:
    api = {"Authorization": f"Bearer {API}"}

    def post(name: str, body: bytes, expect: tuple[int, ...] = ()) -> Case:
        return case(name, "orch", request("POST", "/v1/tasks?model=alexnet-paper", api, body), expect)

    many_text = b"".join(h._chunk(b"tEXt", b"k%d\x00" % i + b"x" * 60_000) for i in range(6))
    return [
        post("jpeg declaring 6000x6000", h.jpeg_declaring(6000, 6000), (422,)),
        post("jpeg declaring 65535x65535", h.jpeg_declaring(65535, 65535), (422,)),
        post("jpeg declaring 2000x1", h.jpeg_declaring(2000, 1), (422,)),
        post("jpeg with 700 scans", h.jpeg_scan_bomb(100), (422,)),
        post("png declaring 100000x100000", h.png(100_000, 100_000), (422,)),
        post("png declaring 0x0", h.png(0, 0), (422,)),
        post("png zTXt inflating to 4 MB", h.png(extra=h.inflating_chunk(b"zTXt")), (422,)),
        post("png iCCP inflating to 4 MB", h.png(extra=h.inflating_chunk(b"iCCP")), (422,)),
        post("png iTXt inflating to 4 MB", h.png(extra=h.inflating_chunk(b"iTXt")), (422,)),
        post("png 360 KB of tEXt", h.png(extra=many_text), (422,)),
        post("png truncated", h.png(32, 32)[:60], (422,)),
        post("png bad IDAT", h.png(32, 32, idat=b"\x07" * 10), (422,)),
        post("jpeg truncated", h.jpeg_declaring(32, 32)[:200], (422,)),
        post("png short scanlines", h.png(500, 500, idat=b"\x00" * 100), (422,)),
        post("gif", b"GIF89a" + b"\x00" * 40, (415,)),
        post("bmp", b"BM" + b"\x00" * 60, (415,)),
        post("tiff", b"II*\x00" + b"\x00" * 60, (415,)),
        post("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", (415,)),
        post("empty body", b"", (422,)),
        post("npy bool of the input shape", h.npy(h.hdr("'|b1'", "(3, 32, 32)"), b"\x00" * 3072), (422,)),
        post("npy wrong shape", h.good_npy((3, 31, 32)), (422,)),
        case("multipart without a file", "orch", request(
            "POST", "/v1/tasks", {**api, "Content-Type": "multipart/form-data; boundary=xx"},
            b"--xx\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nalexnet-paper\r\n--xx--\r\n"),
             (422,)),
        case("multipart broken", "orch", request(
            "POST", "/v1/tasks", {**api, "Content-Type": "multipart/form-data; boundary=xx"},
            b"--xx\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\nabc"), ()),
        case("multipart 2000 fields", "orch", request(
            "POST", "/v1/tasks", {**api, "Content-Type": "multipart/form-data; boundary=xx"},
            b"".join(b"--xx\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n" % i
                     for i in range(2000)) + b"--xx--\r\n"), ()),
    ]


def _param_cases() -> list[Case]:
    api = {"Authorization": f"Bearer {API}"}
    body = h.good_npy((3, 32, 32))
    out = []
    for name, query in [
        ("priority arabic-indic 3", "priority=%D9%A3"), ("priority devanagari 3", "priority=%E0%A5%A9"),
        ("priority fullwidth 3", "priority=%EF%BC%93"), ("priority 1_0", "priority=1_0"),
        ("priority space", "priority=%203"), ("priority 3.0", "priority=3.0"), ("priority 0", "priority=0"),
        ("priority -1", "priority=-1"), ("priority huge", "priority=99999999999999999999"),
        ("priority nan", "priority=nan"), ("timeout nan", "timeout=nan"), ("timeout inf", "timeout=inf"),
        ("timeout -1", "timeout=-1"), ("timeout 0", "timeout=0"), ("timeout 1e400", "timeout=1e400"),
        ("timeout arabic-indic", "timeout=%D9%A3"), ("wait -1", "wait=-1"), ("wait 1000", "wait=1000"),
        ("wait nan", "wait=nan"), ("top_k 0", "top_k=0&wait=1"), ("top_k abc", "top_k=abc"),
        ("model unknown", "model=resnet9000"), ("model CRLF", "model=a%0d%0aX-Evil:%201"),
        ("model 5000 chars", "model=" + "m" * 5000),
    ]:
        out.append(case(f"param {name}", "orch", request("POST", f"/v1/tasks?{query}", api, body)))
    out += [
        case("idempotency key 500 chars", "orch",
             request("POST", "/v1/tasks", {**api, "Idempotency-Key": "k" * 500}, body), (422,)),
        case("task id CRLF", "orch", request("GET", "/v1/tasks/a%0d%0aSet-Cookie:%20x=1", api), (404,)),
        case("task id path traversal", "orch", request("GET", "/v1/tasks/..%2f..%2fetc%2fpasswd", api),
             (404,)),
        case("task id 8000 chars", "orch", request("GET", "/v1/tasks/" + "a" * 8000, api), (404,)),
    ]
    return out


def _auth_cases(stack: LocalStack) -> list[Case]:
    token = stack.token
    out = []
    bad = {"none": None, "garbage": "Bearer garbage", "empty bearer": "Bearer ",
           "basic": "Basic dXNlcjpwYXNz", "token with space": f"Bearer  {API}",
           "lowercase scheme": f"bearer {API}x"}
    for label, value in bad.items():
        headers = {} if value is None else {"Authorization": value}
        out.append(case(f"public submit, token {label}", "orch",
                        request("POST", "/v1/tasks", headers, h.good_npy((3, 32, 32))), (401,)))
    internal = [("exec", "POST", SLICE), ("exec", "POST", "/v1/echo"), ("exec", "GET", "/v1/quotas"),
                ("exec", "PUT", "/v1/quotas"), ("exec", "GET", "/v1/info"), ("exec", "GET", "/metrics"),
                ("cloud", "POST", "/v1/infer/alexnet-paper"), ("cloud", "GET", "/v1/info"),
                ("cloud", "GET", "/metrics")]
    for target, method, path in internal:
        out.append(case(f"{target} {method} {path.split('?')[0]} without a token", target,
                        request(method, path, {}, b"{}" if method == "PUT" else b""), (401,)))
        out.append(case(f"{target} {method} {path.split('?')[0]} with the API token", target,
                        request(method, path, {"Authorization": f"Bearer {API}"}), (401,)))
    # one token per caller: each callee refuses the tokens of the other calls
    wrong = [("exec", SLICE, stack.cloud_token, "the cloud token"),
             ("exec", "/v1/echo", stack.cloud_token, "the cloud token"),
             ("cloud", "/v1/infer/alexnet-paper", stack.token, "the orchestrator's executor token"),
             ("cloud", "/v1/infer/alexnet-paper", stack.allocator_token, "the allocator token"),
             ("cloud", "/v1/info", stack.token, "the orchestrator's executor token"),
             ("orch", "/v1/tasks", stack.token, "an internal token"),
             ("orch", "/v1/tasks", stack.cloud_token, "the cloud token")]
    for target, path, tok, label in wrong:
        out.append(case(f"{target} {path.split('?')[0]} with {label}", target, request(
            "POST" if path != "/v1/info" else "GET", path, {"Authorization": f"Bearer {tok}"},
            h.good_npy((1, 4096))), (401,)))
    for target in ("orch", "exec", "cloud"):
        for path in ("/docs", "/openapi.json", "/redoc"):
            out.append(case(f"{target} {path} is off by default", target, request("GET", path), (401, 404)))
    auth = {"Authorization": f"Bearer {token}"}
    cloud = {"Authorization": f"Bearer {stack.cloud_token}"}
    out += [
        case("executor task_id with CRLF", "exec", request(
            "POST", SLICE + "&task_id=a%0d%0aX-Evil:%201", auth, h.good_npy((1, 96, 11, 25))), (422,)),
        case("executor subzone arabic-indic", "exec", request(
            "POST", SLICE.replace("subzone=0", "subzone=%D9%A3"), auth, b""), (422,)),
        case("executor start arabic-indic", "exec", request(
            "POST", SLICE.replace("start=2", "start=%D9%A2"), auth, b""), (422,)),
        case("executor quotas arabic-indic key", "exec", request(
            "PUT", "/v1/quotas", {**auth, "Content-Type": "application/json"},
            '{"alexnet-paper": {"٣": 1}}'.encode()), (422,)),
        case("executor quotas deep json", "exec", request(
            "PUT", "/v1/quotas", {**auth, "Content-Type": "application/json"}, b"[" * 50_000 + b"]" * 50_000),
             ()),
        case("executor quotas negative", "exec", request(
            "PUT", "/v1/quotas", {**auth, "Content-Type": "application/json"},
            b'{"alexnet-paper": {"0": -5}}'), (422,)),
        case("cloud start arabic-indic", "cloud", request(
            "POST", "/v1/infer/alexnet-paper?start=%D9%A3", cloud, h.good_npy((1, 4096))), (422,)),
        case("cloud start 99", "cloud", request(
            "POST", "/v1/infer/alexnet-paper?start=99", cloud, h.good_npy((1, 4096))), (422,)),
        case("cloud batch of 0", "cloud", request(
            "POST", "/v1/infer/alexnet-paper", cloud, h.good_npy((0, 6400))), (422,)),
    ]
    return out


def _http_cases() -> list[Case]:
    live = "/v2/health/live"
    slow = [(b"GET " + live.encode() + b" HTTP/1.1\r\n", 0.25),
            *[(b"X-%d: 1\r\n" % i, 0.25) for i in range(40)]]  # 10 s of headers, never complete
    stalled = request("POST", "/v1/tasks", {"Authorization": f"Bearer {API}", "Content-Length": "5000"},
                      b"\x93NUMPY", length=False)
    out = [
        case("100 KB header", "orch", request("GET", live, {"X-Big": "a" * 100_000}), (431,)),
        case("200 header fields", "orch", request("GET", live, [(f"X-{i}", "1") for i in range(200)]),
             (431,)),
        case("20 KB url", "orch", request("GET", live + "?" + "a" * 20_000), (414,)),
        Case("slowloris headers", "orch", tuple(slow), (408,)),
        Case("stalled body", "orch", ((stalled, 0.0),), (408,)),
        Case("idle connection", "orch", ((b"", 0.0),), (408,)),
        case("garbage request line", "orch", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", (400,)),
        case("content-length -1", "orch",
             request("POST", "/v1/tasks", {"Content-Length": "-1"}, length=False), (400,)),
        case("content-length abc", "orch", request("POST", "/v1/tasks", {"Content-Length": "abc"},
                                                    length=False), (400,)),
        case("two content-lengths", "orch", request("POST", "/v1/tasks", [("Content-Length", "3"),
                                                                          ("Content-Length", "5")],
                                                     b"abcde", length=False), (400,)),
        case("chunked and content-length", "orch", request(
            "POST", "/v1/tasks", [("Transfer-Encoding", "chunked"), ("Content-Length", "3")], b"0\r\n\r\n",
            length=False), (400,)),
        case("bad chunk size", "orch", request("POST", "/v1/tasks", {"Transfer-Encoding": "chunked"},
                                                b"zz\r\nabc\r\n0\r\n\r\n", length=False), (400,)),
        case("declared body above the limit", "orch", request(
            "POST", "/v1/tasks", {"Authorization": f"Bearer {API}", "Content-Length": str(64 << 20)},
            length=False), (413,)),
        case("chunked body above the limit", "orch", request(
            "POST", "/v1/tasks", {"Authorization": f"Bearer {API}", "Transfer-Encoding": "chunked"},
            b"".join(b"%x\r\n" % 65536 + b"\x00" * 65536 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n",
            length=False), (413,)),
        case("NUL in a header", "orch", request("GET", live, {"X-A": "a\x00b"}), (400,)),
        case("obs-fold header", "orch", b"GET " + live.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n"
             b"Connection: close\r\n\r\n", (400,)),
        case("HTTP/0.9 request", "orch", b"GET /\r\n\r\n", ()),
        case("unknown method", "orch", request("FOO", live), (400, 405)),
        case("absolute-form target", "orch", request("GET", "http://evil.example" + "/v1/models"), ()),
        case("executor 100 KB header", "exec", request("GET", live, {"X-Big": "a" * 100_000}), (431,)),
        Case("executor stalled body", "exec", ((request(
            "POST", "/v1/echo", {"Content-Length": "5000"}, b"\x93NUMPY", length=False), 0.0),), (401, 408)),
        case("cloud 200 header fields", "cloud", request("GET", live, [(f"X-{i}", "1") for i in range(200)]),
             (431,)),
        case("v2 infer 50000 nested [", "orch", request(
            "POST", "/v2/models/alexnet-paper/infer", {"Authorization": f"Bearer {API}",
                                                        "Content-Type": "application/json"},
            b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"), ()),
        case("v2 infer not json", "orch", request(
            "POST", "/v2/models/alexnet-paper/infer", {"Authorization": f"Bearer {API}"}, b"{nope"), ()),
        case("v2 infer huge number", "orch", request(
            "POST", "/v2/models/alexnet-paper/infer", {"Authorization": f"Bearer {API}"},
            b'{"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [1e999]}]}'),
             ()),
    ]
    return out


def all_cases(stack: LocalStack) -> list[Case]:
    return [*_npy_cases(stack.token, stack.cloud_token), *_image_cases(), *_param_cases(),
            *_auth_cases(stack), *_http_cases()]


def _ports(stack: LocalStack) -> dict[str, int]:
    return {"orch": stack.orch_port, "exec": stack.exec_ports[0], "cloud": stack.cloud_port}


def test_hostile_requests_are_each_a_clear_4xx(stack: LocalStack) -> None:
    cases = all_cases(stack)
    assert len(cases) >= 100
    ports = _ports(stack)
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda c: h.send(ports[c.target], c), cases))
    statuses = Counter("hang" if o.hung else "closed" if o.status is None else f"{o.status // 100}xx"
                       for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(f"\nhostile suite: {len(cases)} cases: {dict(statuses)}; slowest answer or close "
          f"{slowest.seconds:.2f} s ({slowest.case.name})")
    wrong = [f"{o.case.name}: {'hang' if o.hung else o.status} {o.head[:200]!r}" for o in outcomes
             if o.hung or o.status is None or not 400 <= o.status < 500
             or (o.case.expect and o.status not in o.case.expect)]
    assert not wrong, "\n".join(wrong)
    for svc in stack.services():
        assert svc.alive, f"{svc.name} died:\n{svc.log_tail()}"
        assert "Traceback" not in svc.log_path.read_text(errors="replace"), svc.log_tail(60)


def _poll_live(url: str, stop: threading.Event, latencies: list[float], statuses: list[int]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            r = httpx.get(url + "/v2/health/live", timeout=10)
            statuses.append(r.status_code)
        except httpx.HTTPError:
            statuses.append(0)
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)


def _flood(url: str, port: int, c: Case, count: int) -> tuple[list[h.Outcome], list[float], list[int]]:
    """``count`` copies of ``c`` at once while ``/v2/health/live`` is polled: the outcomes, and the
    polls' latencies and statuses."""
    latencies: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll_live, args=(url, stop, latencies, statuses))
    poller.start()
    time.sleep(0.3)
    try:
        with ThreadPoolExecutor(count) as pool:
            outcomes = list(pool.map(lambda _: h.send(port, c), range(count)))
    finally:
        time.sleep(0.3)
        stop.set()
        poller.join()
    return outcomes, latencies, statuses


@pytest.mark.parametrize("bomb", ["jpeg-6000x6000", "png-1024x1024"])
def test_liveness_answers_during_a_flood_of_48_bombs(stack: LocalStack, bomb: str) -> None:
    """48 bombs at once: declared 6000x6000 (refused from the header) or the largest image still taken
    (1024x1024 of zeros, decoded on the bounded pool). Liveness answers every poll; the bombs get 4xx
    (or 202/429 for the accepted size), never a 5xx."""
    body = h.jpeg_declaring(6000, 6000) if bomb.startswith("jpeg") else h.max_size_png(1024)
    raw = request("POST", "/v1/tasks?model=alexnet-paper&timeout=30",
                  {"Authorization": f"Bearer {API}"}, body)
    outcomes, latencies, statuses = _flood(stack.url, stack.orch_port, h.case(bomb, "orch", raw), 48)
    answers = Counter(o.status for o in outcomes)
    print(f"\n48 x {bomb}: answers {dict(answers)}; liveness polls {len(latencies)}: "
          f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert statuses and all(s == 200 for s in statuses), statuses
    allowed = {422} if bomb.startswith("jpeg") else {202, 429}
    assert set(answers) <= allowed, answers
    for svc in stack.services():
        assert svc.alive and "Traceback" not in svc.log_path.read_text(errors="replace"), svc.log_tail(60)


@pytest.fixture(scope="module")
def full_body(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """An API-only orchestrator (no pipelines) with the default 16 MB body limit, where the stack's
    own is 1 MB: what a V2 JSON body may weigh by default."""
    svc = start_module("orchestrator-full-body", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                       {"workers": "false", "models": "alexnet-paper", "prefix": f"{stack.prefix}body:",
                        "api_token": API, "rate_per_s": 0}, tmp_path_factory.mktemp("full-body"))
    yield svc
    svc.stop()


def test_liveness_answers_during_a_flood_of_v2_json_bombs(full_body: ServiceProcess) -> None:
    """16 V2 infer requests at once, each ``[0],`` up to alexnet-paper's JSON byte limit (9.5 MB, 2.4
    million brackets: 150 MB in all). Each is a 400 from a count of its separators before any parse
    (the depth scan and the parser took 1.3 s and 470 MB of the event loop on each, so 16 stalled
    liveness for 20 s); liveness answers every poll meanwhile."""
    head = b'{"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": ['
    limit = json_limit(get_spec("alexnet-paper"), 16 * 1024 * 1024)
    body = head + b"[0]," * ((limit - len(head) - 16) // 4) + b"[0]]}]}"
    raw = request("POST", "/v2/models/alexnet-paper/infer",
                  {"Authorization": f"Bearer {API}", "Content-Type": "application/json"}, body)
    outcomes, latencies, statuses = _flood(full_body.url, full_body.port, h.case("v2 json bomb", "orch", raw),
                                           16)
    answers = Counter(o.status for o in outcomes)
    print(f"\n16 x V2 JSON bomb of {len(body)} bytes: answers {dict(answers)}; liveness polls "
          f"{len(latencies)}: median {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    assert statuses and all(s == 200 for s in statuses), statuses
    assert set(answers) == {400}, answers
    assert full_body.alive and "Traceback" not in full_body.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def limited(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """An API-only orchestrator (no pipelines, no API token) allowing 1 request/s, bursts of 3; with
    its docs on and its metrics off."""
    svc = start_module("orchestrator-limited", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                       {"workers": "false", "models": "digits-cnn", "prefix": f"{stack.prefix}limited:",
                        "rate_per_s": 1, "rate_burst": 3, "docs": "true", "metrics": "false"},
                       tmp_path_factory.mktemp("limited"))
    yield svc
    svc.stop()


def _client(svc: ServiceProcess, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (another loopback address is another client)."""
    return httpx.Client(base_url=svc.url, timeout=10,
                        transport=httpx.HTTPTransport(local_address=address))


def test_rate_limit_and_idempotency_keys_are_per_client(limited: ServiceProcess) -> None:
    body = h.good_npy((1, 8, 8))
    with _client(limited, "127.0.0.1") as one, _client(limited, "127.0.0.2") as two:
        first = one.post("/v1/tasks", content=body, headers={"Idempotency-Key": "same-key"})
        other = two.post("/v1/tasks", content=body, headers={"Idempotency-Key": "same-key"})
        assert first.status_code == other.status_code == 202, (first.text, other.text)
        assert first.json()["id"] != other.json()["id"]  # the same key from another client is its own
        again = one.post("/v1/tasks", content=body, headers={"Idempotency-Key": "same-key"})
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        answers = [one.post("/v1/tasks", content=body) for _ in range(4)]
        refused = [r for r in answers if r.status_code == 429]
        assert refused, [r.status_code for r in answers]
        assert int(refused[0].headers["retry-after"]) >= 1 and "rate limit" in refused[0].json()["error"]
        assert two.get("/v1/models").status_code == 200  # the other client still has its bucket
        assert one.get("/v2/health/live").status_code == 200  # health is never limited
        # the docs and metrics settings switch their routes (here docs on, metrics off)
        assert "/v1/tasks" in one.get("/openapi.json").json()["paths"]
        assert one.get("/metrics").status_code == 404


def test_redis_auth_from_the_password_setting(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A Redis with AUTH (as the chart and compose run it): the orchestrator with ``redis_password``
    is ready; one without it is not (503, the error says why), and never crashes."""
    port = free_port()
    password = "redis-suite-password-0123456789"
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--requirepass", password],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = tmp_path_factory.mktemp("redis-auth")
    common = {"workers": "false", "models": "digits-cnn", "redis_url": f"redis://127.0.0.1:{port}/0"}
    try:
        good = start_module("orchestrator-auth", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                            {**common, "redis_password": password}, logs)  # waits until ready
        bad = start_module("orchestrator-noauth", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                           common, logs, wait=False)
        try:
            wait_ready(bad, "/v2/health/live")
            r = httpx.get(bad.url + "/v2/health/ready", timeout=10)
            assert r.status_code == 503 and r.json()["ready"] is False
            assert "auth" in r.json()["error"].lower(), r.json()
            submit = httpx.post(bad.url + "/v1/tasks", content=h.good_npy((1, 8, 8)), timeout=10)
            assert submit.status_code == 503, submit.text
            assert httpx.get(good.url + "/v2/health/ready", timeout=10).status_code == 200
        finally:
            good.stop()
            bad.stop()
    finally:
        redis.terminate()
        redis.wait(10)
