"""
The route keys of streamed routes: ``stream_idle_timeout`` and ``stream_prelude``.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError, RouteConfig
from twisted_lambdagw.daemon.describe import route_table

from .gateway_fixtures import config_from


def route(lines: str) -> RouteConfig:
    [only] = config_from("[route:/s/]\naws_region = us-east-1\n" + lines).routes
    return only


class StreamKeysTests(SynchronousTestCase):
    """
    Streamed routes take an idle timeout and a prelude mode; others refuse them.
    """

    def test_defaults(self) -> None:
        """
        30 seconds idle and prelude detection by default.
        """
        streamed = route("stream = yes\n")
        self.assertEqual(streamed.stream_idle_timeout, 30.0)
        self.assertEqual(streamed.stream_prelude, "auto")

    def test_values(self) -> None:
        """
        Durations take units; the prelude mode is one of three words.
        """
        for mode in ("auto", "always", "never"):
            streamed = route(f"stream = yes\nstream_idle_timeout = 2m\nstream_prelude = {mode}\n")
            self.assertEqual(streamed.stream_idle_timeout, 120.0)
            self.assertEqual(streamed.stream_prelude, mode)

    def test_bad_values(self) -> None:
        """
        A bad mode or duration names the section and key.
        """
        for lines, key in [
            ("stream = yes\nstream_prelude = sometimes\n", "stream_prelude"),
            ("stream = yes\nstream_idle_timeout = 0\n", "stream_idle_timeout"),
            ("stream = yes\nstream_idle_timeout = soon\n", "stream_idle_timeout"),
        ]:
            error = self.assertRaises(ConfigError, route, lines)
            self.assertIn(f"[route:/s/] {key}:", str(error))

    def test_only_with_stream(self) -> None:
        """
        The stream keys on a route without ``stream = yes`` are an error, not ignored.
        """
        for key, value in [("stream_idle_timeout", "5s"), ("stream_prelude", "never")]:
            error = self.assertRaises(ConfigError, route, f"{key} = {value}\n")
            self.assertIn(f"[route:/s/] {key}: has no effect without 'stream = yes'", str(error))

    def test_route_table(self) -> None:
        """
        ``lambdagw check`` shows which routes stream, with their idle timeout and prelude mode.
        """
        config = config_from(
            "[route:/s/]\naws_region = us-east-1\nstream = yes\nstream_prelude = never\n"
            "[route:/b/]\naws_region = us-east-1\n"
        )
        streamed, buffered = route_table(config).split("\n\n")
        self.assertIn("\n  stream:            yes, idle timeout 30s, prelude never\n", streamed)
        self.assertIn("\n  stream:            no\n", buffered)
