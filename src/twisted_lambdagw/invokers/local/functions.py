"""
Finding a local function on disk and describing how to run it.

A function ``NAME`` is ``functions_dir/NAME.py`` (run by AWS's runtime
client, ``awslambdaric``, with handler ``NAME.handler``),
``functions_dir/NAME.mjs`` or ``NAME.js`` (run by AWS's Node.js runtime
client, ``aws-lambda-ric``, with handler ``NAME.handler``) or
``functions_dir/NAME/bootstrap`` (a custom runtime, run as it is).  Only
names that match Lambda's function-name pattern are ever turned into paths,
so no client-chosen text can reach the filesystem.

A L{FunctionSpec} includes the file's identity (inode, size, modification
time): when it differs from the one a pool was started with, the file
changed and the pool's workers are replaced.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from twisted_lambdagw.core.config import FUNCTION_NAME, LocalConfig
from twisted_lambdagw.core.errors import InvokeFailed, NotFound
from twisted_lambdagw.core.node_runtime import PACKAGE, SUFFIXES

ACCOUNT_ID = "000000000000"
"""The account in the ARNs a local function sees; no real account is involved."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """
    One local function at one version, as it is on disk right now.
    """

    name: str
    version: str
    kind: Literal["python", "node", "bootstrap"]
    path: str
    task_root: str
    identity: tuple[int, int, int]

    @property
    def handler(self) -> str:
        return "bootstrap" if self.kind == "bootstrap" else f"{self.name}.handler"


def find_function(functions_dir: str, name: str, version: str) -> FunctionSpec:
    """
    The function ``name`` in ``functions_dir``.

    Raises L{NotFound} when there is no such function (or the name is not a
    function name at all) and L{InvokeFailed} when the files are unusable.
    """
    if not FUNCTION_NAME.fullmatch(name):
        raise NotFound(detail=f"not a local function name: {name!r}")
    candidates: list[tuple[str, Literal["python", "node", "bootstrap"]]] = [
        (os.path.join(functions_dir, name + ".py"), "python"),
        *((os.path.join(functions_dir, name + suffix), "node") for suffix in SUFFIXES),
        (os.path.join(functions_dir, name, "bootstrap"), "bootstrap"),
    ]
    found = [(path, kind, st) for path, kind in candidates if (st := _file_stat(path)) is not None]
    if not found:
        raise NotFound(
            detail=f"no {name}.py, {name}.mjs, {name}.js or {name}/bootstrap in {functions_dir}"
        )
    if len(found) > 1:
        paths = " and ".join(path for path, _, _ in found)
        raise InvokeFailed(detail=f"both {paths} exist: which one is {name}?")
    path, kind, st = found[0]
    if kind == "bootstrap" and not os.access(path, os.X_OK):
        raise InvokeFailed(detail=f"{path} is not executable")
    return FunctionSpec(
        name=name,
        version=version,
        kind=kind,
        path=path,
        task_root=os.path.dirname(path),
        identity=(st.st_ino, st.st_size, st.st_mtime_ns),
    )


def _file_stat(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def function_arn(spec: FunctionSpec, region: str) -> str:
    """
    The ARN the runtime is told it was invoked as.
    """
    arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.name}"
    return arn if spec.version == "$LATEST" else f"{arn}:{spec.version}"


def command(spec: FunctionSpec, config: LocalConfig) -> tuple[str, list[str]]:
    """
    The executable and argument list that start a worker for ``spec``.
    """
    if spec.kind == "python":
        return config.python, [config.python, "-m", "awslambdaric", spec.handler]
    if spec.kind == "node":
        # The client takes the functions directory from its working
        # directory, which the worker sets to the task root.
        if config.node is None or config.node_client is None:
            missing = "node" if config.node is None else PACKAGE
            raise InvokeFailed(detail=f"{spec.path} needs {missing}, which is not installed")
        return config.node, [config.node, config.node_client, spec.handler]
    return spec.path, [spec.path]


def environment(
    spec: FunctionSpec, config: LocalConfig, gateway_environ: Mapping[str, str]
) -> dict[str, str]:
    """
    Lambda's environment for a worker of ``spec``, without the per-worker keys.

    Built from nothing rather than from the gateway's environment, so the
    gateway's own AWS credentials never reach a function; only ``PATH`` is
    taken over.  The config's ``env`` entries come last and may override
    ``PATH``, ``TZ`` and ``LANG`` (config rejects the runtime's own keys).
    """
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "LAMBDA_TASK_ROOT": spec.task_root,
        "_HANDLER": spec.handler,
        "PATH": gateway_environ.get("PATH") or os.defpath,
        "TZ": ":UTC",
        "LANG": "C.UTF-8",
    }
    env.update(config.env)
    return env
