"""A real Matrix homeserver (Synapse) for integration tests.

Synapse is installed from PyPI into its *own* virtual environment (its many
dependencies must not mix with the project's), created on first use under
``$CASEBOT_TEST_CACHE/synapse-venv`` (default ``<repo>/.cache/test-peers``).
Installation is idempotent and needs no standard input, so a clean CI machine
works; a marker file written after a successful install records the pip
requirement it satisfied, and a venv whose marker does not match is rebuilt.

Typical use from a session-scoped pytest fixture::

    @pytest.fixture(scope="session")
    def synapse() -> Iterator[SynapseServer]:
        with running_synapse() as server:
            yield server

    def test_something(synapse: SynapseServer) -> None:
        user_id, token = synapse.register_user("alice", "secret-pw")

Each server lives in its own temporary directory (config, SQLite database,
media store, signing key, ``homeserver.log``), listens only on 127.0.0.1 on a
free port, has federation off, public registration off, shared-secret
registration on, and relaxed rate limits.  Any top-level config key can be
overridden (see :func:`build_config`), e.g. to make rate limits strict.

The secrets in the generated config are random, test-only and never printed.

Environment variables:

``CASEBOT_TEST_CACHE``
    Directory for cached test peers (default ``<repo>/.cache/test-peers``).
``CASEBOT_SYNAPSE_PYTHON``
    Use this Python interpreter (which must be able to ``import synapse``)
    instead of installing Synapse into the cache.
``CASEBOT_SYNAPSE_SPEC``
    Override the pip requirement used to install Synapse
    (default :data:`SYNAPSE_REQUIREMENT`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = [
    "RELAXED_RATE_LIMIT",
    "SYNAPSE_REQUIREMENT",
    "SynapseError",
    "SynapseHTTPError",
    "SynapseServer",
    "SynapseStartupError",
    "build_config",
    "default_cache_dir",
    "ensure_synapse_installed",
    "find_free_port",
    "running_synapse",
]

#: pip requirement for Synapse.  1.163.x installs from wheels on CPython 3.11
#: (Synapse itself needs >= 3.10).  Bump deliberately: a new minor release
#: may change config defaults that tests rely on.
SYNAPSE_REQUIREMENT = "matrix-synapse>=1.163,<1.164"

#: Rate limit used for every ``rc_*`` setting unless overridden: effectively
#: unlimited for a test suite, yet still a valid Synapse rate-limit mapping.
RELAXED_RATE_LIMIT: Mapping[str, float] = {
    "per_second": 10_000.0,
    "burst_count": 10_000.0,
}

_REPO_ROOT = Path(__file__).resolve().parents[2]
_MARKER_NAME = ".casebot-install-ok"
_LOG_TAIL_LINES = 60
_INSTALL_TIMEOUT_S = 1200.0


class SynapseError(RuntimeError):
    """Any failure of the harness: install, startup, or an API call."""


class SynapseStartupError(SynapseError):
    """Synapse did not become ready; the message includes the log's tail."""


class SynapseHTTPError(SynapseError):
    """A Synapse HTTP API call answered with a non-2xx status.

    Attributes:
        status: HTTP status code.
        errcode: Matrix ``errcode`` (e.g. ``"M_LIMIT_EXCEEDED"``) or ``None``.
        body: Decoded JSON body if it was JSON, else ``{"raw": text}``.
    """

    def __init__(self, method: str, url: str, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        errcode = body.get("errcode")
        self.errcode: str | None = errcode if isinstance(errcode, str) else None
        path = urllib.parse.urlsplit(url).path  # never echo query strings (tokens)
        super().__init__(f"{method} {path} -> HTTP {status}: {body}")


# --------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Return ``$CASEBOT_TEST_CACHE`` or ``<repo>/.cache/test-peers`` (not created)."""
    env = os.environ.get("CASEBOT_TEST_CACHE")
    return Path(env).expanduser().resolve() if env else _REPO_ROOT / ".cache" / "test-peers"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file, or a note if unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _synapse_importable(python: Path, module: str = "synapse") -> bool:
    """Report whether ``python`` exists and can import ``module``."""
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    return probe.returncode == 0


def ensure_synapse_installed(
    cache_dir: Path | None = None,
    *,
    requirement: str | None = None,
    timeout: float = _INSTALL_TIMEOUT_S,
) -> Path:
    """Make sure a Python interpreter with Synapse exists and return its path.

    If ``CASEBOT_SYNAPSE_PYTHON`` is set it is returned as-is (after checking it
    can import synapse).  Otherwise a venv at ``<cache_dir>/synapse-venv`` is
    reused when its marker records the same ``requirement`` and synapse
    imports; else it is deleted and rebuilt with ``pip install requirement``.
    Concurrent callers (e.g. pytest-xdist workers) serialise on a lock file.

    Args:
        cache_dir: Cache directory; default :func:`default_cache_dir`.
        requirement: pip requirement; default ``$CASEBOT_SYNAPSE_SPEC`` or
            :data:`SYNAPSE_REQUIREMENT`.
        timeout: Seconds allowed for ``pip install``.

    Returns:
        Path of the venv's ``python`` executable.

    Raises:
        SynapseError: the install failed (message includes pip's log tail).
    """
    override = os.environ.get("CASEBOT_SYNAPSE_PYTHON")
    if override:
        python = Path(override)
        if not _synapse_importable(python):
            raise SynapseError(f"CASEBOT_SYNAPSE_PYTHON={override} cannot import synapse")
        return python

    req = requirement or os.environ.get("CASEBOT_SYNAPSE_SPEC") or SYNAPSE_REQUIREMENT
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / "synapse-venv"
    marker = venv / _MARKER_NAME
    python = _venv_python(venv)
    wanted = json.dumps({"requirement": req, "python": sys.version.split()[0]})

    with (cache / "synapse-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists() and marker.read_text() == wanted and _synapse_importable(python):
                return python
            if venv.exists():
                shutil.rmtree(venv)
            log_path = cache / "synapse-install.log"
            with log_path.open("w") as log:
                env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
                steps = [
                    [sys.executable, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", req],
                ]
                deadline = time.monotonic() + timeout
                for cmd in steps:
                    log.write(f"$ {' '.join(cmd)}\n")
                    log.flush()
                    try:
                        proc = subprocess.run(
                            cmd,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=env,
                            timeout=max(1.0, deadline - time.monotonic()),
                            check=False,
                        )
                    except subprocess.TimeoutExpired:
                        raise SynapseError(
                            f"Synapse install timed out after {timeout:.0f}s; "
                            f"log {log_path}:\n{_tail(log_path)}"
                        ) from None
                    if proc.returncode != 0:
                        raise SynapseError(
                            f"Synapse install {cmd[2:]} failed ({proc.returncode}); "
                            f"log {log_path}:\n{_tail(log_path)}"
                        )
            if not _synapse_importable(python, "synapse.app.homeserver"):
                raise SynapseError(f"synapse not importable after install; log {log_path}")
            marker.write_text(wanted)
            return python
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``overrides`` (mappings merge, else replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _relaxed_rate_limits() -> dict[str, Any]:
    relaxed = dict(RELAXED_RATE_LIMIT)
    return {
        "rc_message": relaxed,
        "rc_registration": relaxed,
        "rc_registration_token_validity": relaxed,
        "rc_login": {
            "address": relaxed,
            "account": relaxed,
            "failed_attempts": relaxed,
        },
        "rc_admin_redaction": relaxed,
        "rc_joins": {"local": relaxed, "remote": relaxed},
        "rc_joins_per_room": relaxed,
        "rc_key_requests": relaxed,
        "rc_3pid_validation": relaxed,
        "rc_invites": {"per_room": relaxed, "per_user": relaxed, "per_issuer": relaxed},
        "rc_third_party_invite": relaxed,
        "rc_media_create": relaxed,
        "rc_presence": {"per_user": relaxed},
        "rc_delayed_event_mgmt": relaxed,
        "rc_room_creation": relaxed,
        "rc_reports": relaxed,
        "rc_user_directory": relaxed,
        "rc_profile": relaxed,
    }


def build_config(
    data_dir: Path,
    *,
    port: int,
    server_name: str = "localhost",
    registration_shared_secret: str,
    macaroon_secret_key: str | None = None,
    form_secret: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a Synapse config (a JSON-serialisable dict) for a test server.

    Defaults: SQLite and media store in ``data_dir``; one plain-HTTP listener on
    127.0.0.1:``port`` serving the ``client`` (incl. ``/_synapse/admin``) and
    ``media`` resources only; federation disabled (no federation listener,
    empty ``federation_domain_whitelist`` and ``trusted_key_servers``);
    ``enable_registration: false``; shared-secret registration enabled;
    ``report_stats``/metrics off; ``max_upload_size: 10M``; ``bcrypt_rounds: 4``
    (fast password hashing); every ``rc_*`` limit relaxed to
    :data:`RELAXED_RATE_LIMIT`.  E2E key endpoints keep Synapse's defaults.

    ``overrides`` are merged last: a mapping value merges into an existing
    mapping (so ``{"rc_login": {"address": {...}}}`` only changes that limit);
    any other value replaces the key.  Example for rate-limit tests::

        {"rc_message": {"per_second": 0.1, "burst_count": 2}}

    ``macaroon_secret_key`` / ``form_secret`` are random when not given.
    The signing key file itself is written by :class:`SynapseServer`.
    """
    base_url = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": base_url + "/",
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "media"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(data_dir / "homeserver.db")},
        },
        "media_store_path": str(data_dir / "media_store"),
        "max_upload_size": "10M",
        "enable_media_repo": True,
        "url_preview_enabled": False,
        "signing_key_path": str(data_dir / "signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "enable_registration": False,
        "registration_shared_secret": registration_shared_secret,
        "macaroon_secret_key": macaroon_secret_key or secrets.token_urlsafe(32),
        "form_secret": form_secret or secrets.token_urlsafe(32),
        "report_stats": False,
        "enable_metrics": False,
        "bcrypt_rounds": 4,
        **_relaxed_rate_limits(),
    }
    return _deep_merge(config, overrides or {})


def _write_signing_key(path: Path) -> None:
    """Write a fresh ed25519 signing key in Synapse's ``alg version seed`` format."""
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    path.write_text(f"ed25519 a_test {seed}\n")
    path.chmod(0o600)


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------

_LIVE_SERVERS: weakref.WeakSet[SynapseServer] = weakref.WeakSet()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(eq=False)
class SynapseServer:
    """One Synapse process with its own data directory.

    Create with :func:`running_synapse` (preferred) or directly, then
    :meth:`start`.  :meth:`stop` / :meth:`start` restart the same server on
    the same port with its data (database, media, keys) intact, so clients
    can keep using ``base_url`` and existing access tokens.

    Attributes:
        python: Interpreter that has Synapse installed.
        data_dir: Directory holding config, database, media, key and log.
        port: Loopback TCP port of the client/media listener.
        server_name: The Matrix server name (user IDs end in ``:server_name``).
        config_overrides: Passed to :func:`build_config`.
        registration_shared_secret: Test-only secret; not shown in ``repr``.
        macaroon_secret_key: Test-only secret, stable across restarts.
        form_secret: Test-only secret, stable across restarts.
    """

    python: Path
    data_dir: Path
    port: int
    server_name: str = "localhost"
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    registration_shared_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    macaroon_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    form_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """Homeserver URL for clients, e.g. ``http://127.0.0.1:45123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """Path of the generated ``homeserver.yaml`` (JSON content, valid YAML)."""
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's combined stdout/stderr log; appended to across restarts."""
        return self.data_dir / "homeserver.log"

    @property
    def is_running(self) -> bool:
        """True while the Synapse subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    def write_config(self) -> None:
        """(Re)write config and, if missing, the signing key into ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            _write_signing_key(key_path)
        config = build_config(
            self.data_dir,
            port=self.port,
            server_name=self.server_name,
            registration_shared_secret=self.registration_shared_secret,
            macaroon_secret_key=self.macaroon_secret_key,
            form_secret=self.form_secret,
            overrides=self.config_overrides,
        )
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)

    def start(self, timeout: float = 90.0) -> None:
        """Start Synapse and block until ``/_matrix/client/versions`` answers 200.

        Writes the config first if it does not exist.  A no-op if running.

        Raises:
            SynapseStartupError: the process exited, or was not ready within
                ``timeout`` seconds (it is then stopped).  The message has
                the exit code (if any) and the tail of :attr:`log_path`.
        """
        if self.is_running:
            return
        if not self.config_path.exists():
            self.write_config()
        with self.log_path.open("ab") as log:
            log.write(f"\n==== harness: starting Synapse at {time.ctime()} ====\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [
                    str(self.python),
                    "-m",
                    "synapse.app.homeserver",
                    "-c",
                    str(self.config_path),
                ],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in pytest must not race our shutdown
            )
        _LIVE_SERVERS.add(self)
        deadline = time.monotonic() + timeout
        url = self.base_url + "/_matrix/client/versions"
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise SynapseStartupError(
                    f"Synapse exited with code {code} during startup; "
                    f"log {self.log_path} ends with:\n{_tail(self.log_path)}"
                )
            try:
                with _NO_PROXY_OPENER.open(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SynapseStartupError(
                    f"Synapse not ready at {url} after {timeout:.1f}s; "
                    f"log {self.log_path} ends with:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop Synapse: SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        _LIVE_SERVERS.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10.0)

    def restart(self, timeout: float = 90.0) -> None:
        """Stop then start, keeping data, port and config (re-written from fields)."""
        self.stop()
        self.write_config()
        self.start(timeout=timeout)

    def api_request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        access_token: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Call a JSON endpoint of this server and return the decoded response.

        Args:
            method: HTTP method, e.g. ``"GET"``.
            path: Path with query, e.g. ``"/_matrix/client/v3/account/whoami"``.
            body: JSON body, or ``None`` for no body.
            access_token: Sent as ``Authorization: Bearer``.
            timeout: Socket timeout in seconds.

        Raises:
            SynapseHTTPError: non-2xx answer (``errcode`` is set when present).
        """
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if access_token:
            req.add_header("Authorization", f"Bearer {access_token}")
        try:
            with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            err_body = parsed if isinstance(parsed, dict) else {"raw": text}
            raise SynapseHTTPError(method, url, exc.code, err_body) from None
        result = json.loads(raw) if raw else {}
        if not isinstance(result, dict):
            raise SynapseError(f"{method} {path}: expected a JSON object, got {type(result)}")
        return result

    def register_user(self, localpart: str, password: str, admin: bool = False) -> tuple[str, str]:
        r"""Create a user via the shared-secret admin API and log it in once.

        Uses ``/_synapse/admin/v1/register``: GET a nonce, then POST with
        ``mac = HMAC-SHA1(secret, nonce\0user\0password\0admin|notadmin)``.

        Args:
            localpart: User ID localpart (lower-case; must be unused).
            password: The new user's password (usable with ``/login``).
            admin: Make the user a server admin.

        Returns:
            ``(user_id, access_token)``; the token belongs to a fresh device.

        Raises:
            SynapseHTTPError: e.g. ``M_USER_IN_USE`` or ``M_INVALID_USERNAME``.
        """
        nonce = self.api_request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        reply = self.api_request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return str(reply["user_id"]), str(reply["access_token"])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_synapse(
    *,
    server_name: str = "localhost",
    config_overrides: Mapping[str, Any] | None = None,
    workdir: Path | None = None,
    keep_workdir: bool = False,
    startup_timeout: float = 90.0,
    cache_dir: Path | None = None,
) -> Iterator[SynapseServer]:
    """Install Synapse if needed, start a fresh server, yield it, stop it.

    Synchronous, so it suits a session- or module-scoped pytest fixture.
    A free loopback port is picked; if Synapse fails at startup (e.g. the
    port was taken in the meantime) it retries up to 3 times on new ports.

    Args:
        server_name: Matrix server name.
        config_overrides: See :func:`build_config`.
        workdir: Data directory to use (created); default a new temp dir.
        keep_workdir: Keep the temp data dir after exit (for debugging).
            A caller-supplied ``workdir`` is never deleted, and neither is
            the temp dir when startup fails (its log is named in the error).
        startup_timeout: Seconds to wait for readiness per attempt.
        cache_dir: Passed to :func:`ensure_synapse_installed`.

    Raises:
        SynapseError / SynapseStartupError: install or startup failed.
    """
    python = ensure_synapse_installed(cache_dir)
    own_dir = workdir is None
    data_dir = Path(tempfile.mkdtemp(prefix="casebot-synapse-")) if workdir is None else workdir
    # Not inside the try below: if startup fails the data dir is kept, since
    # the error message points at its log file.
    server = _start_on_free_port(
        python,
        data_dir,
        server_name=server_name,
        config_overrides=config_overrides or {},
        startup_timeout=startup_timeout,
    )
    try:
        yield server
    finally:
        server.stop()
        if own_dir and not keep_workdir:
            shutil.rmtree(data_dir, ignore_errors=True)


def _start_on_free_port(
    python: Path,
    data_dir: Path,
    *,
    server_name: str,
    config_overrides: Mapping[str, Any],
    startup_timeout: float,
    attempts: int = 3,
) -> SynapseServer:
    """Start a server on a fresh free port; retry only if the port was taken."""
    for attempt in range(1, attempts + 1):
        server = SynapseServer(
            python=python,
            data_dir=data_dir,
            port=find_free_port(),
            server_name=server_name,
            config_overrides=dict(config_overrides),
        )
        server.write_config()
        try:
            server.start(timeout=startup_timeout)
        except SynapseStartupError as exc:
            if attempt == attempts or "Address already in use" not in str(exc):
                raise
        else:
            return server
    raise AssertionError("unreachable")
