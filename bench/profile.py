"""Sampling profile of every service under load: where the time goes.

Starts the embedded stack, drives registrations with `--concurrency` in flight for
`--seconds`, and samples each service process with py-spy (`pip install py-spy`) at the
same time. Prints, per service, the share of samples whose stack passes through each
library (SQLAlchemy, asyncpg, nats, faststream, pydantic, FastAPI/Starlette, EstateDesk's
own code) and the top frames by own time. Collapsed stacks stay in `--out` for flame graphs.

    python bench/profile.py --seconds 20 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import Pipeline  # noqa: E402
from estatedesk.stack import Stack  # noqa: E402

# py-spy names a frame "function (package/module.py:line)".
LIBRARIES = {
    "sqlalchemy": "(sqlalchemy/", "asyncpg": "(asyncpg/", "nats": "(nats/", "faststream": "(faststream/",
    "pydantic": "(pydantic", "fastapi/starlette": ("(fastapi/", "(starlette/"),
    "estatedesk": ("(services/", "(shared/"),
}
# A sample whose innermost frame is the event loop's own run: the loop waiting (idle).
IDLE_LEAF = "Runner.run ("


def summarise(collapsed: Path, top: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """(library → share of busy samples passing through it, [(frame, share of own
    time)]); idle samples are counted apart, as a multiple of the busy ones."""
    through: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAF) or not frames[-1].strip():
            through["(idle: the event loop waiting)"] += n
            continue
        total += n
        # What is above the event loop (the runner, uvicorn's start-up) is every task's root.
        loop_at = max((i for i, frame in enumerate(frames) if frame.startswith(IDLE_LEAF)), default=-1)
        frames = frames[loop_at + 1:] or frames
        for name, needles in LIBRARIES.items():
            needles = (needles,) if isinstance(needles, str) else needles
            if any(needle in frame for frame in frames for needle in needles):
                through[name] += n
        own[frames[-1]] += n
    if not total:
        return {}, []
    return ({k: v / total for k, v in through.most_common()},
            [(frame, n / total) for frame, n in own.most_common(top)])


async def drive(stack: Stack, seconds: float, concurrency: int) -> int:
    done = 0
    async with Pipeline(stack, concurrency) as p:
        deadline = time.monotonic() + seconds

        async def worker():
            nonlocal done
            while time.monotonic() < deadline:
                ticket, _ = await p.post("profile")
                done += ticket is not None

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/profiles"))
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edb-", dir="/tmp") as tmp:
        stack = Stack(data_dir=Path(tmp)).start()
        try:
            samplers = {
                s.name: subprocess.Popen(
                    [spy, "record", "--pid", str(s.process.pid), "--duration", str(int(args.seconds)),
                     "--rate", "50", "--format", "raw", "--output", str(args.out / f"{s.name}.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for s in stack.service_processes
            }
            registered = asyncio.run(drive(stack, args.seconds, args.concurrency))
            for sampler in samplers.values():
                sampler.wait(60)
        finally:
            stack.stop()
    print(f"{registered} registrations in {args.seconds:g} s with {args.concurrency} in flight")
    for name in samplers:
        through, frames = summarise(args.out / f"{name}.txt", args.top)
        print(f"\n{name}: " + ", ".join(f"{lib} {100 * share:.0f} %" for lib, share in through.items()))
        for frame, share in frames:
            print(f"  {100 * share:5.1f} %  {frame[:150]}")


if __name__ == "__main__":
    main()
