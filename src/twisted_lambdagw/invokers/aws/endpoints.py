"""
Which URL a route's Invoke calls go to, from botocore's endpoint data.

botocore's endpoint rules build a host for any region and any switch: they
happily produce ``lambda-fips.eu-west-1.amazonaws.com``, a host that does not
exist.  So the rules only build the URL; whether Lambda really has a FIPS or
dual-stack endpoint in a region is checked against the variants that
``endpoints.json`` lists, and a route asking for one that is not listed is a
configuration error rather than a DNS failure on the first request.

Everything here loads botocore data files (tens of milliseconds the first
time), so it runs while the gateway is assembled, never per request.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """
    What decides a route's endpoint.

    ``url`` is the configured ``endpoint_url``; when set, it wins and the
    switches are ignored (the config reader refuses the combination).
    """

    region: str
    url: str | None = None
    fips: bool = False
    dualstack: bool = False


_NAMES = {"fips": "FIPS", "dualstack": "dual-stack"}


class EndpointError(ValueError):
    """
    The endpoint asked for does not exist; the text says why, in one line.
    """


@functools.cache
def _data(name: str) -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader().load_data(name)


def partition_of(region: str) -> str | None:
    """
    The AWS partition (``aws``, ``aws-cn``, ``aws-us-gov``, ...) of a region.

    Listed regions first, then each partition's region pattern, as botocore's
    rules do; None for a region no partition claims.
    """
    partitions = _data("partitions")["partitions"]
    for partition in partitions:
        if region in partition["regions"]:
            return str(partition["id"])
    for partition in partitions:
        if re.match(partition["regionRegex"], region):
            return str(partition["id"])
    return None


def _listed_variants(region: str) -> set[tuple[str, ...]]:
    """
    The endpoint variants endpoints.json lists for Lambda in a region.
    """
    variants: set[tuple[str, ...]] = set()
    for partition in _data("endpoints")["partitions"]:
        service = partition["services"].get("lambda", {})
        entry = service.get("endpoints", {}).get(region)
        if entry is not None:
            variants.update(tuple(sorted(v["tags"])) for v in entry.get("variants", []))
    return variants


def check_variant(spec: EndpointSpec) -> None:
    """
    Raise L{EndpointError} when the FIPS or dual-stack endpoint asked for is not listed.
    """
    if spec.url is not None or not (spec.fips or spec.dualstack):
        return
    tags = [tag for tag, on in (("dualstack", spec.dualstack), ("fips", spec.fips)) if on]
    if tuple(tags) not in _listed_variants(spec.region):
        kind = " ".join(_NAMES[tag] for tag in reversed(tags))
        raise EndpointError(f"Lambda has no {kind} endpoint in {spec.region}")


@functools.cache
def resolve_endpoint(spec: EndpointSpec) -> str:
    """
    The Lambda endpoint URL for a route, from botocore's endpoint rules.

    Raises L{EndpointError} for a FIPS or dual-stack endpoint botocore's data
    does not list for the region.
    """
    if spec.url:
        return spec.url.rstrip("/")
    check_variant(spec)
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    # Endpoint rules need no credentials; placeholders keep botocore from
    # searching the credential chain, which may block on the network.
    placeholder = "endpoint-lookup-only"
    client = session.create_client(
        "lambda",
        region_name=spec.region,
        aws_access_key_id=placeholder,
        aws_secret_access_key=placeholder,
        config=Config(use_fips_endpoint=spec.fips, use_dualstack_endpoint=spec.dualstack),
    )
    return str(client.meta.endpoint_url)
