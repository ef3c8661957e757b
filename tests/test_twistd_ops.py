"""
Running the real ``twistd lambdagw`` as an operator does: from a directory
other than the config's, with a broken config, and twice in one folder.
"""

from __future__ import annotations

import base64
import shutil
import textwrap

import bcrypt
from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers

from .process_fixtures import REPO_ROOT, twist_command, twistd_command
from .test_twistd_e2e import LISTENING, READY, Child, LoopbackLambdaTestCase

LOOPBACK = "tcp:0:interface=127.0.0.1"


class RelativePathTests(LoopbackLambdaTestCase):
    """
    Relative paths in the config are its own directory's, not the current one's.
    """

    async def get_hello(self, child: Child, headers: Headers | None = None) -> dict[str, str]:
        port = int((await child.printed(LISTENING)).group(1))
        client = self.http_client(persistent=False)
        response = await client.get(
            f"http://127.0.0.1:{port}/lambda/hello?name=ops", headers=headers
        )
        body = await response.json()
        self.assertEqual(response.code, 200, body)
        self.assertEqual(body["message"], "Hello, ops!")
        return dict(body)

    async def stop(self, child: Child) -> None:
        await child.printed(READY)
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)

    async def test_bundled_config_from_elsewhere(self) -> None:
        """
        The bundled etc/gw.ini, named by its absolute path from another
        directory, serves the example functions.
        """
        config = REPO_ROOT / "etc" / "gw.ini"
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", str(config)]
        child = self.spawn([*argv, "--listen", LOOPBACK])
        await self.get_hello(child)
        await self.stop(child)

    async def test_relative_config_path(self) -> None:
        """
        ``--config lgw/etc/gw.ini`` from the folder above: the functions, the
        users file and the access log are found next to the config, and the
        key files of an ``ssl:`` listener are read from there too.
        """
        lgw = self.home / "lgw"
        (lgw / "etc").mkdir(parents=True)
        shutil.copytree(REPO_ROOT / "examples" / "functions", lgw / "functions")
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
        (lgw / "etc" / "users").write_text(f"ops:{hashed}\n")
        (lgw / "logs").mkdir()
        (lgw / "etc" / "gw.ini").write_text(
            textwrap.dedent(
                """\
                [gateway]
                access_log = ../logs/access.log

                [auth]
                users_file = users

                [local]
                functions_dir = ../functions

                [route:/lambda/]
                backend = local
                """
            )
        )
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", "lgw/etc/gw.ini"]
        child = self.spawn([*argv, "--listen", LOOPBACK])
        basic = "Basic " + base64.b64encode(b"ops:pw").decode()
        await self.get_hello(child, Headers({"Authorization": [basic]}))
        await self.stop(child)
        [line] = (lgw / "logs" / "access.log").read_text().splitlines()
        self.assertIn('"/lambda/hello"', line)

    async def test_ssl_files_and_listen_option(self) -> None:
        """
        An ``ssl:`` listen line's key file is the config directory's; the
        same line given as ``--listen`` is the current directory's.
        """
        conf = self.home / "conf"
        conf.mkdir()
        (conf / "gw.ini").write_text(
            "[gateway]\nlisten = ssl:0:interface=127.0.0.1:privateKey=tls/key.pem\n\n"
            f"[local]\nfunctions_dir = {REPO_ROOT / 'examples' / 'functions'}\n\n"
            "[route:/lambda/]\nbackend = local\n"
        )
        twist = twist_command()
        options = ["lambdagw", "--config", "conf/gw.ini"]
        from_file, from_option = await self.run_both(
            [*twist, *options], [*twist, *options, "--listen", "ssl:0:privateKey=tls/key.pem"]
        )
        self.assertEqual(
            from_file.errors.decode(),
            f"conf/gw.ini: [gateway] listen: bad endpoint"
            f" 'ssl:0:interface=127.0.0.1:privateKey={conf}/tls/key.pem':"
            f" privateKey '{conf}/tls/key.pem': cannot read: No such file or directory\n",
        )
        self.assertEqual(
            from_option.errors.decode(),
            "conf/gw.ini: [gateway] listen: bad endpoint 'ssl:0:privateKey=tls/key.pem':"
            " privateKey 'tls/key.pem': cannot read: No such file or directory\n",
        )

    async def run_both(self, first: list[str], second: list[str]) -> tuple[Child, Child]:
        one, two = self.spawn(first), self.spawn(second)
        await one.ended()
        await two.ended()
        return one, two


class ConfigErrorTests(LoopbackLambdaTestCase):
    """
    A config error under twistd and twist: one line on stderr, exit status 1.
    """

    async def test_exact_stderr(self) -> None:
        """
        Nothing but the line: no usage banner, no blank line, no argv[0], nothing on stdout.
        """
        (self.home / "etc").mkdir()
        (self.home / "etc" / "gw.ini").write_text("[route:/lambda/]\ncolour = blue\n")
        twistd, twist = await self.run_both_to_end(["lambdagw", "--config", "etc/gw.ini"])
        for child in twistd, twist:
            self.assertEqual((child.exit_code, child.signal), (1, None), child.text)
            self.assertEqual(child.errors, b"etc/gw.ini: [route:/lambda/] colour: unknown key\n")
            self.assertEqual(child.output, child.errors, "something on stdout")

    async def test_other_usage_errors_keep_the_banner(self) -> None:
        """
        A command-line mistake that is not a config error is still Twisted's to report.
        """
        child = self.spawn([*twistd_command(), "-n", "--pidfile=", "lambdagw", "--colour"])
        await child.ended()
        self.assertEqual(child.exit_code, 1)
        self.assertIn("option --colour not recognized", child.text)


class SeveralGatewaysTests(LoopbackLambdaTestCase):
    """
    Two gateways in one folder, each with its own ``--pidfile``.
    """

    async def test_two_pidfiles(self) -> None:
        """
        Both start and write their own pid file; a third with a taken one is refused.
        """
        config = REPO_ROOT / "etc" / "gw.ini"
        children = []
        for name in ("a.pid", "b.pid"):
            argv = [*twistd_command(), "-n", f"--pidfile={name}", "lambdagw"]
            child = self.spawn([*argv, "--config", str(config), "--listen", LOOPBACK])
            await child.printed(READY)
            children.append(child)
        for name, child in zip(("a.pid", "b.pid"), children, strict=True):
            assert child.transport is not None
            self.assertEqual(int((self.home / name).read_text()), child.transport.pid)
        argv = [*twistd_command(), "-n", "--pidfile=a.pid", "lambdagw", "--config", str(config)]
        again = self.spawn([*argv, "--listen", LOOPBACK])
        await again.ended()
        self.assertIn("Another twistd server is running", again.text)
        for child in children:
            assert child.transport is not None
            child.transport.signalProcess("TERM")
        await Deferred.fromCoroutine(self.ended(children))

    async def ended(self, children: list[Child]) -> None:
        for child in children:
            await child.ended()
            self.assertEqual((child.exit_code, child.signal), (0, None), child.text)
