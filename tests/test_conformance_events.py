"""
Every event the gateway builds, held up key path by key path against events
AWS captured (C{tests/data/aws-events}, whose README names their sources):

 - a key every sample of a format has is in every event, with a JSON type
   some sample has;
 - a key only some samples have (AWS leaves it out when unset) is either
   left out or sent with a type some sample has, and never sent empty or
   null unless a sample shows it so;
 - a key no sample has is sent only with a reason written here.

Departures are listed per format with their reason: L{NOT_FROM_AWS} (keys
AWS never sends), L{MAY_OMIT} (keys every sample has that an event may
leave out) and L{EXTRA_TYPES} (JSON types no sample shows).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conformance_requests import REQUESTS, event

DATA = Path(__file__).parent / "data" / "aws-events"

SAMPLES: dict[str, list[str]] = {
    "apigw-v1": [
        "aws-lambda-go/apigw-request.json",
        "powertools-lambda-python/apiGatewayProxyEvent.json",
        "powertools-lambda-python/apiGatewayProxyEventPrincipalId.json",
    ],
    "apigw-v2": [
        "aws-lambda-go/apigw-v2-request-no-authorizer.json",
        "aws-lambda-go/apigw-v2-request-lambda-authorizer.json",
        "aws-lambda-go/lambda-urls-request.json",
        "powertools-lambda-python/apiGatewayProxyV2Event.json",
        "powertools-lambda-python/apiGatewayProxyV2LambdaAuthorizerEvent.json",
        "powertools-lambda-python/lambdaFunctionUrlEvent.json",
    ],
    "alb": [
        "aws-lambda-go/alb-lambda-target-request-headers-only.json",
        "powertools-lambda-python/albEvent.json",
    ],
    "alb-multi": [
        "aws-lambda-go/alb-lambda-target-request-multivalue-headers.json",
        "powertools-lambda-python/albMultiValueHeadersEvent.json",
        "powertools-lambda-python/albMultiValueQueryStringEvent.json",
    ],
    "httpjson": ["caddy-awslambda/httpjson-request.json"],
}

MAPS: dict[str, set[str]] = {
    "apigw-v1": {
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext.authorizer",
    },
    "apigw-v2": {
        "headers",
        "queryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext.authorizer.lambda",
        "requestContext.authorizer.jwt.claims",
    },
    "alb": {"headers", "queryStringParameters"},
    "alb-multi": {"multiValueHeaders", "multiValueQueryStringParameters"},
    "httpjson": {"meta.headers"},
}
"""Objects whose keys are data (header names, query keys), not fields: their
entries are compared as C{path.*}."""

NOT_FROM_AWS: dict[str, dict[str, str]] = {
    "httpjson": {
        "bodyEncoding": (
            "a body that is not UTF-8 travels base64 with this marker; the original"
            " corrupted such bodies (Go replaced every bad byte with U+FFFD)"
        ),
    },
}

MAY_OMIT: dict[str, dict[str, str]] = {
    "apigw-v1": {
        "requestContext.authorizer": (
            "every sample ran an authorizer; without one API Gateway sends no authorizer"
            " context, and Powertools' schema has it nullish.  Sent when a gateway user"
            " logged in."
        ),
    },
}

EXTRA_TYPES: dict[str, dict[str, dict[str, str]]] = {
    "apigw-v1": {
        "body": {"null": "REST APIs send null for a request without a body (AWS docs)"},
        "queryStringParameters": {"null": "REST APIs send null without a query (AWS docs)"},
        "multiValueQueryStringParameters": {"null": "REST APIs send null without a query"},
        "requestContext.identity.clientCert": {
            "null": "no client certificate (no mutual TLS): null, as REST APIs send it"
        },
        "requestContext.identity.apiKey": {"null": "no API key: null, as REST APIs send it"},
        "requestContext.identity.apiKeyId": {"null": "no API key: null, as REST APIs send it"},
        "requestContext.identity.userAgent": {
            "null": "a request without User-Agent: null, as REST APIs send it"
        },
    },
}


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    assert isinstance(value, dict), value
    return "object"


def is_empty(value: object) -> bool:
    return value is None or value == [] or value == {} or value == ""


@dataclass
class Shape:
    """
    What a set of documents holds at each key path.
    """

    maps: set[str]
    types: dict[str, set[str]] = field(default_factory=dict)
    present: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    empty: set[str] = field(default_factory=set)

    def add(self, document: object, path: str = "") -> None:
        self.types.setdefault(path, set()).add(json_type(document))
        if is_empty(document):
            self.empty.add(path)
        if isinstance(document, dict):
            self.objects[path] += 1
            for key, value in document.items():
                child = child_path(path, "*" if path in self.maps else key)
                self.present[child] += 1
                self.add(value, child)
        elif isinstance(document, list):
            for item in document:
                self.add(item, f"{path}[]")

    def always(self) -> set[str]:
        """
        The key paths (not map entries) present wherever their parent object is.
        """
        return {
            path
            for path, count in self.present.items()
            if not path.endswith("*") and count == self.objects[parent_path(path)]
        }


def child_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def parent_path(path: str) -> str:
    return path.rpartition(".")[0]


def sample_shape(fmt: str) -> Shape:
    shape = Shape(MAPS[fmt])
    for name in SAMPLES[fmt]:
        shape.add(json.loads((DATA / name).read_text(encoding="utf-8")))
    return shape


def differences(fmt: str, built: dict[str, Any]) -> list[str]:
    """
    How one built event departs from the samples without a written reason.
    """
    samples = sample_shape(fmt)
    mine = Shape(MAPS[fmt])
    mine.add(built)
    problems = []
    foreign = NOT_FROM_AWS.get(fmt, {})
    extra = EXTRA_TYPES.get(fmt, {})
    for path, types in sorted(mine.types.items()):
        if not path:
            continue
        if path not in samples.types:
            if not any(path == key or path.startswith(key + ".") for key in foreign):
                problems.append(f"{path}: AWS never sends this key")
            continue
        for kind in types - samples.types[path] - set(extra.get(path, {})):
            problems.append(f"{path}: {kind}, where AWS sends {sorted(samples.types[path])}")
    always = samples.always()
    for path in sorted(always):
        missing = mine.objects[parent_path(path)] and not mine.present[path]
        if missing and path not in MAY_OMIT.get(fmt, {}):
            problems.append(f"{path}: AWS always sends this key")
    for path in sorted(mine.present):
        optional = path in samples.present and path not in always and not path.endswith("*")
        excused = set(extra.get(path, {})) & mine.types[path]
        if optional and path in mine.empty and path not in samples.empty and not excused:
            problems.append(f"{path}: sent empty, where AWS leaves the key out")
    return problems


@pytest.mark.parametrize("label", sorted(REQUESTS))
@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_event_matches_samples(fmt: str, label: str) -> None:
    """The event for each request has AWS's keys, AWS's types, and nothing unexplained."""
    assert differences(fmt, event(fmt, REQUESTS[label])) == []


class CheckTests:
    """
    The comparison itself finds each kind of departure.
    """

    def test_foreign_key(self) -> None:
        built = event("alb", REQUESTS["get-bare"])
        built["extra"] = 1
        assert differences("alb", built) == ["extra: AWS never sends this key"]

    def test_missing_key(self) -> None:
        built = event("alb", REQUESTS["get-bare"])
        del built["isBase64Encoded"]
        assert differences("alb", built) == ["isBase64Encoded: AWS always sends this key"]

    def test_wrong_type(self) -> None:
        built = event("apigw-v2", REQUESTS["get-bare"])
        built["requestContext"]["timeEpoch"] = "1"
        assert differences("apigw-v2", built) == [
            "requestContext.timeEpoch: string, where AWS sends ['number']"
        ]

    def test_empty_optional(self) -> None:
        built = event("apigw-v2", REQUESTS["get-bare"])
        built["cookies"] = []
        assert differences("apigw-v2", built) == [
            "cookies: sent empty, where AWS leaves the key out"
        ]

    def test_null_optional(self) -> None:
        built = event("apigw-v2", REQUESTS["get-bare"])
        built["body"] = None
        assert "body: null, where AWS sends ['string']" in differences("apigw-v2", built)

    def test_every_reason_is_used(self) -> None:
        """Each written departure is one some built event needs."""
        used: set[tuple[str, str]] = set()
        for fmt in SAMPLES:
            for request in REQUESTS.values():
                built = Shape(MAPS[fmt])
                built.add(event(fmt, request))
                used |= {(fmt, path) for path in built.present}
                for path, types in built.types.items():
                    used |= {(fmt, f"{path}:{kind}") for kind in types}
        for fmt, paths in NOT_FROM_AWS.items():
            for path in paths:
                assert (fmt, path) in used, (fmt, path)
        for fmt, typed in EXTRA_TYPES.items():
            for path, kinds in typed.items():
                for kind in kinds:
                    assert (fmt, f"{path}:{kind}") in used, (fmt, path, kind)
