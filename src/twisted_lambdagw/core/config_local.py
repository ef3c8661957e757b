"""
The part of the config reader that reads the C{[local]} section (where local
functions live and how they run), and the section access every part uses.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
from collections.abc import Mapping

from .config import (
    LocalConfig,
    resolve_path,
)
from .config_values import Section
from .node_runtime import PACKAGE, find_client, find_node, how_to_install, node_functions

# Re-exported: these names were always config's.
from .values import BACKENDS as BACKENDS
from .values import DURATION as DURATION
from .values import FUNCTION_ARN as FUNCTION_ARN
from .values import FUNCTION_NAME as FUNCTION_NAME
from .values import QUALIFIER as QUALIFIER
from .values import REGION as REGION

_LOCAL_KEYS = {
    "functions_dir", "concurrency", "queue_size", "idle_timeout", "memory_size", "region",
    "env", "python", "node", "node_runtime",
}  # fmt: skip
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LOCAL_RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})  # fmt: skip


class SectionReader:
    """
    What the config reader knows while it reads, and the C{[local]} section.
    """

    parser: configparser.ConfigParser
    path: str
    environ: Mapping[str, str]
    base_dir: str | None

    def file_path(self, value: str) -> str:
        """
        A file name from the config, relative ones taken from the config's directory.
        """
        return resolve_path(value, self.base_dir)

    def section(self, name: str, allowed: set[str]) -> Section:
        values = dict(self.parser[name]) if self.parser.has_section(name) else {}
        return Section(self.path, name, values, allowed)

    def read_local(self) -> LocalConfig:
        s = self.section("local", _LOCAL_KEYS)
        default = LocalConfig(functions_dir="")
        functions_dir = s.text("functions_dir")
        if functions_dir is None:
            raise s.error("functions_dir", "required: the directory holding the functions")
        functions_dir = self.file_path(functions_dir)
        if not os.path.isdir(functions_dir):
            raise s.error("functions_dir", f"not a directory: {functions_dir!r}")
        memory_size = s.integer("memory_size", default.memory_size, minimum=128)
        if memory_size > 10240:
            raise s.error("memory_size", f"at most 10240 (MB), as in Lambda: {memory_size}")
        region = s.text("region", default.region)
        assert region is not None
        if not REGION.fullmatch(region):
            raise s.error("region", f"not an AWS region: {region!r}")
        python = s.text("python")
        if python is None:
            python = default.python
        else:
            # A bare name is looked up on PATH; a path is the config's.
            found = shutil.which(self.file_path(python) if os.sep in python else python)
            if found is None:
                raise s.error("python", f"no such executable: {python!r}")
            python = os.path.abspath(found)
        node, node_client = self.node(s, functions_dir, default)
        return LocalConfig(
            functions_dir=functions_dir,
            concurrency=s.integer("concurrency", default.concurrency),
            queue_size=s.integer("queue_size", default.queue_size, minimum=0),
            idle_timeout=s.duration("idle_timeout", default.idle_timeout),
            memory_size=memory_size,
            region=region,
            env=self.local_env(s),
            python=python,
            node=node,
            node_client=node_client,
        )

    def node(
        self, s: Section, functions_dir: str, default: LocalConfig
    ) -> tuple[str | None, str | None]:
        """
        C{node} and the C{aws-lambda-ric} entry point, each None if absent.

        Missing is an error only where it is needed: a C{node} or
        C{node_runtime} that was asked for, or Node.js functions in
        C{functions_dir} that could not run.
        """
        client = default.node_client
        node_name = s.text("node")
        search = self.environ.get("PATH", os.defpath)
        if node_name is None:
            node = find_node("node", search)
        else:
            node = find_node(
                self.file_path(node_name) if os.sep in node_name else node_name, search
            )
            if node is None:
                raise s.error("node", f"no such executable: {node_name!r}")
        runtime_dir = s.text("node_runtime")
        if runtime_dir is not None:
            client = find_client(self.file_path(runtime_dir))
            if client is None:
                raise s.error(
                    "node_runtime",
                    f"no built {PACKAGE} in {self.file_path(runtime_dir)!r} (run npm ci there)",
                )
        scripts = node_functions(functions_dir)
        if scripts and node is None:
            raise s.error(
                "functions_dir",
                f"{scripts[0]} is a Node.js function, but there is no 'node' on PATH"
                " (install Node.js, or set [local] node)",
            )
        if scripts and client is None:
            raise s.error(
                "functions_dir",
                f"{scripts[0]} is a Node.js function, but {PACKAGE} is not installed"
                f" ({how_to_install()})",
            )
        return node, client

    def local_env(self, s: Section) -> tuple[tuple[str, str], ...]:
        env: dict[str, str] = {}
        for line in s.lines("env"):
            name, equals, value = line.partition("=")
            name = name.strip()
            if not equals or not ENV_NAME.fullmatch(name):
                raise s.error("env", f"not a NAME=VALUE line: {line!r}")
            if name in LOCAL_RESERVED_ENV:
                raise s.error("env", f"{name} is set by the local runtime itself")
            if name in env:
                raise s.error("env", f"{name} is given twice")
            env[name] = value.strip()
        return tuple(env.items())
