"""
An HTTP gateway for AWS Lambda, on Twisted.

The public API, for embedding the gateway in a Twisted application:
L{Gateway} (from a config file with C{Gateway.from_file}, or from L{Config}
objects), the config records, L{load_config}, L{parse_config},
L{ConfigError}, L{GatewayResource} and L{GatewaySite}.

The names are imported on first use, so that importing a light module of
the package (the C{lambdagw} command, C{twisted_lambdagw.testing}) does not
load botocore, treq and twisted.web with the gateway.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.config import (
        AuthConfig,
        AWSConfig,
        Config,
        ConfigError,
        GatewayConfig,
        LocalConfig,
        RouteConfig,
    )
    from .core.config_reader import load_config, parse_config
    from .gateway import Gateway
    from .server.resource import GatewayResource
    from .server.site import GatewaySite

_WHERE = {
    "AuthConfig": "core.config",
    "AWSConfig": "core.config",
    "Config": "core.config",
    "ConfigError": "core.config",
    "GatewayConfig": "core.config",
    "LocalConfig": "core.config",
    "RouteConfig": "core.config",
    "load_config": "core.config_reader",
    "parse_config": "core.config_reader",
    "Gateway": "gateway",
    "GatewayResource": "server.resource",
    "GatewaySite": "server.site",
}

__all__ = [
    "AWSConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayResource",
    "GatewaySite",
    "LocalConfig",
    "RouteConfig",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
