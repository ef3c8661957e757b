"""
The real ``twistd`` and ``twist`` with no AWS credentials anywhere: startup
ends with one line, before anything listens.
"""

from __future__ import annotations

from .test_twistd_e2e import TwistdTestCase


class NoCredentialsTests(TwistdTestCase):
    """
    botocore's whole chain finds nothing: the gateway refuses to start.
    """

    async def test_one_line(self) -> None:
        """
        twistd and twist exit non-zero with one line naming the file and the routes.
        """
        config = self.write_config(
            """
            [gateway]
            listen = tcp:0:interface=127.0.0.1

            [aws]
            region = us-east-1

            [route:/lambda/]

            [route:/other/]
            """
        )
        options = ["lambdagw", "--config", str(config)]
        twistd, twist = await self.run_both_to_end(options)
        for child in twistd, twist:
            self.assertNotEqual(child.exit_code, 0, child.text)
            self.assertNotIn("Traceback", child.text)
            [error] = [line for line in child.text.splitlines() if str(config) in line]
            self.assertIn(
                f"{config}: [route:/lambda/], [route:/other/]: no AWS credentials found", error
            )
            self.assertNotIn("starting on", child.text)
