"""The supervisor's handling of embedded servers (the real ones are killed in
tests/faults; here the decisions: restart what died, say so, keep trying on failure)."""

import logging

from estatedesk.supervisor import Supervisor


class Server:
    def __init__(self, name, codes, fail_restarts=0):
        self.name = name
        self.codes = list(codes)  # exit_code() answers, one per check
        self.fail_restarts = fail_restarts
        self.restarted = 0

    def exit_code(self):
        return self.codes.pop(0) if self.codes else None

    def restart(self):
        if self.fail_restarts:
            self.fail_restarts -= 1
            raise SystemExit("port in use")
        self.restarted += 1


def test_a_dead_server_is_restarted_and_the_operator_told(capsys, caplog):
    nats, postgres = Server("nats-server", [None, -9]), Server("postgresql", [None, None])
    supervisor = Supervisor(servers=[nats, postgres])
    with caplog.at_level(logging.WARNING, "estatedesk.supervisor"):
        supervisor.check_servers()
        supervisor.check_servers()
    assert (nats.restarted, postgres.restarted) == (1, 0)
    assert supervisor.server_restarts == {"nats-server": 1}
    out = capsys.readouterr().out
    assert "nats-server exited with code -9; restarting (#1)" in out and "nats-server is back" in out
    assert "nats-server exited with -9" in caplog.text


def test_a_failed_restart_is_tried_again_at_the_next_check(capsys):
    postgres = Server("postgresql", [1, 1], fail_restarts=1)
    supervisor = Supervisor(servers=[postgres])
    supervisor.check_servers()
    assert postgres.restarted == 0 and "did not restart: port in use" in capsys.readouterr().out
    supervisor.check_servers()
    assert postgres.restarted == 1 and supervisor.server_restarts == {"postgresql": 2}


def test_nothing_is_restarted_while_stopping():
    nats = Server("nats-server", [0])
    supervisor = Supervisor(servers=[nats], stopping=True)
    supervisor.check_servers()
    assert nats.restarted == 0


def test_a_service_that_ignores_sigterm_is_killed_and_named(capsys, tmp_path):
    import subprocess
    import sys
    import time

    from estatedesk.supervisor import ServiceProcess

    service = ServiceProcess("stubborn", 0, {}, tmp_path / "log")
    service.process = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                                        "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert service.process.stdout.readline().strip() == "ready"  # its handler is in place
    started = time.monotonic()
    service.stop(timeout=0.5)
    assert service.process.returncode == -9 and time.monotonic() - started < 5
    assert "stubborn ignored SIGTERM for 0.5 s; killed" in capsys.readouterr().out


def test_a_replica_that_keeps_dying_waits_without_holding_up_the_others(tmp_path, monkeypatch):
    """Back-off is a due time, not a sleep: the check returns at once, the quick death is
    started again only when due, and a sibling that died is restarted meanwhile."""
    import subprocess
    import sys
    import time

    from estatedesk.supervisor import ServiceProcess

    started = []
    monkeypatch.setattr(ServiceProcess, "start", lambda self: started.append(self.label) or setattr(
        self, "started_at", time.time()))
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    flaky = ServiceProcess("dispatch", 0, {}, tmp_path / "a.log", process=dead, restarts=3, started_at=time.time())
    sibling = ServiceProcess("callback", 0, {}, tmp_path / "b.log", replica=1, process=dead, started_at=time.time() - 60)
    supervisor = Supervisor(services=[flaky, sibling])
    supervisor.check_once()
    assert started == ["callback#1"]  # restarted at once; dispatch waits its turn
    assert flaky.restarts == 4 and flaky.restart_at > time.time() + 3
    supervisor.check_once()
    assert started == ["callback#1"] and flaky.restarts == 4  # counted once, not yet due
    flaky.restart_at = time.time()
    supervisor.check_once()
    assert started == ["callback#1", "dispatch"]
