"""
The standard formats against real adapters: Mangum, apig-wsgi and Powertools.

Each case in L{ADAPTERS} runs the same requests.  How a request reaches the
function is the C{call} fixture: once with the event built, handed to the
handler in this process and its result parsed, and once over HTTP through
the real gateway resource, its AWS invoker and a fake Lambda API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_lambdagw.core.formats import FORMATS
from twisted_lambdagw.core.messages import IncomingRequest, Reply

from .adapter_apps import ADAPTERS, PNG, AdapterCase, FakeContext
from .gateway_fixtures import FakeAWSGateway
from .request_factory import make_request

Caller = Callable[[AdapterCase, IncomingRequest], Reply]


def call_in_process(case: AdapterCase, request: IncomingRequest) -> Reply:
    """
    Build the event, run the handler here, parse its JSON result.
    """
    fmt = FORMATS[case.format]
    event = json.loads(fmt.build(request))
    result = case.handler(event, FakeContext(aws_request_id=request.request_id))
    return fmt.parse(json.dumps(result).encode("utf-8"))


GATEWAY_SET = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-request-id"}


def call_through_gateway(case: AdapterCase, request: IncomingRequest) -> Reply:
    """
    Send the request over HTTP to the real gateway resource, whose real AWS
    invoker calls a fake Lambda API running the adapter's handler.
    """
    routes = f"[route:/lambda/]\nformat = {case.format}\nstrip_path_prefix = yes\n"
    gw = FakeAWSGateway(routes, {"fn": case.handler})
    headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        if name.lower() not in GATEWAY_SET:
            headers.setdefault(name, []).append(value)
    url = f"http://gw.example.test:8080{request.raw_path}"
    if request.raw_query:
        url += "?" + request.raw_query
    d = gw.client.request(
        request.method, url, headers=headers, data=request.body or None, allow_redirects=False
    )
    gw.flush()
    response = result_of(d)
    body = result_of(response.content())
    reply_headers = tuple(
        (name.decode("latin-1"), value.decode("utf-8"))
        for name, values in response.headers.getAllRawHeaders()
        for value in values
    )
    return Reply(response.code, reply_headers, body)


def result_of(d: Deferred[Any]) -> Any:
    """
    The result of a Deferred that has already fired.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    [result] = results
    if isinstance(result, Failure):
        result.raiseException()
    return result


CALLERS: dict[str, Caller] = {
    "in-process": call_in_process,
    "through-gateway": call_through_gateway,
}


@pytest.fixture(params=ADAPTERS, ids=str)
def case(request: pytest.FixtureRequest) -> AdapterCase:
    """
    One adapter behind one event format.
    """
    adapter_case: AdapterCase = request.param
    return adapter_case


@pytest.fixture(params=sorted(CALLERS))
def call(request: pytest.FixtureRequest) -> Caller:
    """
    How the request gets to the function.
    """
    return CALLERS[request.param]


def routed(
    method: str,
    path: str,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> IncomingRequest:
    """
    A request for C{/lambda/fn<path>} on a strip_path_prefix route: the function sees C{path}.
    """
    return make_request(
        method,
        f"/lambda/fn{path}",
        query,
        headers,
        body,
        function_path=path,
        route_prefix="/lambda/",
        function_name="fn",
    )


def header_values(reply: Reply, name: str) -> list[str]:
    """
    Every value of one reply header, compared case-insensitively.
    """
    return [value for key, value in reply.headers if key.lower() == name.lower()]


def json_body(reply: Reply) -> Any:
    """
    The reply body, parsed as JSON.
    """
    return json.loads(reply.body)


class AdapterTests:
    def test_path_parameter_and_repeated_query(self, case: AdapterCase, call: Caller) -> None:
        """The path parameter and every value of a repeated key reach the app, decoded."""
        # %2541 is "%41" once decoded: decoding twice would make it "A".
        reply = call(case, routed("GET", "/items/abc-42", "tag=%2541&tag=caf%C3%A9"))
        assert reply.status == 200
        # Single-value ALB keeps only the last value of a repeated key.
        tags = ["café"] if case.format == "alb" else ["%41", "café"]
        assert json_body(reply) == {"item_id": "abc-42", "tags": tags}

    def test_json_post(self, case: AdapterCase, call: Caller) -> None:
        """A JSON body arrives intact and the app's 201 comes back."""
        document = {"name": "Zoë", "n": [1, 2.5, None]}
        headers = [("Content-Type", "application/json")]
        reply = call(
            case, routed("POST", "/json", headers=headers, body=json.dumps(document).encode())
        )
        assert reply.status == 201
        assert json_body(reply) == {"received": document}

    def test_form_post(self, case: AdapterCase, call: Caller) -> None:
        """A form with a repeated field and a non-ASCII value arrives intact."""
        headers = [("Content-Type", "application/x-www-form-urlencoded")]
        body = b"tag=a&tag=b+c&name=Zo%C3%AB"
        reply = call(case, routed("POST", "/form", headers=headers, body=body))
        assert reply.status == 200
        assert json_body(reply) == {"tags": ["a", "b c"], "name": "Zoë"}

    def test_binary_upload(self, case: AdapterCase, call: Caller) -> None:
        """A binary body arrives byte for byte."""
        body = bytes(range(256)) * 3 + PNG
        headers = [("Content-Type", "application/octet-stream")]
        reply = call(case, routed("POST", "/upload", headers=headers, body=body))
        assert reply.status == 200
        assert json_body(reply) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    def test_binary_download(self, case: AdapterCase, call: Caller) -> None:
        """An image/png reply comes back byte for byte."""
        reply = call(case, routed("GET", "/image"))
        assert reply.status == 200
        assert header_values(reply, "content-type") == ["image/png"]
        assert reply.body == PNG

    @pytest.mark.filterwarnings("ignore::UserWarning")
    def test_cookies(self, case: AdapterCase, call: Caller) -> None:
        """Request cookies arrive once each; two Set-Cookie headers come back as two."""
        headers = [("Cookie", "x=1; y=2")]
        reply = call(case, routed("GET", "/cookies", headers=headers))
        assert reply.status == 200
        assert json_body(reply) == {"cookies": [["x", "1"], ["y", "2"]]}
        names = [value.split("=", 1)[0] for value in header_values(reply, "set-cookie")]
        if case.format == "alb":
            # Single-value ALB has one value per header name: apig-wsgi and
            # Powertools keep the last cookie; Mangum varies the name's case.
            assert names[-1] == "b"
            assert set(names) <= {"a", "b"}
        else:
            assert names == ["a", "b"]

    def test_redirect(self, case: AdapterCase, call: Caller) -> None:
        """A redirect keeps its status and Location."""
        reply = call(case, routed("GET", "/redirect"))
        assert reply.status == 302
        assert header_values(reply, "location") == ["/items/1"]

    def test_head(self, case: AdapterCase, call: Caller) -> None:
        """HEAD reaches the GET route's HEAD handling."""
        reply = call(case, routed("HEAD", "/items/1"))
        assert reply.status == 200
        assert header_values(reply, "content-type") == ["application/json"]

    def test_not_found(self, case: AdapterCase, call: Caller) -> None:
        """A path the app does not know is the app's 404, not the gateway's."""
        reply = call(case, routed("GET", "/nowhere"))
        assert reply.status == 404


FLASK_CASES = [c for c in ADAPTERS if c.adapter == "apig-wsgi"]


@pytest.mark.parametrize("case", FLASK_CASES, ids=str)
def test_underscores_do_not_spoof_gateway_headers(case: AdapterCase) -> None:
    """
    WSGI reads ``_`` as ``-``: ``X_Authenticated_User`` and ``X_Forwarded_For``
    sent by a client never reach Flask as ``X-Authenticated-User`` and
    ``X-Forwarded-For`` (the gateway drops every name with an underscore).
    """
    headers = [("X_Authenticated_User", "admin"), ("X_Forwarded_For", "203.0.113.66")]
    reply = call_through_gateway(case, routed("GET", "/who", headers=headers))
    assert reply.status == 200
    seen = json_body(reply)
    assert seen["X-Authenticated-User"] is None
    assert "203.0.113.66" not in (seen["X-Forwarded-For"] or "")
    assert seen["X-Forwarded-For"]  # the gateway's own value still arrives
