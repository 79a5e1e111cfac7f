"""``casebot check``: are the settings complete, and do Telegram, Matrix and Chroma answer?

Starts nothing and changes nothing on the servers, with one exception: a
Matrix password is checked by logging in as a throwaway device
(``casebot check``) that is logged out (and so deleted) at once. A stored
login of the bot, or an access token, is checked with ``whoami`` instead.

Exit codes: 0 every check passed, 1 something did not answer or rejected
the credentials, 2 a setting is missing or malformed. One line per check.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import aiohttp

from bot.settings import Settings, SettingsError, requirements_problems
from index.errors import CasebotError

log = logging.getLogger(__name__)

_TIMEOUT_S = 10.0


class CheckFailed(CasebotError):
    """A peer did not answer, or rejected what it was given; the message says which setting to look at."""


async def check_telegram(settings: Settings) -> str:
    """``getMe`` with the configured token and Bot API server; the bot's @name on success."""
    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError, TelegramError
    from telegram.request import HTTPXRequest

    from bot.telegram.adapter import file_url_for, rejected_token_message

    t = settings.telegram
    kwargs: dict[str, object] = {}
    if t.api_base_url:
        kwargs = {"base_url": t.api_base_url, "base_file_url": t.api_file_url or file_url_for(t.api_base_url)}
    request = HTTPXRequest(connect_timeout=_TIMEOUT_S, read_timeout=_TIMEOUT_S)
    bot = Bot(t.token.get_secret_value().strip(), request=request, **kwargs)  # type: ignore[arg-type]
    try:
        me = await bot.get_me()
    except InvalidToken:
        raise CheckFailed(rejected_token_message(t.api_base_url)) from None
    except NetworkError as error:
        raise CheckFailed(f"cannot reach the Bot API at {t.api_base_url or 'https://api.telegram.org/bot'} "
                          f"({type(error).__name__}); check the network and CASEBOT_TELEGRAM__API_BASE_URL.") from None
    except TelegramError as error:  # the message never contains the token (it is not in the URL PTB reports)
        raise CheckFailed(f"the Bot API refused getMe: {type(error).__name__}") from None
    finally:
        await request.shutdown()
    return f"bot @{me.username} (id {me.id})"


async def check_matrix(settings: Settings) -> str:
    """The homeserver's ``/versions``, then the login: ``whoami`` for a token, a throwaway login for a password."""
    from bot.matrix.adapter import probe_homeserver

    m = settings.matrix
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            versions = await probe_homeserver(session, m.homeserver)
            token = m.access_token.get_secret_value()
            if token:
                who = await _whoami(session, m.homeserver, token)
                if who is None:
                    raise CheckFailed("the homeserver rejected CASEBOT_MATRIX__ACCESS_TOKEN (unknown or expired).")
                if m.user_id and who != m.user_id:
                    raise CheckFailed(f"CASEBOT_MATRIX__ACCESS_TOKEN belongs to {who}, not to "
                                      f"CASEBOT_MATRIX__USER_ID {m.user_id}.")
                return f"{who} on {m.homeserver} (Matrix {versions}), access token accepted"
            await _password_login(session, m.homeserver, m.user_id, m.password.get_secret_value())
        except (aiohttp.ClientError, TimeoutError) as error:
            raise CheckFailed(f"cannot reach the Matrix homeserver {m.homeserver} (CASEBOT_MATRIX__HOMESERVER): "
                              f"{type(error).__name__}") from None
    return f"{m.user_id} on {m.homeserver} (Matrix {versions}), password accepted"


async def _whoami(session: aiohttp.ClientSession, homeserver: str, token: str) -> str | None:
    url = homeserver.rstrip("/") + "/_matrix/client/v3/account/whoami"
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status == 401:
            return None
        body = await response.json(content_type=None)
        if response.status != 200 or not isinstance(body, dict) or "user_id" not in body:
            raise CheckFailed(f"the homeserver {homeserver} did not answer whoami (HTTP {response.status}).")
        return str(body["user_id"])


async def _password_login(session: aiohttp.ClientSession, homeserver: str, user_id: str, password: str) -> None:
    base = homeserver.rstrip("/") + "/_matrix/client/v3"
    payload = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
               "password": password, "initial_device_display_name": "casebot check"}
    async with session.post(f"{base}/login", json=payload) as response:
        body = await response.json(content_type=None)
        if response.status in (401, 403):
            code = body.get("errcode", "") if isinstance(body, dict) else ""
            raise CheckFailed(f"the homeserver refused the login as {user_id} ({code or response.status}): "
                              "check CASEBOT_MATRIX__USER_ID and CASEBOT_MATRIX__PASSWORD.")
        if response.status != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise CheckFailed(f"the homeserver {homeserver} did not answer the login (HTTP {response.status}).")
        token = str(body["access_token"])
    # The throwaway device is deleted again; the bot's own device is untouched.
    async with session.post(f"{base}/logout", headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status != 200:
            log.warning("matrix: logging out the check's device failed (HTTP %s)", response.status)


async def check_chroma(settings: Settings) -> str:
    """The Chroma server's heartbeat with the configured token (nothing to check for embedded Chroma)."""
    c = settings.chroma
    if not c.host:
        return f"embedded, under {settings.data_dir / 'chroma'}"
    scheme = "https" if c.ssl else "http"
    base = f"{scheme}://{c.host}:{c.port}/api/v2"
    token = c.token.get_secret_value()
    headers: dict[str, str] = {}
    if token:
        bearer = c.token_header == "Authorization"  # noqa: S105 - a header name
        headers = {c.token_header: f"Bearer {token}" if bearer else token}
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # Chroma's own token auth lets the heartbeat through and guards the rest (auth/identity);
            # a proxy in front of it (compose.yaml) guards everything.
            for path in ("heartbeat", "auth/identity"):
                async with session.get(f"{base}/{path}", headers=headers) as response:
                    if response.status in (401, 403):
                        what = "rejected CASEBOT_CHROMA__TOKEN" if token else "wants a token: set CASEBOT_CHROMA__TOKEN"
                        raise CheckFailed(f"the Chroma server at {c.host}:{c.port} {what}.")
                    if response.status != 200:
                        raise CheckFailed(f"{c.host}:{c.port} is not a Chroma server "
                                          f"(GET /api/v2/{path}: HTTP {response.status}).")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise CheckFailed(f"cannot reach the Chroma server at {c.host}:{c.port} (CASEBOT_CHROMA__HOST/PORT): "
                          f"{type(error).__name__}") from None
    return f"server at {c.host}:{c.port} answers"


def _configured(settings: Settings) -> list[str]:
    names = []
    if settings.telegram.token.get_secret_value():
        names.append("telegram")
    if settings.matrix.homeserver:
        names.append("matrix")
    return names


def run_checks(settings: Settings, platform: str | None, out: TextIO = sys.stdout) -> int:
    """Run the checks for ``platform`` (``all``, one adapter, or None: the configured ones); the exit code."""
    if platform is None:
        adapters = _configured(settings)
        if not adapters:
            raise SettingsError("Nothing to check: set CASEBOT_TELEGRAM__TOKEN or CASEBOT_MATRIX__HOMESERVER "
                                "(or name the adapter: casebot check telegram).")
    else:
        adapters = ["telegram", "matrix"] if platform == "all" else [platform]
    problems = requirements_problems(settings, adapters, articles=True)
    if problems:
        raise SettingsError(" ".join(problems))
    print(f"settings: ok (articles in {settings.articles_dir})", file=out)
    checks: list[tuple[str, Callable[[Settings], Coroutine[Any, Any, str]]]] = [("chroma", check_chroma)]
    checks += [(name, check_telegram if name == "telegram" else check_matrix) for name in adapters]
    failed = 0
    for name, check in checks:
        try:
            result = asyncio.run(check(settings))
        except CasebotError as error:  # CheckFailed, or an error the probe shares with the adapter
            failed += 1
            print(f"{name}: FAILED: {error}", file=out)
        else:
            print(f"{name}: ok, {result}", file=out)
    return 1 if failed else 0
