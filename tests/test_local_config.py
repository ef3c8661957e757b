"""
The ``[local]`` section of the config file.
"""

from __future__ import annotations

import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError, LocalConfig
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.core.node_runtime import find_node

FUNCTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions")


def local_config(body: str) -> LocalConfig:
    text = f"[local]\nfunctions_dir = {FUNCTIONS}\n{body}\n[route:/fn/]\nbackend = local\n"
    config = parse_config(text, "gw.ini", environ={})
    assert config.local is not None
    return config.local


class LocalConfigTests(SynchronousTestCase):
    def assertError(self, body: str, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            local_config(body)
        text = str(caught.exception)
        self.assertIn(message, text)
        self.assertTrue(text.startswith("gw.ini: [local] "), text)
        self.assertNotIn("\n", text)

    def test_defaults(self) -> None:
        """
        Only functions_dir is required; the rest has Lambda-like defaults,
        and node is looked up on the PATH of the environment given.
        """
        config = local_config("")
        self.assertEqual(
            config,
            LocalConfig(
                functions_dir=FUNCTIONS,
                concurrency=4,
                queue_size=100,
                idle_timeout=300.0,
                memory_size=128,
                region="us-east-1",
                env=(),
                python=sys.executable,
                node=find_node("node", os.defpath),
            ),
        )

    def test_all_keys(self) -> None:
        """Every key is read with its type."""
        config = local_config(
            "concurrency = 8\nqueue_size = 0\nidle_timeout = 2m\nmemory_size = 1024\n"
            f"region = eu-west-1\npython = {sys.executable}\n"
            "env = STAGE=dev\n      DSN = postgres://db/app?x=1\n      EMPTY=\n"
        )
        self.assertEqual(config.concurrency, 8)
        self.assertEqual(config.queue_size, 0)
        self.assertEqual(config.idle_timeout, 120.0)
        self.assertEqual(config.memory_size, 1024)
        self.assertEqual(config.region, "eu-west-1")
        self.assertEqual(config.python, os.path.abspath(sys.executable))
        self.assertEqual(
            config.env, (("STAGE", "dev"), ("DSN", "postgres://db/app?x=1"), ("EMPTY", ""))
        )

    def test_python_found_on_path(self) -> None:
        """A bare interpreter name is looked up on PATH and stored as a full path."""
        config = local_config("python = sh")
        self.assertTrue(os.path.isabs(config.python))

    def test_errors(self) -> None:
        """Bad values are one-line errors naming the key."""
        self.assertError("concurrency = 0", "concurrency: not an integer of at least 1")
        self.assertError("queue_size = -1", "queue_size: not an integer of at least 0")
        self.assertError("idle_timeout = soon", "idle_timeout: not a positive duration")
        self.assertError("memory_size = 64", "memory_size: not an integer of at least 128")
        self.assertError("memory_size = 20000", "memory_size: at most 10240")
        self.assertError("region = mars", "region: not an AWS region")
        self.assertError("python = /no/such/python", "python: no such executable")
        self.assertError("env = JUST_A_NAME", "env: not a NAME=VALUE line")
        self.assertError("env = 1X=2", "env: not a NAME=VALUE line")
        self.assertError("env = A=1\n  A=2", "env: A is given twice")
        self.assertError("workers = 2", "workers: unknown key")

    def test_reserved_env(self) -> None:
        """The runtime's own variables cannot be set through env."""
        for name in ("AWS_LAMBDA_RUNTIME_API", "_HANDLER", "AWS_REGION", "LAMBDA_TASK_ROOT"):
            self.assertError(f"env = {name}=x", f"env: {name} is set by the local runtime")

    def test_functions_dir(self) -> None:
        """functions_dir is required and must be a directory."""
        text = "[local]\n[route:/fn/]\nbackend = local\n"
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, "gw.ini", environ={})
        self.assertIn("[local] functions_dir: required", str(caught.exception))
        missing = os.path.join(FUNCTIONS, "no-such-dir")
        text = f"[local]\nfunctions_dir = {missing}\n[route:/fn/]\nbackend = local\n"
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, "gw.ini", environ={})
        self.assertIn("[local] functions_dir: not a directory", str(caught.exception))
