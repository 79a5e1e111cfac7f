"""casebot as a service, through the real ``casebot`` process: bad settings, signals, cases, logs.

Every misconfiguration must end the command with exit code 2 and one line
naming the setting, within 5 s, before anything heavy happens (the data dir
is not even created). SIGTERM/SIGINT must end ``casebot run`` within 5 s
while an adapter is still retrying its first connection.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import build_services
from bot.conversation import Conversation, Incoming
from bot.settings import collection_name
from tests.casebot_process import Casebot, casebot_env, index_demo_case, run_casebot
from tests.conftest import DEMO_ARTICLES, REPO, make_settings
from tests.integration.loopback import free_port

TOKEN = "7000000001:" "AAHcasebotTestTokenForTheBotApiPeer0"  # fake, the Bot API peer's default
MATRIX = {"CASEBOT_MATRIX__HOMESERVER": "https://matrix.example.org", "CASEBOT_MATRIX__USER_ID": "@bot:example.org",
          "CASEBOT_MATRIX__PASSWORD": "pw", "CASEBOT_MATRIX__PICKLE_KEY": "test-only"}

MISCONFIGURED = [
    # (command, settings, what the one line must say)
    (["run", "telegram"], {}, "CASEBOT_TELEGRAM__TOKEN is not set"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": "123:abc"}, "CASEBOT_TELEGRAM__TOKEN does not look like"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": "http://127.0.0.1:8081"},
     "invalid setting CASEBOT_TELEGRAM__API_BASE_URL: must end in /bot"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": "127.0.0.1:8081/bot"},
     "invalid setting CASEBOT_TELEGRAM__API_BASE_URL: must start with https://"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__WEBHOOK_URL": "http://bot.example.org/h"},
     "invalid setting CASEBOT_TELEGRAM__WEBHOOK_URL: must start with https://"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN,
                           "CASEBOT_TELEGRAM__WEBHOOK_URL": "https://bot.example.org:9000/h"},
     "invalid setting CASEBOT_TELEGRAM__WEBHOOK_URL: Telegram only sends webhooks to ports 443, 80, 88 or 8443"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__WEBHOOK_SECRET": "not secret!"},
     "invalid setting CASEBOT_TELEGRAM__WEBHOOK_SECRET: may only contain"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__WEBHOOK_PORT": "70000"},
     "invalid setting CASEBOT_TELEGRAM__WEBHOOK_PORT"),
    (["run", "matrix"], MATRIX | {"CASEBOT_MATRIX__HOMESERVER": "matrix.example.org"},
     "invalid setting CASEBOT_MATRIX__HOMESERVER: must start with https://"),
    (["run", "matrix"], {k: v for k, v in MATRIX.items() if k != "CASEBOT_MATRIX__HOMESERVER"},
     "CASEBOT_MATRIX__HOMESERVER is not set"),
    (["run", "matrix"], MATRIX | {"CASEBOT_MATRIX__USER_ID": "casebot"},
     "invalid setting CASEBOT_MATRIX__USER_ID: must be a full Matrix user id"),
    (["run", "matrix"], MATRIX | {"CASEBOT_MATRIX__USER_ID": "@casebot"},
     "invalid setting CASEBOT_MATRIX__USER_ID: must be a full Matrix user id"),
    (["run", "matrix"], {k: v for k, v in MATRIX.items() if k != "CASEBOT_MATRIX__PICKLE_KEY"},
     "CASEBOT_MATRIX__PICKLE_KEY is not set"),
    (["run", "matrix"], {k: v for k, v in MATRIX.items() if k != "CASEBOT_MATRIX__PASSWORD"},
     "Set CASEBOT_MATRIX__PASSWORD or CASEBOT_MATRIX__ACCESS_TOKEN"),
    (["run", "all"], MATRIX, "CASEBOT_TELEGRAM__TOKEN is not set"),
    (["index"], {"CASEBOT_ARTICLES_DIR": "/nonexistent/articles"}, "CASEBOT_ARTICLES_DIR: /nonexistent/articles does not exist"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_ARTICLES_DIR": "/nonexistent/articles"},
     "CASEBOT_ARTICLES_DIR: /nonexistent/articles does not exist"),
    (["index"], {"CASEBOT_ARTICLES_DIR": str(REPO / "README.md")}, "is not a folder"),
    (["index"], {"CASEBOT_ARTICLES_DIR": str(REPO / "bot")}, "contains no article files"),
    (["run", "telegram"], {"CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_METRICS__PORT": "nine"},
     "invalid setting CASEBOT_METRICS__PORT"),
    (["ask", "Wer?"], {"CASEBOT_CHROMA__HOST": "http://chroma:8000"}, "invalid setting CASEBOT_CHROMA__HOST"),
    (["check"], {}, "Nothing to check"),
]


@pytest.mark.parametrize(("args", "settings", "expected"), MISCONFIGURED,
                         ids=[f"{a[-1]}-{e[:40]}" for a, _, e in MISCONFIGURED])
def test_misconfiguration_exits_2_at_once_with_one_line(tmp_path: Path, args: list[str],
                                                        settings: dict[str, str], expected: str) -> None:
    data = tmp_path / "data"
    result, seconds = run_casebot(args, tmp_path, {"CASEBOT_DATA_DIR": str(data)} | settings)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("casebot: ") and expected in lines[0]
    assert seconds < 5, f"took {seconds:.1f} s"
    assert not data.exists()  # nothing was built, opened or loaded
    assert TOKEN not in result.stderr and "pw" not in result.stderr.split()


def test_asking_with_no_articles_to_index_is_a_settings_error(tmp_path: Path) -> None:
    """`ask` on an empty index builds it first; with nothing to build from it says so instead of refusing."""
    result, _ = run_casebot(["ask", "Wer ist Ilja Gorelik?"], tmp_path,
                            {"CASEBOT_DATA_DIR": str(tmp_path / "data"), "CASEBOT_ARTICLES_DIR": str(tmp_path / "none")})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (f"casebot: CASEBOT_ARTICLES_DIR: {tmp_path / 'none'} does not exist. "
                                              "The index is empty, so every question would be refused.")
    assert result.stdout == ""


def test_misspelt_variables_are_named_with_the_closest_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CASEBOT_CHROMA_HOST=chroma\n", encoding="utf-8")
    result, _ = run_casebot(["run", "telegram"], tmp_path, {"CASEBOT_DATA_DIR": str(tmp_path / "data"),
                                                             "CASEBOT_TELEGRAM_TOKEN": TOKEN})
    assert result.returncode == 2
    assert ("unknown setting CASEBOT_TELEGRAM_TOKEN (environment variable) is ignored; "
            "did you mean CASEBOT_TELEGRAM__TOKEN?") in result.stderr
    assert "unknown setting CASEBOT_CHROMA_HOST (key in .env) is ignored; did you mean CASEBOT_CHROMA__HOST?" \
        in result.stderr
    assert "casebot: CASEBOT_TELEGRAM__TOKEN is not set" in result.stderr


def test_json_logs_are_one_object_per_line_including_errors(tmp_path: Path) -> None:
    result, _ = run_casebot(["run", "matrix"], tmp_path, {"CASEBOT_LOG__FORMAT": "json", "CASEBOT_MATRX__X": "1",
                                                           "CASEBOT_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r["level"] for r in records] == ["WARNING", "ERROR"]
    assert "CASEBOT_MATRX__X" in records[0]["message"]
    assert records[1]["message"].startswith("CASEBOT_MATRIX__HOMESERVER is not set")
    assert {"time", "logger"} <= set(records[1])


def test_version(tmp_path: Path) -> None:
    result, _ = run_casebot(["--version"], tmp_path, {})
    assert result.returncode == 0
    assert result.stdout.startswith("casebot ") and len(result.stdout.split()) >= 2


# --- signals during start-up ------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data dir with the demo case indexed by `casebot index`, so `run` gets to connecting quickly."""
    return index_demo_case(tmp_path_factory.mktemp("service"))


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


START_UP_RETRIES = [
    # (command, what makes it retry, the retry line to wait for, the signal)
    ("telegram", {"CASEBOT_TELEGRAM__TOKEN": TOKEN}, "Telegram unreachable (NetworkError), retry 2/", signal.SIGTERM),
    ("telegram", {"CASEBOT_TELEGRAM__TOKEN": TOKEN}, "Telegram unreachable (NetworkError), retry 2/", signal.SIGINT),
    ("matrix", MATRIX, "matrix: versions failed (ClientConnectorError), retry 2/", signal.SIGTERM),
]


@pytest.mark.parametrize(("adapter", "settings", "retry_line", "sig"), START_UP_RETRIES,
                         ids=["telegram-SIGTERM", "telegram-SIGINT", "matrix-SIGTERM"])
def test_signal_ends_start_up_retries_within_5_s(tmp_path: Path, indexed: dict[str, str], adapter: str,
                                                 settings: dict[str, str], retry_line: str, sig: int) -> None:
    closed = closed_port_url()  # nothing listens there: every connection is refused
    where = ({"CASEBOT_TELEGRAM__API_BASE_URL": closed + "/bot"} if adapter == "telegram"
             else {"CASEBOT_MATRIX__HOMESERVER": closed})
    bot = Casebot(["run", adapter], tmp_path, indexed | settings | where)
    try:
        bot.wait_for_line(lambda line: retry_line in line)
        code, seconds = bot.stop(sig)
    finally:
        bot.kill()
    assert code == 0, bot.stderr
    assert seconds < 5, f"took {seconds:.1f} s"
    assert "Traceback" not in bot.stderr
    retries = [line for line in bot.lines if " retry " in line]
    assert len(retries) == len({line.split(" retry ")[1] for line in retries})  # one line per retry


def test_sigterm_while_the_index_is_built_ends_within_5_s(tmp_path: Path) -> None:
    shutil.copytree(DEMO_ARTICLES, tmp_path / "articles")
    settings = {"CASEBOT_DATA_DIR": str(tmp_path / "data"), "CASEBOT_ARTICLES_DIR": str(tmp_path / "articles"),
                "CASEBOT_TELEGRAM__TOKEN": TOKEN, "CASEBOT_TELEGRAM__API_BASE_URL": closed_port_url() + "/bot"}
    bot = Casebot(["run", "telegram"], tmp_path, settings)
    try:
        bot.wait_for_line(lambda line: "the index is empty: building it" in line)
        code, seconds = bot.stop(signal.SIGTERM)
    finally:
        bot.kill()
    assert code == 0, bot.stderr
    assert seconds < 5, f"took {seconds:.1f} s"
    assert "Traceback" not in bot.stderr
    # An interrupted build is redone by the next run, not left half-done.
    result, _ = run_casebot(["index"], tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert "failed 0" in result.stdout
    listed, _ = run_casebot(["sources", "--json"], tmp_path, settings)
    assert len(json.loads(listed.stdout)) == 2


# --- one case per collection ---------------------------------------------------------------


def test_two_cases_in_one_data_dir_do_not_mix(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(DEMO_ARTICLES, demo)
    english = tmp_path / "english"
    shutil.copytree(REPO / "tests" / "data" / "english", english)
    data = tmp_path / "data"

    first = build_services(make_settings(data, demo))
    assert first.case.index().added == 2
    second = build_services(make_settings(data, english))
    assert second.case.index().added == 2
    assert collection_name(first.settings) != collection_name(second.settings)
    assert {r.url for r in second.case.sources()}.isdisjoint({r.url for r in first.case.sources()})
    assert len(first.case.sources()) == 2 and len(second.case.sources()) == 2
    assert "Mitto AG" in help_text(first.conversation)  # named in data/articles/.case.yaml
    assert "english" in help_text(second.conversation)  # the folder's name
    assert "Mitto" not in help_text(second.conversation)


def help_text(conversation: Conversation) -> str:
    reply = asyncio.run(conversation.handle(Incoming(chat_id="1", user_id="1", text="/help", language="en")))
    return reply.text


def test_a_one_shot_ask_does_not_import_llama_index(tmp_path: Path, indexed: dict[str, str]) -> None:
    # llama-index core takes about 1.3 s to import; answering needs none of it (chunks are read from
    # Chroma directly, the default embedder is not a llama-index class), only indexing writes through it.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "bot.cli", "ask", "Wer ist Ilja Gorelik?"],
                            cwd=tmp_path, env=casebot_env(tmp_path, indexed), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[1]" in result.stdout and "Gorelik" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "chromadb" in imported  # the import trace is there ...
    assert not [name for name in imported if name.startswith("llama_index")]  # ... and has no llama-index
