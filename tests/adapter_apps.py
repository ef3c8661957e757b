"""
Real web apps behind real Lambda adapters, to run behind the gateway's formats.

The same small API is written for FastAPI (through Mangum), Flask (through
apig-wsgi) and each aws-lambda-powertools resolver.  Every app answers:

 - C{GET|HEAD /items/<item_id>?tag=…}: the path parameter and every C{tag};
 - C{POST /json}: 201 with the JSON it received;
 - C{POST /form}: the repeated C{tag} fields and the C{name} field of a form;
 - C{POST /upload}: the size and SHA-256 of the raw body;
 - C{GET /image}: L{PNG}, as C{image/png};
 - C{GET /cookies}: the request's cookies, and two C{Set-Cookie} headers,
   C{a=1} and C{b=2};
 - C{GET /redirect}: a 302 to C{/items/1}.

L{ADAPTERS} pairs each handler with every event format its adapter accepts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

import flask
from apig_wsgi import make_lambda_handler
from aws_lambda_powertools.event_handler import (
    ALBResolver,
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
)
from aws_lambda_powertools.event_handler import Response as PowertoolsResponse
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.shared.cookies import Cookie
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.responses import Response as StarletteResponse
from mangum import Mangum


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x80\x01\xfe\x7f"))
    + _png_chunk(b"IEND", b"")
)
"""A real 2x1 RGB PNG: bytes that are not UTF-8, for the binary download."""


def summary(body: bytes) -> dict[str, object]:
    """
    What C{/upload} answers for the body it got.
    """
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def form_fields(text: str) -> dict[str, object]:
    """
    What C{/form} answers for a form body, for Powertools, which parses no forms.
    """
    fields = parse_qs(text, keep_blank_values=True)
    return {"tags": fields.get("tag", []), "name": fields.get("name", [""])[0]}


# --- FastAPI through Mangum ---

fastapi_app = FastAPI()


@fastapi_app.api_route("/items/{item_id}", methods=["GET", "HEAD"])
def fastapi_item(
    item_id: str, tag: Annotated[list[str] | None, Query()] = None
) -> dict[str, object]:
    return {"item_id": item_id, "tags": tag or []}


@fastapi_app.post("/json", status_code=201)
async def fastapi_json(request: Request) -> dict[str, object]:
    return {"received": await request.json()}


@fastapi_app.post("/form")
def fastapi_form(
    name: Annotated[str, Form()], tag: Annotated[list[str] | None, Form()] = None
) -> dict[str, object]:
    return {"tags": tag or [], "name": name}


@fastapi_app.post("/upload")
async def fastapi_upload(request: Request) -> dict[str, object]:
    return summary(await request.body())


@fastapi_app.get("/image")
def fastapi_image() -> StarletteResponse:
    return StarletteResponse(PNG, media_type="image/png")


@fastapi_app.get("/cookies")
def fastapi_cookies(request: Request) -> StarletteResponse:
    response = JSONResponse({"cookies": sorted(request.cookies.items())})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@fastapi_app.get("/redirect")
def fastapi_redirect() -> StarletteResponse:
    return RedirectResponse("/items/1", status_code=302)


mangum_handler = Mangum(fastapi_app, lifespan="off")


# --- Flask through apig-wsgi ---

flask_app = flask.Flask(__name__)


@flask_app.get("/items/<item_id>")
def flask_item(item_id: str) -> dict[str, object]:
    return {"item_id": item_id, "tags": flask.request.args.getlist("tag")}


@flask_app.post("/json")
def flask_json() -> tuple[dict[str, object], int]:
    return {"received": flask.request.get_json()}, 201


@flask_app.post("/form")
def flask_form() -> dict[str, object]:
    form = flask.request.form
    return {"tags": form.getlist("tag"), "name": form["name"]}


@flask_app.post("/upload")
def flask_upload() -> dict[str, object]:
    return summary(flask.request.get_data())


@flask_app.get("/image")
def flask_image() -> flask.Response:
    return flask.Response(PNG, mimetype="image/png")


@flask_app.get("/cookies")
def flask_cookies() -> flask.Response:
    response = flask.jsonify(cookies=sorted(flask.request.cookies.items(multi=True)))
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@flask_app.get("/redirect")
def flask_redirect() -> flask.Response:
    return flask.redirect("/items/1", code=302)  # type: ignore[return-value]


@flask_app.get("/who")
def flask_who() -> dict[str, object]:
    headers = flask.request.headers
    return {name: headers.get(name) for name in ("X-Authenticated-User", "X-Forwarded-For")}


apig_wsgi_handler = make_lambda_handler(flask_app, binary_support=True)


# --- aws-lambda-powertools resolvers ---


def powertools_routes(app: ApiGatewayResolver) -> ApiGatewayResolver:
    """
    Register the test API on one resolver.
    """

    def raw_body() -> bytes:
        event = app.current_event
        body = event.body or ""
        return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")

    def json_response(document: object, status: int = 200) -> PowertoolsResponse[str]:
        return PowertoolsResponse(
            status_code=status, content_type="application/json", body=json.dumps(document)
        )

    @app.route("/items/<item_id>", method=["GET", "HEAD"])
    def item(item_id: str) -> PowertoolsResponse[str]:
        tags = app.current_event.resolved_query_string_parameters.get("tag", [])
        return json_response({"item_id": item_id, "tags": tags})

    @app.post("/json")
    def post_json() -> PowertoolsResponse[str]:
        return json_response({"received": json.loads(raw_body())}, 201)

    @app.post("/form")
    def post_form() -> PowertoolsResponse[str]:
        return json_response(form_fields(raw_body().decode("ascii")))

    @app.post("/upload")
    def upload() -> PowertoolsResponse[str]:
        return json_response(summary(raw_body()))

    @app.get("/image")
    def image() -> PowertoolsResponse[bytes]:
        return PowertoolsResponse(status_code=200, content_type="image/png", body=PNG)

    @app.get("/cookies")
    def cookies() -> PowertoolsResponse[str]:
        return PowertoolsResponse(
            status_code=200,
            content_type="application/json",
            body=json.dumps({"cookies": sorted(app.current_event.resolved_cookies_field.items())}),
            cookies=[Cookie(name="a", value="1"), Cookie(name="b", value="2")],
        )

    @app.get("/redirect")
    def redirect() -> PowertoolsResponse[str]:
        return PowertoolsResponse(status_code=302, headers={"Location": "/items/1"}, body="")

    return app


rest_resolver = powertools_routes(APIGatewayRestResolver())
http_resolver = powertools_routes(APIGatewayHttpResolver())
url_resolver = powertools_routes(LambdaFunctionUrlResolver())
alb_resolver = powertools_routes(ALBResolver(decode_query_parameters=True))


# --- The table the tests run ---


@dataclass
class FakeContext:
    """
    The Lambda context object, with the attributes the adapters may read.
    """

    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    function_name: str = "adapter-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:adapter-test"
    memory_limit_in_mb: int = 128
    log_group_name: str = "/aws/lambda/adapter-test"
    log_stream_name: str = "local"
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
"""A Lambda handler: each adapter types the context object its own way."""


@dataclass(frozen=True)
class AdapterCase:
    """
    One function: an adapter's handler, and the event format the route uses.
    """

    adapter: str
    format: str
    handler: Handler

    def __str__(self) -> str:
        return f"{self.adapter}-{self.format}"


ADAPTERS: tuple[AdapterCase, ...] = (
    *(
        AdapterCase("mangum", f, mangum_handler)
        for f in ("apigw-v1", "apigw-v2", "alb", "alb-multi")
    ),
    *(
        AdapterCase("apig-wsgi", f, apig_wsgi_handler)
        for f in ("apigw-v1", "apigw-v2", "alb", "alb-multi")
    ),
    AdapterCase("powertools-rest", "apigw-v1", rest_resolver.resolve),
    AdapterCase("powertools-http", "apigw-v2", http_resolver.resolve),
    AdapterCase("powertools-url", "apigw-v2", url_resolver.resolve),
    AdapterCase("powertools-alb", "alb", alb_resolver.resolve),
    AdapterCase("powertools-alb", "alb-multi", alb_resolver.resolve),
)
