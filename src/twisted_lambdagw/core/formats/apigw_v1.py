"""
API Gateway REST proxy events, payload format 1.0 (C{format = apigw-v1}).

For functions written for a REST API's C{/{proxy+}} resource.  The event is
what API Gateway sends, with these choices where it leaves room:

 - the stage is C{$default}, as for an HTTP API or a custom domain, so
   C{path} and C{requestContext.path} are equal and no adapter strips a
   stage from the path;
 - C{path} is the path the function sees, still percent-encoded as REST
   APIs send it (the adapters unquote it); C{pathParameters.proxy} is the
   same path decoded, without its leading C{/}, or null for C{/};
 - C{accountId} is L{ACCOUNT_ID} and C{apiId} L{API_ID}: visibly local;
 - the body is base64 unless its content type is textual and it is valid
   UTF-8 (REST APIs use the API's C{binaryMediaTypes} instead);
 - an authenticated gateway user is C{requestContext.authorizer.principalId},
   where a Lambda authorizer puts it (with its C{integrationLatency}, 0);
   without one, C{authorizer} is left out, as when no authorizer ran;
 - C{body} is null without a body, as are the query fields without a query
   and C{identity.clientCert} (no client certificate).

The reply needs C{statusCode}, an integer or (as REST APIs accept it) a
string of three digits; C{headers} and C{multiValueHeaders} are merged,
the multi-value list winning for a name in both.  A reply that names no
Content-Type is C{application/json}, as from a REST API.
"""

from __future__ import annotations

from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from ._common import (
    ACCOUNT_ID,
    API_ID,
    STAGE,
    domain_name,
    dump_json,
    epoch_millis,
    event_body,
    grouped,
    grouped_headers,
    last_values,
    parse_proxy_reply,
    query_pairs,
    request_time,
)

RESOURCE = "/{proxy+}"
"""The one resource every request matches."""

DEFAULT_CONTENT_TYPE = "application/json"
"""What a REST API answers with when the function names no Content-Type."""


def build(request: IncomingRequest) -> bytes:
    """
    The REST proxy event for one request.
    """
    headers = grouped_headers(request.headers, lower=False)
    query = grouped(query_pairs(request.raw_query, decode=True))
    body, encoded = event_body(request.body, request.header("content-type"))
    proxy = request.function_path[1:]
    domain = domain_name(request.host)
    identity = {
        "accessKey": None,
        "accountId": None,
        "apiKey": None,
        "apiKeyId": None,
        "caller": None,
        "clientCert": None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
        "sourceIp": request.remote_addr,
        "user": None,
        "userAgent": request.header("user-agent"),
        "userArn": None,
    }
    context: dict[str, object] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "extendedRequestId": request.request_id,
        "httpMethod": request.method,
        "identity": identity,
        "path": request.function_raw_path,
        "protocol": request.protocol,
        "requestId": request.request_id,
        "requestTime": request_time(request.time),
        "requestTimeEpoch": epoch_millis(request.time),
        "resourceId": API_ID,
        "resourcePath": RESOURCE,
        "stage": STAGE,
    }
    authorizer = _authorizer(request)
    if authorizer is not None:
        context["authorizer"] = authorizer
    event = {
        "resource": RESOURCE,
        "path": request.function_raw_path,
        "httpMethod": request.method,
        "headers": last_values(headers),
        "multiValueHeaders": headers,
        "queryStringParameters": last_values(query) or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": context,
        "body": body or None,
        "isBase64Encoded": encoded,
    }
    return dump_json(event)


def _authorizer(request: IncomingRequest) -> dict[str, object] | None:
    """
    C{{"claims", "scopes"}} for a JWT, C{{"principalId", ...context}} otherwise, as REST APIs.
    """
    found = request.authorizer or {}
    jwt, context = found.get("jwt"), found.get("lambda")
    if isinstance(jwt, dict):
        return dict(jwt)
    if isinstance(context, dict):
        return {"principalId": request.user or "", **context, "integrationLatency": 0}
    if request.user is None:
        return None
    return {"principalId": request.user, "integrationLatency": 0}


def parse(payload: bytes, document: object = NOT_PARSED) -> Reply:
    """
    The reply a REST proxy result means; L{MalformedReply} when it means none.
    """
    return parse_proxy_reply(
        payload, document, default_type=DEFAULT_CONTENT_TYPE, numeric_string=True
    )
