"""
A real C{redis-server} (Debian's package) for the tests: on a free loopback
port, with its own temporary directory, nothing saved, always stopped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from .external import missing
from .process_fixtures import temp_dir

STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """
    One redis-server process; C{kill} and C{start} again keep its port.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory: Path = temp_dir(case)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        case.addCleanup(self.kill)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(STARTUP_TIMEOUT)
            self.process = None

    def command(self, *words: str) -> bytes:
        """
        One command over a blocking socket; the first line of the reply.
        (For the test's own checks only, never on the reactor's work path.)
        """
        request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request.encode())
            reply = b""
            while b"\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        first = reply.split(b"\r\n")[0]
        if first.startswith(b"$"):
            return reply.split(b"\r\n")[1]
        return first

    def keys(self) -> list[str]:
        request = "*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request.encode())
            time.sleep(0.05)
            reply = s.recv(65536).decode()
        return [line for line in reply.split("\r\n") if line.startswith("lambdagw:")]

    def stall(self, case: SynchronousTestCase, seconds: float) -> None:
        """
        Make the server sleep (C{DEBUG SLEEP}) without waiting for it here.
        """
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        case.addCleanup(s.close)
        word = str(seconds)
        s.sendall(f"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${len(word)}\r\n{word}\r\n".encode())
