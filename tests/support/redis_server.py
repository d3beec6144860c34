"""A real redis-server (Debian package) on a free port, no persistence."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.procs import ServerProcess, free_port


@dataclass
class RedisServer:
    port: int
    process: ServerProcess
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Start again on the same port (for outage and recovery tests)."""
        self.process = _spawn(self.workdir, self.port)


def _spawn(workdir: Path, port: int) -> ServerProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: `apt-get install redis-server` (.ci/run does it)")
    proc = ServerProcess(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        workdir / "redis.log",
    )
    client = redis.Redis(port=port, socket_timeout=1)
    proc.wait_until(lambda: client.ping(), 20, "answering PING")
    return proc


def start_redis(workdir: Path) -> RedisServer:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return RedisServer(port, _spawn(workdir, port), workdir)
