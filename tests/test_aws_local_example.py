"""
The ``examples/aws-local`` recipe, run as a user runs it: its script starts
moto and creates the example functions, ``twistd lambdagw`` serves the
recipe's config, and a request through the gateway reaches moto's Lambda
API, signed, and comes back.

Only the ports change: the recipe's fixed ones (8080, 5055) may be taken on
a test machine, so the config is copied with free ones.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from .moto_lambda import free_loopback_port
from .process_fixtures import REPO_ROOT, child_environment, temp_dir, twistd_command

RECIPE = REPO_ROOT / "examples" / "aws-local"
DEADLINE = 20.0


class Running:
    """
    A child process whose output (stdout and stderr) is read line by line.
    """

    def __init__(self, case: SynchronousTestCase, argv: list[str], home: Path) -> None:
        self.process = subprocess.Popen(
            argv,
            env=child_environment(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""
        case.addCleanup(self.kill)

    def wait_for(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + DEADLINE
        while (match := pattern.search(self.output)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise AssertionError(f"no {pattern.pattern!r} in:\n{self.output.decode()}")
            if select.select([fd], [], [], left)[0]:
                self.output += os.read(fd, 65536)
        return match

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class AWSLocalRecipeTests(SynchronousTestCase):
    def test_request_through_the_gateway_reaches_moto(self) -> None:
        """
        GET /lambda/hello invokes hello in moto: Docker-free, moto answers
        with the event the gateway sent; a function the route does not
        include is a 404; both processes stop cleanly.
        """
        home = temp_dir(self)
        moto_port, gateway_port = free_loopback_port(), free_loopback_port()
        text = (RECIPE / "gw.ini").read_text()
        self.assertEqual(text.count("http://127.0.0.1:5055"), 1)
        config = home / "gw.ini"
        config.write_text(text.replace("127.0.0.1:5055", f"127.0.0.1:{moto_port}"))

        moto = Running(
            self,
            [sys.executable, str(RECIPE / "start-moto.py"), "--port", str(moto_port)],
            home,
        )
        moto.wait_for(re.compile(rb"ready: moto's Lambda API on \S+, functions hello and echo"))
        gateway = Running(
            self,
            [
                *twistd_command(),
                "-n",
                "--pidfile=",
                "lambdagw",
                "--config",
                str(config),
                "--listen",
                f"tcp:{gateway_port}:interface=127.0.0.1",
            ],
            home,
        )
        gateway.wait_for(re.compile(rb"ready; SIGTERM stops gracefully"))

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = f"http://127.0.0.1:{gateway_port}"
        with opener.open(f"{base}/lambda/hello?name=moto", timeout=DEADLINE) as response:
            self.assertEqual(response.status, 200)
            event = json.loads(response.read())
        self.assertEqual(event["type"], "HTTPJSON-REQ")
        self.assertEqual(event["meta"]["path"], "/lambda/hello")
        self.assertEqual(event["meta"]["query"], "name=moto")
        with self.assertRaises(urllib.error.HTTPError) as refused:
            opener.open(f"{base}/lambda/other", timeout=DEADLINE)
        self.assertEqual(refused.exception.code, 404)
        refused.exception.close()

        self.assertEqual(gateway.stop(), 0)
        self.assertEqual(moto.stop(), 0)
