"""
botocore sessions for tests: no files, no environment, a chain of the test's choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session


def isolated_session(provider: Any = None) -> Callable[[str | None], botocore.session.Session]:
    """
    A ``session_for`` whose sessions read no config files and whose
    credential chain is ``provider`` (a botocore CredentialResolver).
    """

    def session_for(profile: str | None) -> botocore.session.Session:
        session = botocore.session.Session(
            session_vars={
                "profile": (None, None, profile, None),
                "config_file": (None, None, "/nonexistent/lambdagw-test/config", None),
                "credentials_file": (None, None, "/nonexistent/lambdagw-test/credentials", None),
            }
        )
        if provider is not None:
            session.register_component("credential_provider", provider)
        return session

    return session_for
