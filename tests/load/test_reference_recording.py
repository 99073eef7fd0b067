"""Answers alone sent for real to a small HTTP server on 127.0.0.1: each sampled body twice, one request at a time,
with the request's headers; unstable and unanswered bodies left out; a run with nothing to compare stops."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.config import RequestConfig
from harness.errors import LoadError
from harness.load.reference_answers import body_key
from harness.load.reference_recording import record_reference_answers
from harness.load.requests import PreparedBody, ReadyRequest
from harness.processes import free_port

KEY = "alone-key"
UNSTABLE = 99  # the server answers this x differently every time
# The request timeout: generous, since a request not answered within it stops the recording, and other lanes of
# `make test` can hold up this in-process server's threads for seconds; how fast it answers is not under test.
TIMEOUT_S = 30
# How long each request stays in flight before its answer is written: a client sending two at once would have
# both in flight together, whatever the machine's load.
HOLD_S = 0.05


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.received: list[tuple[str | None, bytes]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.server.received.append((self.headers["X-Key"], body))
            calls = len(self.server.received)
        time.sleep(HOLD_S)
        # Out of flight before the answer is written: the client may send its next request as soon as it has the
        # answer, before this thread runs again (a loaded machine once showed 2 in flight that way).
        with self.server.lock:
            self.server.in_flight -= 1
        if self.headers["X-Key"] != KEY:
            self._answer(401, {"error": "no key"})
            return
        x = json.loads(body)["x"]
        self._answer(200, {"label": calls if x == UNSTABLE else x % 3, "x": x})

    def _answer(self, status: int, document: object) -> None:
        content = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    serving = _Server()
    thread = threading.Thread(target=serving.serve_forever, daemon=True)
    thread.start()
    try:
        yield serving
    finally:
        serving.shutdown()
        serving.server_close()
        thread.join(timeout=10)


def url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def body(x: int) -> bytes:
    return json.dumps({"x": x}).encode()


def request(xs: list[int], same_as_alone: object, key: str = KEY) -> ReadyRequest:
    check = RequestConfig.model_validate(
        {"name": "predict", "path": "/predict", "check": {"same_as_alone": same_as_alone}}
    ).check
    headers = {"Content-Type": "application/json", "X-Key": key}
    return ReadyRequest("predict", "POST", "/predict", headers, [PreparedBody(body(x)) for x in xs], check)


def test_each_sampled_body_is_sent_alone_twice_with_its_headers_and_unstable_ones_are_left_out(
    server: _Server,
) -> None:
    # Four distinct bodies, of which bodies: 3 samples the first three in order; the repeat of 1 is no new one.
    sent = request([1, UNSTABLE, 1, 2, 4], {"field": "label", "bodies": 3})
    unchecked = ReadyRequest("other", "POST", "/predict", {}, [PreparedBody(body(5))])
    recorded = record_reference_answers([sent, unchecked], url(server), timeout_s=TIMEOUT_S)
    assert set(recorded) == {"predict"}
    alone = recorded["predict"]
    assert alone.answers == {body_key(body(1)): 1, body_key(body(2)): 2}
    assert (alone.unstable, alone.unanswered) == (1, 0)
    assert server.received == [(KEY, body(x)) for x in (1, 1, UNSTABLE, UNSTABLE, 2, 2)]
    assert server.most_in_flight == 1


def test_a_body_answered_with_a_wrong_status_is_unanswered_and_with_none_left_the_run_stops(server: _Server) -> None:
    with pytest.raises(LoadError, match=r"no body of request 'predict' .* \(0 differed, 2 had a wrong status or no"):
        record_reference_answers([request([1, 2], True, key="wrong")], url(server), timeout_s=TIMEOUT_S)
    with pytest.raises(LoadError, match=r"no body of request 'predict' .* \(1 differed, 0 had"):
        record_reference_answers([request([UNSTABLE], {"field": "label"})], url(server), timeout_s=TIMEOUT_S)


def test_a_service_that_does_not_answer_stops_the_run_naming_the_request_and_url() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoadError, match=rf"request 'predict' to {closed}/predict got no answer"):
        record_reference_answers([request([1], True)], closed, timeout_s=TIMEOUT_S)
