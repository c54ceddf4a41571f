"""Idle cost of a running stack: CPU of every process and NATS messages per second.

With no traffic, a serious service sits still: its consumers wait on the server (a long
pull request), not in a polling loop. Measured over `--seconds` after a settling pause:

- CPU: user + system time of nats-server, the PostgreSQL postmaster and its backends, the
  five services and the gateway, as a percentage of one core;
- NATS messages: the monitoring endpoint's `in_msgs + out_msgs` delta per second (client
  PING/PONG are protocol, not messages; pull requests, their 408 expiries and heartbeats are).

    python bench/idle.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from estatedesk.stack import Stack  # noqa: E402


def _varz(monitor_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as response:
        return json.load(response)


def _processes(stack: Stack) -> dict[str, list[psutil.Process]]:
    groups: dict[str, list[psutil.Process]] = {}
    for service in stack.supervisor.services:
        if service.process and service.process.poll() is None:
            groups[service.name] = [psutil.Process(service.process.pid)]
    if stack.embedded_nats and stack.embedded_nats.process:
        groups["nats-server"] = [psutil.Process(stack.embedded_nats.process.pid)]
    if stack.embedded_postgres:
        pgdata = str(stack.data_dir / "pgdata")
        postmasters = [p for p in psutil.process_iter(["cmdline"]) if pgdata in " ".join(p.info["cmdline"] or ())]
        groups["postgresql"] = [q for p in postmasters for q in [p, *p.children(recursive=True)]]
    return groups


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # a backend that ended in between
            pass
    return total


def measure_idle(stack: Stack, seconds: float = 20.0, settle: float = 5.0) -> dict:
    """{"cpu_percent": {process group: % of one core}, "cpu_percent_total": float,
    "nats_msgs_per_second": float} over `seconds`, after `settle` seconds of quiet."""
    time.sleep(settle)
    groups = _processes(stack)
    monitor = stack.embedded_nats.monitor_port if stack.embedded_nats else None
    before_cpu = {name: _cpu_seconds(procs) for name, procs in groups.items()}
    before = _varz(monitor) if monitor else None
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    after = _varz(monitor) if monitor else None
    cpu = {name: 100 * (_cpu_seconds(procs) - before_cpu[name]) / elapsed for name, procs in groups.items()}
    figures = {"cpu_percent": {k: round(v, 2) for k, v in sorted(cpu.items())},
               "cpu_percent_total": round(sum(cpu.values()), 2)}
    if before and after:
        messages = (after["in_msgs"] + after["out_msgs"]) - (before["in_msgs"] + before["out_msgs"])
        figures["nats_msgs_per_second"] = round(messages / elapsed, 2)
    return figures


def print_idle(figures: dict) -> None:
    print("idle stack (no traffic)")
    print(f"  NATS messages              {figures.get('nats_msgs_per_second', float('nan')):8.1f} msg/s")
    print(f"  CPU, all processes         {figures['cpu_percent_total']:8.1f} % of one core")
    for name, percent in figures["cpu_percent"].items():
        print(f"    {name:<24} {percent:8.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        stack = Stack(data_dir=Path(tmp)).start()
        try:
            figures = measure_idle(stack, args.seconds)
        finally:
            stack.stop()
    print_idle(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
