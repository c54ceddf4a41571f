"""`estatedesk up` as a user runs it: embedded servers, endpoints.json, Ctrl-C, restart
with data kept; and the same command in external mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from shared.auth import issue_token

pytestmark = pytest.mark.integration

DIRECTORY = {
    "company": {"name": "测试物业"},
    "estates": [{"code": "cli01", "name": "测试小区", "departments": [{"code": "engineering", "name": "工程部"}],
                 "staff": [{"id": "cs01", "name": "客服一", "roles": ["customer_service"]}]}],
}


def start_up(data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "estatedesk.cli", "--data-dir", str(data_dir), "up", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ESTATEDESK_")},
    )


def wait_for_endpoints(data_dir: Path, process: subprocess.Popen, timeout: float = 90) -> dict:
    path = data_dir / "endpoints.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"estatedesk up exited early:\n{process.stdout.read()}")
        if path.exists():
            endpoints = json.loads(path.read_text())
            if len(endpoints["services"]) == 5:
                return endpoints
        time.sleep(0.2)
    raise AssertionError("endpoints.json did not appear")


# A bound for a busy shared machine (it takes ~3 s on an idle one); what matters is that
# no service needed SIGKILL (the supervisor says so) and nothing printed a traceback.
CLEAN_STOP_SECONDS = 30


def stop_with_ctrl_c(process: subprocess.Popen) -> str:
    """Ctrl-C: every service stops on its SIGTERM, everything within CLEAN_STOP_SECONDS,
    exit 0, no traceback, nothing left running."""
    children = [p for p in psutil.Process(process.pid).children(recursive=True)]
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    took = time.monotonic() - started
    assert process.returncode == 0, output
    assert "ignored SIGTERM" not in output, output
    assert took < CLEAN_STOP_SECONDS, f"stopping took {took:.1f} s"
    assert "Traceback" not in output, output
    time.sleep(0.5)
    survivors = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"left running after Ctrl-C: {[p.cmdline() for p in survivors]}"
    return output


def load_directory(data_dir: Path) -> None:
    path = data_dir / "directory.json"
    path.write_text(json.dumps(DIRECTORY, ensure_ascii=False))
    subprocess.run([sys.executable, "-m", "estatedesk.cli", "--data-dir", str(data_dir), "directory", str(path)],
                   check=True, capture_output=True)


def intake_is_ready_for(base: str, token: str) -> None:
    for _ in range(100):
        r = httpx.get(f"{base}/v1/estates/cli01/requests/none", headers={"Authorization": f"Bearer {token}"})
        if "unknown estate" not in r.text:
            return
        time.sleep(0.1)
    raise AssertionError("intake never saw the directory")


def test_up_embedded_then_ctrl_c_then_up_again_keeps_data():
    data_dir = Path("/tmp") / f"edcli-{uuid.uuid4().hex[:6]}"
    process = start_up(data_dir)
    try:
        endpoints = wait_for_endpoints(data_dir, process)
        assert endpoints["nats"].startswith("nats://127.0.0.1:")
        assert endpoints["database"].startswith("postgresql://")
        assert set(endpoints["services"]) == {"intake", "dispatch", "callback", "archive", "analytics"}
        assert (data_dir / "nats").is_dir() and (data_dir / "pgdata" / "PG_VERSION").exists()
        assert (data_dir / "signing.key").exists()
        for url in endpoints["services"].values():
            assert httpx.get(url + "/healthz").status_code == 200
        load_directory(data_dir)
        key = (data_dir / "signing.key").read_text().strip()
        token = issue_token(key, "cs01", ["customer_service"], ["cli01"])
        intake = endpoints["services"]["intake"]
        intake_is_ready_for(intake, token)
        created = httpx.post(f"{intake}/v1/estates/cli01/requests", headers={"Authorization": f"Bearer {token}"},
                             json={"kind": "inquiry", "channel": "walk_in", "description": "物业费怎么交？",
                                   "owner_signed": True})
        assert created.status_code == 201, created.text
    finally:
        output = stop_with_ctrl_c(process)
    assert "stopped." in output

    process = start_up(data_dir)
    try:
        endpoints = wait_for_endpoints(data_dir, process)
        intake = endpoints["services"]["intake"]
        intake_is_ready_for(intake, token)  # the directory survived in JetStream
        again = httpx.get(f"{intake}/v1/estates/cli01/requests/{created.json()['id']}",
                          headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 200 and again.json()["form_number"] == created.json()["form_number"]
    finally:
        stop_with_ctrl_c(process)


def test_up_in_external_mode_starts_no_embedded_server(servers):
    data_dir = Path("/tmp") / f"edext-{uuid.uuid4().hex[:6]}"
    process = start_up(data_dir, "--nats-url", servers["nats"], "--database-url", servers["database"])
    try:
        endpoints = wait_for_endpoints(data_dir, process)
        assert endpoints["nats"] == servers["nats"]
        assert endpoints["database"] == servers["database"]
        assert not (data_dir / "nats").exists() and not (data_dir / "pgdata").exists()
        for url in endpoints["services"].values():
            assert httpx.get(url + "/healthz").json()["status"] == "ok"
    finally:
        stop_with_ctrl_c(process)


def test_a_crashed_service_is_restarted_and_logged():
    data_dir = Path("/tmp") / f"edsup-{uuid.uuid4().hex[:6]}"
    process = start_up(data_dir)
    try:
        endpoints = wait_for_endpoints(data_dir, process)
        callback_url = endpoints["services"]["callback"]
        victim = next(p for p in psutil.Process(process.pid).children(recursive=True)
                      if "services.callback" in " ".join(p.cmdline()))
        victim.kill()
        for _ in range(200):
            try:
                if httpx.get(callback_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert httpx.get(callback_url + "/healthz").status_code == 200
    finally:
        output = stop_with_ctrl_c(process)
    assert "callback exited" in output and "restarting" in output
