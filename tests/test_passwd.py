"""
``lambdagw passwd``: a users-file line from a password typed twice or piped,
and ``lambdagw check`` reading the users file; the shipped example files.
"""

from __future__ import annotations

import configparser
import io
import os
import subprocess
import sys

import bcrypt
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.daemon.cli import main
from twisted_lambdagw.policies.auth import load_users, parse_users

from .auth_fixtures import write
from .process_fixtures import child_environment, temp_dir
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


class Terminal(io.StringIO):
    """
    A stdin that says it is a terminal, as an operator's shell gives it.
    """

    def isatty(self) -> bool:
        return True


class PasswdTests(SynchronousTestCase):
    """
    The passwd command prints one users-file line.
    """

    def run_passwd(
        self, *argv: str, stdin: str = "", ask: Prompts | None = None
    ) -> tuple[int, str, str]:
        """
        The command's status and output; with C{ask}, stdin is a terminal.
        """
        out, err = io.StringIO(), io.StringIO()
        status = main(
            ["passwd", "--rounds", "10", *argv],
            out,
            err,
            stdin=Terminal(stdin) if ask is not None else io.StringIO(stdin),
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
            (["--stdin", "alice"], "", "no password on stdin"),
            (["--stdin", "alice"], "x" * 73 + "\n", "72 bytes"),
            (["--stdin", "al:ice"], "pw\n", "contains ':'"),
            (["--stdin", "al ice"], "pw\n", "space"),
        ]:
            status, out, err = self.run_passwd(*argv, stdin=stdin)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertIn(reason, err, argv)

    def test_not_a_terminal(self) -> None:
        """
        Without --stdin, a stdin that is not a terminal is read as one line;
        getpass is never asked to prompt where no one can answer.
        """
        ask = Prompts("typed", "typed")
        out, err = io.StringIO(), io.StringIO()
        argv = ["passwd", "--rounds", "10", "carol"]
        status = main(argv, out, err, stdin=io.StringIO("piped pw\n"), ask=ask)
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.assertLineFor(out.getvalue(), "carol", b"piped pw")
        self.assertEqual(ask.prompts, [])
        for stdin, reason in [("", "no password on stdin"), ("\n", "the password is empty")]:
            status, printed, problem = self.run_passwd("carol", stdin=stdin)
            self.assertEqual((status, printed), (1, ""))
            self.assertTrue(problem.startswith(f"lambdagw passwd: {reason}"), problem)

    def test_end_of_input_at_a_terminal(self) -> None:
        """
        Ctrl-D at the prompt is refused with a reason, not an empty message.
        """

        def closed(prompt: str) -> str:
            raise EOFError

        out, err = io.StringIO(), io.StringIO()
        status = main(["passwd", "carol"], out, err, stdin=Terminal(""), ask=closed)
        self.assertEqual((status, out.getvalue()), (1, ""))
        self.assertEqual(err.getvalue(), "lambdagw passwd: no password given (end of input)\n")


class PasswdProcessTests(SynchronousTestCase):
    """
    The real ``lambdagw passwd`` with a stdin that is not a terminal.
    """

    def passwd(self, stdin: str | None, *argv: str) -> subprocess.CompletedProcess[str]:
        home = temp_dir(self)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted_lambdagw.daemon.cli",
                "passwd",
                "--rounds",
                "10",
                *argv,
            ],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            env=child_environment(home),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_dev_null(self) -> None:
        """
        ``lambdagw passwd carol </dev/null``: one line of reason, no GetPassWarning, exit 1.
        """
        result = self.passwd(None, "carol")
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(
            result.stderr,
            "lambdagw passwd: no password on stdin (it is read from there, as one line,"
            " when stdin is not a terminal or --stdin is given)\n",
        )

    def test_empty_line(self) -> None:
        """
        An empty line is an empty password, refused with that reason.
        """
        result = self.passwd("\n", "carol")
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(result.stderr, "lambdagw passwd: the password is empty\n")

    def test_piped(self) -> None:
        """
        A piped line becomes the users-file line, and nothing else is printed.
        """
        result = self.passwd("s3cret\n", "carol")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        name, _, hashed = result.stdout.rstrip("\n").partition(":")
        self.assertEqual(name, "carol")
        self.assertTrue(bcrypt.checkpw(b"s3cret", hashed.encode()))


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
        The unit runs twistd in the foreground as an unprivileged user,
        hardened, with its pid file where systemd expects it, and waits
        longer than the default drain_timeout on stop.
        """
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(os.path.join(ETC, "lambdagw.service"))
        service = unit["Service"]
        command = service["ExecStart"].split()
        self.assertEqual(command[0], "/opt/lambdagw/bin/twistd")
        self.assertIn("--nodaemon", command)
        pidfile = service["PIDFile"]
        self.assertIn(f"--pidfile={pidfile}", command)
        self.assertEqual(os.path.dirname(pidfile), "/run/" + service["RuntimeDirectory"])
        self.assertEqual(command[-3:], ["lambdagw", "--config", "/etc/lambdagw/gw.ini"])
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
