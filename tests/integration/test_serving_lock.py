"""One writer for an embedded Chroma: `casebot index` refuses while `casebot run` serves the data dir.

Real processes: `casebot run telegram` against the Bot API peer on 127.0.0.1,
and `casebot index` beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.botapi_peer import BotApiPeer
from tests.test_crash import casebot, write_case

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_index_beside_a_running_bot_is_refused_with_what_to_do(tmp_path: Path) -> None:
    articles, data = tmp_path / "articles", tmp_path / "data"
    write_case(articles)
    assert casebot(data, articles, "index").returncode == 0
    with BotApiPeer(token="424242:AAHcasebotServingLockTestToken000000") as peer:
        env = {**os.environ, "PYTHONPATH": str(REPO), "CASEBOT_DATA_DIR": str(data),
               "CASEBOT_ARTICLES_DIR": str(articles), "CASEBOT_TELEGRAM__TOKEN": peer.token,
               "CASEBOT_TELEGRAM__API_BASE_URL": peer.base_url}
        bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "telegram"], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            lock = data / "serving.lock"
            deadline = time.monotonic() + 120
            while not (lock.is_file() and lock.read_text().strip() == str(bot.pid)):
                assert bot.poll() is None, bot.stderr.read() if bot.stderr else ""
                assert time.monotonic() < deadline, "casebot run did not take the serving lock"
                time.sleep(0.2)

            refused = casebot(data, articles, "index")
            assert refused.returncode == 1
            assert f"casebot run (pid {bot.pid}) is serving the index" in refused.stderr
            assert "/reindex" in refused.stderr and "!reindex" in refused.stderr
            assert "CASEBOT_CHROMA__HOST" in refused.stderr
            assert refused.stderr.count("\n") == 1  # one sentence, no traceback

            second = subprocess.run([sys.executable, "-m", "bot.cli", "run", "telegram"], env=env, cwd=tmp_path,
                                    capture_output=True, text=True, timeout=120, check=False)
            assert second.returncode == 1, second.stderr
            assert f"Another casebot process (pid {bot.pid}) is using the index" in second.stderr
        finally:
            bot.send_signal(signal.SIGTERM)
            bot.wait(timeout=60)
    # Once the bot has stopped, indexing works again.
    done = casebot(data, articles, "index")
    assert done.returncode == 0, done.stderr
    assert "unchanged 3" in done.stdout
    assert (data.stat().st_mode & 0o777) == 0o700
    assert (lock.stat().st_mode & 0o777) == 0o600
