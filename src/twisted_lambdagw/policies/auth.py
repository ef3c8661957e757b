"""
HTTP basic auth for routes, on twisted.cred, over a file of bcrypt hashes.

The pieces are twisted.cred's: L{UsersFileChecker} is the credentials
checker, L{UserRealm} the realm (its avatar is the user name), and a
L{Portal} joins them.  L{BasicAuthenticator} is what the L{BasicAuth} step asks
for routes with C{auth = basic}: it reads the C{Authorization} header
strictly and logs in through the portal.

What makes it safe to put on the internet:

- bcrypt runs in a thread, never on the reactor thread (each check costs a
  good fraction of a second of CPU, on purpose);
- a user name is found by comparing digests in constant time with every
  entry, and an unknown user still costs one bcrypt check against a dummy
  hash, so timing does not tell which users exist;
- a successful check is remembered (as an HMAC under a per-process key,
  never the password), so a client sending the same credentials on every
  request does not pay for bcrypt each time; wrong passwords are never
  remembered and always cost a full check;
- the users file is re-read when its size or modification time changes
  (looked at no more than once a second); a file that became malformed is
  logged and the previous users stay in force;
- passwords and C{Authorization} headers are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import Interface, implementer

from twisted_lambdagw._types import RunInThread
from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.errors import Unauthorized

BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(?P<cost>0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72
"""bcrypt looks at no more than this many bytes of a password."""
MAX_USER_NAME = 256
DEFAULT_ROUNDS = 12
RELOAD_INTERVAL = 1.0
CACHE_SIZE = 1024

log = Logger()

AvatarId = bytes | tuple[()]
"""twisted.cred's avatar id: here always the user name, as UTF-8 bytes."""


def user_name_problem(name: str) -> str | None:
    """
    Why C{name} cannot be a user name, or None when it can.

    Names go into a request header for the function, so they are printable
    text without spaces; C{:} separates the name from the password in both
    the users file and basic auth.
    """
    if not name:
        return "the user name is empty"
    if len(name) > MAX_USER_NAME:
        return f"the user name is over {MAX_USER_NAME} characters"
    if ":" in name:
        return "the user name contains ':'"
    if not name.isprintable() or any(c.isspace() for c in name):
        return "the user name contains a space or a control character"
    return None


def hash_password(password: bytes, rounds: int = DEFAULT_ROUNDS) -> str:
    """
    A bcrypt hash of C{password} for the users file.
    """
    if len(password) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is over {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    if not password:
        raise ValueError("the password is empty")
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds)).decode("ascii")


def _name_digest(name: bytes) -> bytes:
    # Fixed-length digests, so comparing them says nothing about the length.
    return hashlib.sha256(name).digest()


@dataclass(frozen=True, slots=True)
class UsersTable:
    """
    The users file's entries: name digest, name, bcrypt hash.
    """

    path: str
    entries: tuple[tuple[bytes, bytes, bytes], ...]

    def find(self, name: bytes) -> bytes | None:
        """
        The hash stored for C{name}, compared in constant time with every entry.
        """
        wanted = _name_digest(name)
        found = None
        for digest, _, hashed in self.entries:
            if hmac.compare_digest(digest, wanted):
                found = hashed
        return found

    @property
    def dummy_hash(self) -> bytes:
        """
        A well-formed hash no password matches, at the cost the real ones use.
        """
        cost = self.entries[0][2][4:6] if self.entries else b"%02d" % DEFAULT_ROUNDS
        return b"$2b$" + cost + b"$" + b"." * 53

    @property
    def names(self) -> list[str]:
        return [name.decode("utf-8") for _, name, _ in self.entries]


def parse_users(text: str, path: str) -> UsersTable:
    """
    Parse a users file: C{name:bcrypt-hash} lines, C{#} comments, blank lines.

    Raises L{ConfigError} naming the file and line of the first bad line.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, hashed = line.partition(":")
        where = f"{path}:{number}"
        if not colon:
            raise ConfigError(f"{where}: not a 'user:bcrypt-hash' line")
        problem = user_name_problem(name)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        if not BCRYPT_HASH.fullmatch(hashed):
            raise ConfigError(
                f"{where}: the hash for {name!r} is not a bcrypt hash"
                " (make one with: lambdagw passwd USER)"
            )
        if name in seen:
            raise ConfigError(f"{where}: user {name!r} is listed twice")
        seen.add(name)
        encoded = name.encode("utf-8")
        entries.append((_name_digest(encoded), encoded, hashed.encode("ascii")))
    return UsersTable(path, tuple(entries))


def load_users(path: str) -> UsersTable:
    """
    Read and parse the users file, or raise L{ConfigError}.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read users file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: users file is not UTF-8 text") from None
    return parse_users(text, path)


def _file_signature(path: str) -> tuple[int, int, int]:
    status = os.stat(path)
    return (status.st_mtime_ns, status.st_size, status.st_ino)


@implementer(ICredentialsChecker)
class UsersFileChecker:
    """
    Checks user names and passwords against the users file.

    @param run_in_thread: runs each bcrypt check off the reactor thread.
    @param now: a monotonic clock, for the once-a-second look at the file.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        path: str,
        run_in_thread: RunInThread,
        *,
        now: Callable[[], float] = time.monotonic,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.path = path
        self._run_in_thread = run_in_thread
        self._now = now
        self._signature = self._signature_or_none()
        self.table = load_users(path)
        self._checked_at = now()
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_key = secrets.token_bytes(32)
        self._reload_error: str | None = None

    def requestAvatarId(self, credentials: Any) -> Deferred[AvatarId]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> AvatarId:
        self.maybe_reload()
        table = self.table
        username, password = credentials.username, credentials.password
        stored = table.find(username)
        key = None
        if stored is not None:
            key = hmac.new(
                self._cache_key, b"\0".join([username, password, stored]), "sha256"
            ).digest()
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        hashed = stored if stored is not None else table.dummy_hash
        # bcrypt refuses passwords over 72 bytes; such a password is wrong,
        # but it still costs the same as any other.
        candidate = password[:MAX_PASSWORD_BYTES]
        matched = await self._run_in_thread(lambda: bcrypt.checkpw(candidate, hashed))
        if not matched or stored is None or len(password) > MAX_PASSWORD_BYTES:
            raise UnauthorizedLogin()
        if key is not None and table is self.table:
            self._cache[key] = username
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return username

    def maybe_reload(self) -> None:
        """
        Re-read the users file if it changed; look at most once a second.

        The look is a stat, and a read of a small file only when it changed,
        so it stays on the reactor thread.
        """
        now = self._now()
        if now - self._checked_at < RELOAD_INTERVAL:
            return
        self._checked_at = now
        signature = self._signature_or_none()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            table = load_users(self.path)
        except ConfigError as e:
            self._reload_error = str(e)
            log.error(
                "users file not reloaded, the previous users stay in force: {error}",
                error=str(e),
            )
            return
        self.table = table
        self._cache.clear()
        self._reload_error = None
        log.info(
            "users file {path} reloaded: {count} users", path=self.path, count=len(table.entries)
        )

    def _signature_or_none(self) -> tuple[int, int, int] | None:
        try:
            return _file_signature(self.path)
        except OSError:
            return None


class IGatewayUser(Interface):
    """
    The avatar interface of gateway logins: the avatar is the user name.
    """


@implementer(IRealm)
class UserRealm:
    """
    A realm whose avatars are user names; there is nothing to log out of.
    """

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        if IGatewayUser not in interfaces:
            raise NotImplementedError("only IGatewayUser avatars")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else str(avatarId)
        return IGatewayUser, name, lambda: None


def parse_basic(value: bytes) -> tuple[bytes, bytes]:
    """
    The user name and password in an C{Authorization: Basic} value.

    Strict: the scheme (any case), one space, then base64 with correct
    padding of UTF-8 text holding a C{:} after a non-empty name.  Raises
    ValueError saying what is wrong (never what the credentials are).
    """
    scheme, space, token = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise ValueError("not Basic credentials")
    if not space or not token:
        raise ValueError("Basic credentials are empty")
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Basic credentials are not base64") from None
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("Basic credentials are not UTF-8") from None
    name, colon, password = decoded.partition(b":")
    if not colon:
        raise ValueError("Basic credentials have no ':'")
    if not name:
        raise ValueError("Basic credentials have an empty user name")
    return name, password


class BasicAuthenticator:
    """
    The login check of C{auth = basic} routes: the L{BasicAuth} step's L{Authenticator}.
    """

    def __init__(self, portal: Portal, realm: str) -> None:
        self.portal = portal
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'

    def refuse(self, detail: str) -> Unauthorized:
        return Unauthorized(detail=detail, challenge=self.challenge)

    async def authenticate(self, request: Request) -> str:
        values = request.requestHeaders.getRawHeaders(b"authorization") or []
        if not values:
            raise self.refuse("no credentials")
        if len(values) > 1:
            raise self.refuse("more than one Authorization header")
        try:
            username, password = parse_basic(values[0])
        except ValueError as e:
            raise self.refuse(str(e)) from None
        try:
            _, avatar, logout = await self.portal.login(
                UsernamePassword(username, password), None, IGatewayUser
            )
        except UnauthorizedLogin:
            shown = username.decode("utf-8")[:MAX_USER_NAME]
            raise self.refuse(f"wrong password or unknown user {shown!r}") from None
        logout()
        assert isinstance(avatar, str)
        return avatar


def basic_authenticator(
    users_file: str,
    realm: str,
    run_in_thread: RunInThread,
    now: Callable[[], float] = time.monotonic,
) -> BasicAuthenticator:
    """
    The guard for a config's C{[auth]} section; raises L{ConfigError} if the
    users file is unusable.
    """
    checker = UsersFileChecker(users_file, run_in_thread, now=now)
    return BasicAuthenticator(Portal(UserRealm(), [checker]), realm)
