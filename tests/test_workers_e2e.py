"""
The real ``twistd -n lambdagw`` with ``workers = 2``, against a loopback
fake Lambda: both processes serve, a killed worker comes back, SIGTERM ends
every process, a parent killed outright leaves no worker behind, and a
taken port stops startup before any worker exists.

Which process served a request is read from the kernel: each gateway
process opens its own connections to the fake Lambda, and ``/proc`` says
which process owns the socket at the other end of each.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory

from twisted_lambdagw.testing import FakeContext, FakeLambda, Handler

from .process_fixtures import twist_command, twistd_command
from .test_twistd_e2e import (
    ACCESS_KEY,
    LISTENING,
    REGION,
    SECRET_KEY,
    Child,
    LoopbackLambdaTestCase,
    hello,
)

WORKER_STARTED = re.compile(rb"started worker 1 of 2 \(pid (\d+)\)")
WORKER_LISTENING = re.compile(rb"\[worker 1 [^\]]*\] \S+ starting on (\d+)")
REQUESTS = 40


def socket_inodes(pid: int) -> set[str]:
    """
    The inodes of the sockets process C{pid} holds.
    """
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:[") : -1])
    return inodes


def tcp_inode(local_port: int, remote_port: int) -> str | None:
    """
    The inode of the loopback TCP socket from C{local_port} to C{remote_port}.
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                ):
                    return fields[9]
    return None


def alive(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class WorkersTests(LoopbackLambdaTestCase):
    """
    twistd with workers = 2: two processes, started, served and stopped together.
    """

    async def start_workers_lambda(
        self, functions: Mapping[str, Handler] | None = None
    ) -> tuple[FakeLambda, WrappingFactory, int]:
        return await self.serve_fake_lambda({"hello": hello, **(functions or {})})

    def config(self, lambda_port: int) -> Path:
        return self.write_config(
            f"""\
            [gateway]
            workers = 2
            drain_timeout = 5s

            [aws]
            region = {REGION}
            access_key_id = {ACCESS_KEY}
            secret_access_key = {SECRET_KEY}
            endpoint_url = http://127.0.0.1:{lambda_port}

            [route:/lambda/]
            """
        )

    async def start_gateway(self, lambda_port: int) -> tuple[Child, int, int]:
        """
        Start twistd with two workers; return it, its port and worker 1's pid.
        """
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw"]
        config = str(self.config(lambda_port))
        child = self.spawn([*argv, "--config", config, "--listen", "tcp:0:interface=127.0.0.1"])
        port = int((await child.printed(LISTENING)).group(1))
        worker_pid = int((await child.printed(WORKER_STARTED)).group(1))
        self.addCleanup(self.kill_if_alive, worker_pid)
        await child.printed(WORKER_LISTENING)
        return child, port, worker_pid

    def kill_if_alive(self, pid: int) -> None:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def get_many(self, port: int, count: int) -> list[int]:
        """
        GET /lambda/hello C{count} times, each on a new connection, ten at a time.
        """
        client = self.http_client(persistent=False)

        async def get(i: int) -> int:
            response = await client.get(f"http://127.0.0.1:{port}/lambda/hello/{i}")
            await response.content()
            return int(response.code)

        codes: list[int] = []
        for start in range(0, count, 10):
            batch = [Deferred.fromCoroutine(get(i)) for i in range(start, min(count, start + 10))]
            codes += await gatherResults(batch)
        return codes

    async def served_by_worker(self, port: int, scrapes: int = 30) -> dict[str, float]:
        """
        The 2xx count on /lambda/ that each process's metrics page shows.
        """
        client = self.http_client(persistent=False)
        served: dict[str, float] = {}
        for _ in range(scrapes):
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
            page = (await response.content()).decode()
            for family in text_string_to_metric_families(page):
                for sample in family.samples:
                    labels = sample.labels
                    if (
                        sample.name == "lambdagw_requests_total"
                        and labels.get("route") == "/lambda/"
                        and labels.get("status_class") == "2xx"
                    ):
                        served[labels["worker"]] = sample.value
        return served

    def callers(self, connections: WrappingFactory, lambda_port: int, pids: set[int]) -> set[int]:
        """
        Which of C{pids} hold the client ends of the fake Lambda's connections.
        """
        owners = set()
        inodes = {pid: socket_inodes(pid) for pid in pids}
        for wrapper in list(connections.protocols):
            inode = tcp_inode(wrapper.transport.getPeer().port, lambda_port)
            owners |= {pid for pid in pids if inode in inodes[pid]}
        return owners

    async def wait_until_gone(self, pid: int, timeout: float = 15.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if not alive(pid):
                return
            await deferLater(self.reactor, 0.05)
        self.fail(f"process {pid} is still running")

    def parent_pid(self, child: Child) -> int:
        assert child.transport is not None
        pid: Any = child.transport.pid
        assert isinstance(pid, int)
        return pid

    async def test_both_serve_and_stop_together(self) -> None:
        """
        Requests on new connections reach both processes; SIGTERM ends both, cleanly.
        """
        fake, connections, lambda_port = await self.start_workers_lambda()
        child, port, worker_pid = await self.start_gateway(lambda_port)
        parent_pid = self.parent_pid(child)

        codes = await self.get_many(port, REQUESTS)
        self.assertEqual(codes, [203] * REQUESTS)
        self.assertEqual(len(fake.calls), REQUESTS)
        self.assertEqual(
            self.callers(connections, lambda_port, {parent_pid, worker_pid}),
            {parent_pid, worker_pid},
        )
        # Each process shows its own metrics, labelled with its worker id;
        # together they count every request.
        served = await self.served_by_worker(port)
        self.assertEqual(set(served), {"0", "1"})
        self.assertEqual(sum(served.values()), REQUESTS)

        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        self.assertIn(child.signal, (None, signal.SIGTERM), child.text)
        self.assertIn(child.exit_code, (None, 0), child.text)
        self.assertIn(f"worker 1 (pid {worker_pid}) stopped", child.text)
        self.assertFalse(alive(worker_pid))
        self.assertNotIn("Traceback", child.text)
        self.assertNotIn("parent process is gone", child.text)

    async def test_each_process_drains(self) -> None:
        """
        Requests under way in both processes when SIGTERM comes are all answered.
        """
        pending: list[Deferred[Any]] = []

        def slow(event: Any, context: FakeContext) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: hello(event, context))
            pending.append(d)
            return d

        _, connections, lambda_port = await self.start_workers_lambda({"slow": slow})
        child, port, worker_pid = await self.start_gateway(lambda_port)
        parent_pid = self.parent_pid(child)
        client = self.http_client(persistent=False)

        async def get(i: int) -> int:
            response = await client.get(f"http://127.0.0.1:{port}/lambda/slow/{i}")
            await response.content()
            return int(response.code)

        answers = gatherResults([Deferred.fromCoroutine(get(i)) for i in range(16)])
        for _ in range(400):
            if len(pending) == 16:
                break
            await deferLater(self.reactor, 0.025)
        self.assertEqual(len(pending), 16)
        self.assertEqual(
            self.callers(connections, lambda_port, {parent_pid, worker_pid}),
            {parent_pid, worker_pid},
        )
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        # Both processes wait for their own requests: the parent, and worker 1.
        await child.printed(re.compile(rb"(?m)^\S+ \[(?!worker )[^\]]*\] draining: waiting for"))
        await child.printed(re.compile(rb"\[worker 1 [^\]]*\] draining: waiting for"))
        for d in pending:
            d.callback(None)
        self.assertEqual(await answers, [203] * 16)
        await child.ended()
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)
        self.assertEqual(len(re.findall(r"drained: no request under way", child.text)), 2)
        self.assertFalse(alive(worker_pid))

    async def test_killed_worker_replaced(self) -> None:
        """
        A worker killed with SIGKILL is logged and replaced, and the new one serves.
        """
        _, connections, lambda_port = await self.start_workers_lambda()
        child, port, worker_pid = await self.start_gateway(lambda_port)
        os.kill(worker_pid, signal.SIGKILL)
        await child.printed(
            re.compile(
                rb"worker 1 \(pid %d\) exited: killed by SIGKILL; starting it again" % worker_pid
            )
        )
        restarted = re.compile(rb"started worker 1 of 2 \(pid (?!%d\))(\d+)\)" % worker_pid)
        new_pid = int((await child.printed(restarted)).group(1))
        self.addCleanup(self.kill_if_alive, new_pid)
        await child.printed(
            re.compile(WORKER_LISTENING.pattern + rb"(?s:.*)" + WORKER_LISTENING.pattern)
        )

        self.assertEqual(await self.get_many(port, REQUESTS), [203] * REQUESTS)
        self.assertIn(new_pid, self.callers(connections, lambda_port, {new_pid}))

        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        self.assertFalse(alive(new_pid))

    async def test_parent_killed(self) -> None:
        """
        A parent killed outright: its worker notices the closed pipe and exits by itself.
        """
        _, _, lambda_port = await self.start_workers_lambda()
        child, _, worker_pid = await self.start_gateway(lambda_port)
        assert child.transport is not None
        child.transport.signalProcess("KILL")
        await self.wait_until_gone(worker_pid)

    async def test_port_taken(self) -> None:
        """
        A taken port: twistd and twist exit 1 with the one line of one process, and start no worker.
        """
        taken = self.reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        options = ["lambdagw", "--config", str(self.config(1))]
        options += ["--listen", f"tcp:{port}:interface=127.0.0.1"]
        twistd = self.spawn([*twistd_command(), "-n", "--pidfile=", *options])
        twist = self.spawn([*twist_command(), *options])
        await gatherResults([twistd.ended(), twist.ended()])
        message = (
            f"lambdagw: Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
        )
        for child in twistd, twist:
            self.assertEqual((child.exit_code, child.signal), (1, None), child.text)
            self.assertNotIn("Traceback", child.text)
            self.assertNotIn("started worker", child.text)
        self.assertEqual(twist.errors.decode(), message + "\n")
        [line] = [line for line in twistd.text.splitlines() if "listen" in line]
        self.assertTrue(line.endswith(message), line)
