"""
``lambdagw passwd``: a users-file line from a password typed twice or piped,
and ``lambdagw check`` reading the users file; the shipped example files.
"""

from __future__ import annotations

import configparser
import io
import os

import bcrypt
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.daemon.cli import main
from twisted_lambdagw.policies.auth import load_users, parse_users

from .auth_fixtures import write
from .scratch import temp_path

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc")


class Prompts:
    """
    Answers to getpass prompts, recorded.
    """

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


class PasswdTests(SynchronousTestCase):
    """
    The passwd command prints one users-file line.
    """

    def run_passwd(
        self, *argv: str, stdin: str = "", ask: Prompts | None = None
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(
            ["passwd", "--rounds", "10", *argv],
            out,
            err,
            stdin=io.StringIO(stdin),
            ask=ask or Prompts(),
        )
        return status, out.getvalue(), err.getvalue()

    def assertLineFor(self, output: str, user: str, password: bytes) -> None:
        line = output.rstrip("\n")
        self.assertNotIn("\n", line)
        name, _, hashed = line.partition(":")
        self.assertEqual(name, user)
        self.assertTrue(hashed.startswith("$2b$10$"))
        self.assertTrue(bcrypt.checkpw(password, hashed.encode()))
        self.assertEqual(parse_users(line, "users").names, [user])

    def test_typed_twice(self) -> None:
        """
        The password is asked twice without echo; the line's hash checks against it.
        """
        ask = Prompts("s3cret pass", "s3cret pass")
        status, out, err = self.run_passwd("alice", ask=ask)
        self.assertEqual((status, err), (0, ""))
        self.assertLineFor(out, "alice", b"s3cret pass")
        self.assertEqual(ask.prompts, ["Password for alice: ", "Again: "])
        self.assertNotIn("s3cret", out)

    def test_mismatch(self) -> None:
        """
        Two different answers print nothing on stdout and fail.
        """
        status, out, err = self.run_passwd("alice", ask=Prompts("one", "two"))
        self.assertEqual((status, out), (1, ""))
        self.assertIn("do not match", err)

    def test_stdin(self) -> None:
        """
        With --stdin one line is read, without its line ending.
        """
        status, out, _ = self.run_passwd("--stdin", "deploy-bot", stdin="p@ss word\r\nignored\n")
        self.assertEqual(status, 0)
        self.assertLineFor(out, "deploy-bot", b"p@ss word")

    def test_refused(self) -> None:
        """
        Empty or over-72-byte passwords, and names with ':' or spaces, are refused.
        """
        for argv, stdin, reason in [
            (["--stdin", "alice"], "\n", "empty"),
            (["--stdin", "alice"], "", "empty"),
            (["--stdin", "alice"], "x" * 73 + "\n", "72 bytes"),
            (["--stdin", "al:ice"], "pw\n", "contains ':'"),
            (["--stdin", "al ice"], "pw\n", "space"),
        ]:
            status, out, err = self.run_passwd(*argv, stdin=stdin)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertIn(reason, err, argv)


class CheckUsersTests(SynchronousTestCase):
    """
    ``lambdagw check`` reads the users file too.
    """

    def test_malformed_users_file(self) -> None:
        """
        A malformed users file fails the check with its file and line.
        """
        users = temp_path(self, "users")
        write(users, "# ok\nalice:plain-text\n")
        ini = temp_path(self, "gw.ini")
        write(ini, f"[auth]\nusers_file = {users}\n[route:/l/]\naws_region = us-east-1\n")
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["check", "--config", ini], out, err), 1)
        self.assertIn(f"{users}:2: the hash for 'alice' is not a bcrypt hash", err.getvalue())


class ShippedFilesTests(SynchronousTestCase):
    """
    etc/users.example and etc/lambdagw.service are usable as shipped.
    """

    def test_users_example(self) -> None:
        """
        The example parses, and its commented line, uncommented, is a valid entry.
        """
        path = os.path.join(ETC, "users.example")
        self.assertEqual(load_users(path).names, [])
        with open(path) as f:
            [example] = [line[1:] for line in f if line.startswith("#example:")]
        self.assertEqual(parse_users(example, path).names, ["example"])

    def test_service_unit(self) -> None:
        """
        The unit runs twist as an unprivileged user, hardened, and waits longer
        than the default drain_timeout on stop.
        """
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(os.path.join(ETC, "lambdagw.service"))
        service = unit["Service"]
        self.assertIn("twist lambdagw --config /etc/lambdagw/gw.ini", service["ExecStart"])
        self.assertEqual(service["User"], "lambdagw")
        for key, value in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("Restart", "on-failure"),
            ("KillSignal", "SIGTERM"),
        ]:
            self.assertEqual(service[key], value, key)
        self.assertGreater(int(service["TimeoutStopSec"].rstrip("s")), 30)
