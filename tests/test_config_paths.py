"""
Relative file names in a config file are its own directory's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.config_reader import load_config, parse_config
from twisted_lambdagw.core.endpoint_strings import resolve_files, split_description

from .process_fixtures import temp_dir, write_config


def under(base: str) -> Callable[[str], str]:
    return lambda path: path if os.path.isabs(path) else os.path.join(base, path)


class ConfigPathTests(SynchronousTestCase):
    """
    load_config joins relative paths to the config file's directory.
    """

    def test_every_file_key(self) -> None:
        """
        functions_dir, users_file, access_log, python (a path), ssl: files and
        unix: addresses; absolute paths, '-' and bare executable names stay.
        """
        home = temp_dir(self)
        etc = home / "etc"
        etc.mkdir()
        (home / "fns").mkdir()
        path = write_config(
            etc,
            "[gateway]\naccess_log = ../logs/access.log\n"
            "listen = ssl:8443:privateKey=tls/key.pem:certKey=/abs/cert.pem:dhParameters=dh.pem\n"
            "    unix:gw.sock:mode=600\n    unix:address=/run/gw.sock\n    tcp:8080\n"
            "[auth]\nusers_file = users\n"
            f"[local]\nfunctions_dir = ../fns\npython = {os.path.basename(sys.executable)}\n"
            "[route:/l/]\nbackend = local\n",
        )
        config = load_config(str(path))
        self.assertEqual(config.path, str(path))
        self.assertEqual(config.gateway.access_log, f"{etc}/../logs/access.log")
        self.assertEqual(
            config.gateway.listen,
            (
                f"ssl:8443:privateKey={etc}/tls/key.pem:certKey=/abs/cert.pem"
                f":dhParameters={etc}/dh.pem",
                f"unix:{etc}/gw.sock:mode=600",
                "unix:address=/run/gw.sock",
                "tcp:8080",
            ),
        )
        assert config.auth is not None and config.local is not None
        self.assertEqual(config.auth.users_file, f"{etc}/users")
        self.assertEqual(config.local.functions_dir, f"{etc}/../fns")
        self.assertTrue(os.path.isabs(config.local.python))

    def test_stdout_access_log(self) -> None:
        """
        ``access_log = -`` is stdout wherever the file is.
        """
        home = temp_dir(self)
        path = write_config(
            home, "[gateway]\naccess_log = -\n[route:/a/]\naws_region = us-east-1\n"
        )
        self.assertEqual(load_config(str(path)).gateway.access_log, "-")

    def test_text_without_a_file(self) -> None:
        """
        parse_config without a base directory leaves relative paths as written.
        """
        config = parse_config(
            "[auth]\nusers_file = users\n[route:/a/]\naws_region = us-east-1\n", "t.ini", {}
        )
        assert config.auth is not None
        self.assertEqual(config.auth.users_file, "users")

    def test_relative_functions_dir_error(self) -> None:
        """
        A missing functions_dir is reported as resolved, so the operator sees where it looked.
        """
        home = temp_dir(self)
        path = write_config(home, "[local]\nfunctions_dir = nope\n[route:/l/]\nbackend = local\n")
        error = self.assertRaises(ConfigError, load_config, str(path))
        self.assertEqual(
            str(error), f"{path}: [local] functions_dir: not a directory: '{home}/nope'"
        )


class ResolveFilesTests(SynchronousTestCase):
    """
    resolve_files rewrites only file names, escaping what Twisted's syntax needs.
    """

    def test_escaped(self) -> None:
        """
        A base directory holding ':' or '=' is escaped, and parses back to the same path.
        """
        resolved = resolve_files("ssl:443:privateKey=k.pem", under("/srv/a:b=c"))
        self.assertEqual(resolved, "ssl:443:privateKey=/srv/a\\:b\\=c/k.pem")
        self.assertEqual(split_description(resolved)[1]["privateKey"], "/srv/a:b=c/k.pem")

    def test_unchanged(self) -> None:
        """
        Other endpoints and absolute names are returned exactly as written.
        """
        for description in ("tcp:8080:interface=127.0.0.1", "ssl:443:privateKey=/k.pem"):
            self.assertEqual(resolve_files(description, under("/srv")), description)
