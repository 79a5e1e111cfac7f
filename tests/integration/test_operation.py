"""Operating casebot, through the real ``casebot`` process against real peers on 127.0.0.1.

* ``/healthz`` and ``/metrics`` of ``casebot run telegram`` on the Bot API
  peer: 200 while connected, counters that rise with a question, 503 once
  the peer is gone; ``/stats`` totals that survive a restart; JSON logs.
* Permanent start-up errors (a rejected token, a homeserver URL that is a
  web site) end the run at once, without retries.
* ``casebot check`` against the Bot API peer, Synapse and a Chroma server.
* Chroma's token auth against a real Chroma server started with server-side
  token authentication.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.app import build_services
from bot.check import CheckFailed, check_chroma
from bot.settings import ChromaSettings
from index.errors import StoreUnavailableError
from tests.casebot_process import Casebot, get, get_json, index_demo_case, run_casebot, wait_until
from tests.conftest import NETZWOCHE, REPO, make_settings
from tests.integration.botapi_peer import BotApiPeer
from tests.integration.loopback import free_port, server_process
from tests.integration.synapse_harness import SynapseServer, running_synapse
from tests.integration.test_chroma_server import chroma_server  # noqa: F401 - the `chroma run` fixture

pytestmark = pytest.mark.integration

TOKEN = "7300000001:" "AAHcasebotOperationTestToken000000"  # fake
OTHER_TOKEN = "7300000002:" "AAHcasebotOperationTestToken000000"  # fake, unknown to the peer
CHROMA_TOKEN = "chroma-test-token-1234"  # test only
ADMIN = 4711
READER = 1001
QUESTION = "Welche Behörde hat Mitto ins Visier genommen?"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return index_demo_case(tmp_path_factory.mktemp("operation"))


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when it is absent)."""
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def ask(peer: BotApiPeer, user: int, text: str) -> str:
    """Send ``text`` from ``user`` and return the bot's reply text."""
    mark = len(peer.calls)
    peer.private_text(user, text, language_code="en")
    call = peer.wait_for(lambda c: c.method == "sendMessage" and c.params.get("chat_id") == user,
                         since=mark, timeout=60)
    return str(call.params["text"])


def test_health_metrics_and_persistent_stats_of_a_running_telegram_bot(tmp_path: Path,
                                                                       indexed: dict[str, str]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    peer = BotApiPeer(token=TOKEN).start()
    settings = indexed | {
        "CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url,
        "CASEBOT_TELEGRAM__ADMIN_IDS": str(ADMIN), "CASEBOT_METRICS__PORT": str(port),
        "CASEBOT_LOG__FORMAT": "json", "CASEBOT_LOG_LEVEL": "INFO",
    }
    bot = Casebot(["run", "telegram"], tmp_path, settings)
    try:
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, 120, "healthz 200")
        status, health = get_json(f"{base}/healthz")
        assert status == 200 and health["status"] == "ok"
        assert health["adapters"] == {"telegram": "connected"}
        assert health["index"] == {"articles": 2, "chunks": health["index"]["chunks"]}
        assert health["index"]["chunks"] > 0

        stats_before = ask(peer, ADMIN, "/stats")
        metrics = get(f"{base}/metrics")[1]
        assert sample(metrics, "casebot_index_articles") == 2
        assert sample(metrics, "casebot_questions_total", adapter="telegram", outcome="answered") == 0

        answer = ask(peer, READER, QUESTION)
        assert "EDÖB" in answer
        metrics = get(f"{base}/metrics")[1]
        assert sample(metrics, "casebot_questions_total", adapter="telegram", outcome="answered") == 1
        assert sample(metrics, "casebot_answer_seconds_count", adapter="telegram") == 1
        assert sample(metrics, "casebot_answer_seconds_sum", adapter="telegram") > 0

        peer.stop()  # Telegram is gone: the bot is not connected any more
        wait_until(lambda: get(f"{base}/healthz")[0] == 503, 60, "healthz 503")
        status, health = get_json(f"{base}/healthz")
        assert health["status"] == "unhealthy" and health["reason"].startswith("telegram: polling Telegram fails")
        code, seconds = bot.stop(signal.SIGTERM)
    except BaseException:
        print(bot.stderr)  # the bot's side of a failure
        raise
    finally:
        bot.kill()
        peer.stop()
    assert code == 0 and seconds < 5, (code, seconds)
    records = [json.loads(line) for line in bot.lines]  # every line is one JSON object
    assert [r for r in records if "exception" in r] == []  # Telegram being gone is no traceback
    assert any(r["message"] == "telegram adapter running" for r in records)
    assert TOKEN not in bot.stderr

    # After a restart /stats still counts the question answered before it.
    # (Later update ids: the bot remembers the ones it handled, as Telegram's would go on counting.)
    with BotApiPeer(token=TOKEN, first_update_id=200_000_001) as peer:
        settings = settings | {"CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url}
        bot = Casebot(["run", "telegram"], tmp_path, settings)
        try:
            bot.wait_for_line(lambda line: "telegram adapter running" in line, timeout=120)
            stats_after = ask(peer, ADMIN, "/stats")
        finally:
            bot.stop()
    answered = [int(line.rsplit(":", 1)[1]) for text in (stats_before, stats_after)
                for line in text.splitlines() if line.startswith("Questions answered:")]
    assert answered[1] == answered[0] + 1, (stats_before, stats_after)


def test_rejected_token_stops_the_run_at_once(tmp_path: Path, indexed: dict[str, str]) -> None:
    with BotApiPeer(token=TOKEN) as peer:
        settings = indexed | {"CASEBOT_TELEGRAM__TOKEN": OTHER_TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url}
        result, _ = run_casebot(["run", "telegram"], tmp_path, settings, timeout=120)
    assert result.returncode == 1
    assert "casebot: Telegram rejected the bot token (CASEBOT_TELEGRAM__TOKEN)" in result.stderr
    assert "retry" not in result.stderr and "Traceback" not in result.stderr
    assert OTHER_TOKEN not in result.stderr


def test_homeserver_that_is_not_matrix_stops_the_run_at_once(tmp_path: Path, indexed: dict[str, str]) -> None:
    with BotApiPeer(token=TOKEN) as peer:  # a web server, but not a Matrix homeserver
        url = peer.url
        settings = indexed | {"CASEBOT_MATRIX__HOMESERVER": url, "CASEBOT_MATRIX__USER_ID": "@bot:localhost",
                              "CASEBOT_MATRIX__PASSWORD": "pw", "CASEBOT_MATRIX__PICKLE_KEY": "test-only"}
        result, _ = run_casebot(["run", "matrix"], tmp_path, settings, timeout=120)
    assert result.returncode == 1
    assert f"casebot: {url} (CASEBOT_MATRIX__HOMESERVER) is not a Matrix homeserver" in result.stderr
    assert "retry" not in result.stderr and "password" not in result.stderr.lower()


def test_check_telegram_against_the_bot_api_peer(tmp_path: Path, indexed: dict[str, str]) -> None:
    with BotApiPeer(token=TOKEN) as peer:
        good = indexed | {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url}
        result, seconds = run_casebot(["check", "telegram"], tmp_path, good)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"telegram: ok, bot @{peer.bot.username} (id {peer.bot.id})" in result.stdout
        assert "chroma: ok, embedded" in result.stdout
        assert seconds < 10
        assert not peer.calls_of("getUpdates")  # nothing was started

        result, _ = run_casebot(["check"], tmp_path, good | {"CASEBOT_TELEGRAM__TOKEN": OTHER_TOKEN})
        assert result.returncode == 1
        assert "telegram: FAILED: Telegram rejected the bot token" in result.stdout
    closed = good | {"CASEBOT_TELEGRAM__API_BASE_URL": f"http://127.0.0.1:{free_port()}/bot"}
    result, _ = run_casebot(["check", "telegram"], tmp_path, closed)
    assert result.returncode == 1
    assert "telegram: FAILED: cannot reach the Bot API" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def synapse() -> Iterator[SynapseServer]:
    with running_synapse() as server:
        yield server


def test_check_matrix_against_synapse(tmp_path: Path, indexed: dict[str, str], synapse: SynapseServer) -> None:
    user_id, token = synapse.register_user("checkbot", "check-password")
    base = indexed | {"CASEBOT_MATRIX__HOMESERVER": synapse.base_url, "CASEBOT_MATRIX__USER_ID": user_id,
                      "CASEBOT_MATRIX__PICKLE_KEY": "test-only"}

    result, _ = run_casebot(["check", "matrix"], tmp_path, base | {"CASEBOT_MATRIX__PASSWORD": "check-password"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"matrix: ok, {user_id} on {synapse.base_url}" in result.stdout and "password accepted" in result.stdout
    devices = synapse.api_request("GET", "/_matrix/client/v3/devices", access_token=token)["devices"]
    assert [d for d in devices if d.get("display_name") == "casebot check"] == []  # the probe's device is gone

    result, _ = run_casebot(["check", "matrix"], tmp_path, base | {"CASEBOT_MATRIX__ACCESS_TOKEN": token})
    assert result.returncode == 0, result.stdout
    assert "access token accepted" in result.stdout

    result, _ = run_casebot(["check", "matrix"], tmp_path, base | {"CASEBOT_MATRIX__PASSWORD": "wrong"})
    assert result.returncode == 1
    assert f"matrix: FAILED: the homeserver refused the login as {user_id} (M_FORBIDDEN)" in result.stdout

    with BotApiPeer(token=TOKEN) as peer:
        result, _ = run_casebot(["check", "matrix"], tmp_path, base | {"CASEBOT_MATRIX__HOMESERVER": peer.url,
                                                                       "CASEBOT_MATRIX__PASSWORD": "x"})
    assert result.returncode == 1
    assert "is not a Matrix homeserver" in result.stdout


@pytest.fixture(scope="module")
def chroma_with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Chroma's Python server with token authentication (the Rust `chroma run` has no server-side auth)."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-auth")
    command = [
        "env", "IS_PERSISTENT=TRUE", f"PERSIST_DIRECTORY={path / 'db'}", "ANONYMIZED_TELEMETRY=False",
        "CHROMA_SERVER_AUTHN_PROVIDER=chromadb.auth.token_authn.TokenAuthenticationServerProvider",
        f"CHROMA_SERVER_AUTHN_CREDENTIALS={CHROMA_TOKEN}",
        sys.executable, "-m", "uvicorn", "chromadb.app:app", "--host", "127.0.0.1", "--port", str(port),
    ]
    with server_process(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", log_path=path / "server.log"):
        yield port


def test_chroma_token_auth_against_a_real_server(tmp_path: Path, articles: Path, chroma_with_token: int) -> None:
    def chroma(token: str = "") -> ChromaSettings:
        return ChromaSettings(host="127.0.0.1", port=chroma_with_token, collection="auth-case",
                              token=SecretStr(token))

    services = build_services(make_settings(tmp_path / "data", articles, chroma=chroma(CHROMA_TOKEN)))
    assert services.case.index().added == 2
    answer = services.case.ask(QUESTION)
    assert not answer.refused and NETZWOCHE in {c.url for c in answer.citations}

    for token in ("", "wrong-token-5678"):
        with pytest.raises(StoreUnavailableError) as raised:
            build_services(make_settings(tmp_path / "other", articles, chroma=chroma(token)))
        assert "wrong-token-5678" not in str(raised.value)


def test_check_chroma_server_token(tmp_path: Path, indexed: dict[str, str], chroma_with_token: int) -> None:
    with BotApiPeer(token=TOKEN) as peer:
        settings = indexed | {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url,
                              "CASEBOT_CHROMA__HOST": "127.0.0.1", "CASEBOT_CHROMA__PORT": str(chroma_with_token)}
        result, _ = run_casebot(["check"], tmp_path, settings | {"CASEBOT_CHROMA__TOKEN": CHROMA_TOKEN})
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"chroma: ok, server at 127.0.0.1:{chroma_with_token} answers" in result.stdout

        result, _ = run_casebot(["check"], tmp_path, settings)
        assert result.returncode == 1
        assert "chroma: FAILED: the Chroma server at" in result.stdout and "wants a token" in result.stdout
        assert "telegram: ok" in result.stdout


# --- the Compose file's Chroma: Chroma's Rust server behind the token-checking nginx ----------


@contextmanager
def nginx_token_proxy(root: Path, token: str, upstream_port: int) -> Iterator[int]:
    """nginx with ``deploy/chroma-auth.conf.template`` as the nginx image would render it; the port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    template = (REPO / "deploy" / "chroma-auth.conf.template").read_text(encoding="utf-8")
    site = (template.replace("${CHROMA_TOKEN}", token).replace("listen 8000;", f"listen 127.0.0.1:{port};")
            .replace("http://chroma:8000", f"http://127.0.0.1:{upstream_port}"))
    temp = " ".join(f"{kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = root / "nginx.conf"
    config.write_text(f"worker_processes 1; daemon off; pid {root / 'nginx.pid'}; error_log {root / 'error.log'};\n"
                      f"events {{}}\nhttp {{ access_log off; {temp}\n{site}\n}}\n", encoding="utf-8")
    process = subprocess.Popen([nginx, "-c", str(config), "-e", str(root / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/")[0] != 0, 20, "nginx listening")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_compose_chroma_token_proxy_guards_the_rust_server(tmp_path: Path, articles: Path,
                                                           chroma_server: int) -> None:  # noqa: F811
    """``chroma_server`` is Chroma's Rust server (`chroma run`), as in the Compose file."""
    with nginx_token_proxy(tmp_path / "nginx", CHROMA_TOKEN, chroma_server) as port:
        assert get(f"http://127.0.0.1:{port}/api/v2/heartbeat")[0] == 401  # nothing passes without the token

        def chroma(token: str) -> ChromaSettings:
            return ChromaSettings(host="127.0.0.1", port=port, collection="proxied-case", token=SecretStr(token))

        services = build_services(make_settings(tmp_path / "data", articles, chroma=chroma(CHROMA_TOKEN)))
        assert services.case.index().added == 2
        assert not services.case.ask(QUESTION).refused
        with pytest.raises(StoreUnavailableError):
            build_services(make_settings(tmp_path / "other", articles, chroma=chroma("wrong-token-5678")))
        assert asyncio.run(check_chroma(services.settings)) == f"server at 127.0.0.1:{port} answers"
        with pytest.raises(CheckFailed, match="rejected CASEBOT_CHROMA__TOKEN"):
            asyncio.run(check_chroma(make_settings(tmp_path, articles, chroma=chroma("wrong-token-5678"))))

    # An empty CHROMA_TOKEN must not let an empty bearer token through.
    with nginx_token_proxy(tmp_path / "nginx-empty", "", chroma_server) as port:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/heartbeat",
                                         headers={"Authorization": "Bearer "})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503
