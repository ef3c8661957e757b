"""
The gateway's events against real consumers written in another language,
run by node from C{tests/node/conformance} (its packages pinned by its
C{package-lock.json}, installed with C{npm ci --prefix tests/node/conformance}):

 - the Powertools for AWS Lambda (TypeScript) parser's zod schemas accept
   every API Gateway REST, payload 2.0, Function URL and ALB event the
   gateway builds;
 - C{serverless-http}, wrapping a small node HTTP handler, is run on each
   event and its result goes back through the format's own C{parse}: the
   reply is the one the handler wrote, and the handler saw the request.

Without node or the packages these tests skip, and fail when C{CI=true}.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest

from twisted_lambdagw.core.formats import FORMATS

from .conformance_requests import REQUESTS, event, events
from .external import missing

NODE_DIR = Path(__file__).parent / "node" / "conformance"

SCHEMAS = {
    "apigw-v1": ["APIGatewayProxyEventSchema"],
    "apigw-v2": ["APIGatewayProxyEventV2Schema", "LambdaFunctionUrlSchema"],
    "alb": ["AlbSchema"],
    "alb-multi": ["AlbMultiValueHeadersSchema", "AlbSchema"],
}
"""The Powertools schemas each format's events must pass."""


def node() -> str:
    """
    The node executable, once the npm packages are installed; else skip
    (or fail, under CI).
    """
    executable = shutil.which("node")
    modules = NODE_DIR / "node_modules"
    problem = None
    if executable is None:
        problem = "node is not installed"
    elif not all(
        (modules / package / "package.json").is_file()
        for package in ("@aws-lambda-powertools/parser", "serverless-http", "zod")
    ):
        problem = "the npm packages are missing: npm ci --prefix tests/node/conformance"
    if problem is not None:
        missing(problem)
    assert executable is not None
    return executable


def run_node(script: str, cases: list[dict[str, Any]], tmp_path: Path) -> Any:
    """
    Run C{script} on C{cases} (written to a file) and return its JSON output.
    """
    executable = node()
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(cases), encoding="utf-8")
    done = subprocess.run(
        [executable, script, str(events_file)],
        cwd=NODE_DIR,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return json.loads(done.stdout)


class PowertoolsParserTests:
    def test_schemas_accept_every_event(self, tmp_path: Path) -> None:
        """Each schema of a format accepts the event built for each request."""
        cases = [
            {"label": f"{fmt}/{label}", "schema": schema, "event": built}
            for fmt, schemas in SCHEMAS.items()
            for label, built in events(fmt).items()
            for schema in schemas
        ]
        # A control: payload 2.0 with a null body, which AWS never sends.
        control = event("apigw-v2", REQUESTS["get-bare"]) | {"body": None}
        cases.append({"label": "control", "schema": "LambdaFunctionUrlSchema", "event": control})
        result = run_node("validate.mjs", cases, tmp_path)
        assert result["checked"] == len(cases)
        failures = {
            f"{failure['label']} {failure['schema']}": failure for failure in result["failures"]
        }
        assert list(failures) == ["control LambdaFunctionUrlSchema"], json.dumps(
            result["failures"], indent=1
        )


def expected_query(fmt: str, raw_query: str) -> list[list[str]]:
    """
    The decoded query pairs the handler should see, sorted: all of them, or
    with single-value ALB the last value of each key, all ALB sends.
    """
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    if fmt == "alb":
        pairs = list(dict(pairs).items())
    return sorted([key, value] for key, value in pairs)


MULTI_SEEN = {
    "apigw-v1": "two",  # serverless-http prefers headers (the last value) to the list
    "apigw-v2": "one,two",  # joined by the event, as AWS joins them
    "alb": "two",  # the last value, all single-value ALB sends
    "alb-multi": "one, two",  # joined by serverless-http from the list
}
"""What the handler sees of C{X-Multi: one} and C{x-multi: two}."""


class ServerlessHttpTests:
    @pytest.mark.parametrize("fmt", sorted(SCHEMAS))
    def test_handler_answers(self, fmt: str, tmp_path: Path) -> None:
        """serverless-http runs the handler on each event, and its reply parses back."""
        built = events(fmt)
        cases = [{"label": label, "event": document} for label, document in built.items()]
        results = run_node("serve.mjs", cases, tmp_path)
        for label, request in REQUESTS.items():
            result = results[label]
            assert "error" not in result, f"{label}: {result.get('error')}"
            reply = FORMATS[fmt].parse(json.dumps(result).encode("utf-8"))
            lowered = [(name.lower(), value) for name, value in reply.headers]
            assert reply.status == 201, label
            assert ("content-type", "application/json") in lowered, label
            assert ("x-served-by", "serverless-http") in lowered, label
            cookies = [value for name, value in lowered if name == "set-cookie"]
            # With single-value headers ALB has room for one Set-Cookie, and
            # serverless-http then sends none.
            assert cookies == ([] if fmt == "alb" else ["a=1; Path=/", "b=2; HttpOnly"]), label
            if request.method == "HEAD":
                assert reply.body == b"", label
                continue
            seen = json.loads(reply.body)
            assert seen["method"] == request.method, label
            assert unquote(seen["path"]) == request.function_path, label
            assert sorted(seen["query"]) == expected_query(fmt, request.raw_query), label
            assert base64.b64decode(seen["body"]) == request.body, label
            sent_cookies = request.header_values("cookie")
            if sent_cookies and fmt == "apigw-v2":
                assert seen["cookie"] == "; ".join(sent_cookies), label
            elif sent_cookies:
                # serverless-http reads a single-value header over the list.
                assert seen["cookie"].endswith(sent_cookies[-1]), label
            if request.header_values("x-multi"):
                assert request.header_values("x-multi") == ["one", "two"]
                assert seen["multi"] == MULTI_SEEN[fmt], label
