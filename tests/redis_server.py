"""A real ``redis-server`` for tests: a free loopback port, a temp dir, always killed.

Use it as a context manager (or call ``close()``), e.g. in a fixture::

    @pytest.fixture
    def redis_server(tmp_path):
        with RedisServer(tmp_path) as server:
            yield server

``stop()`` kills the server (SIGKILL: Redis "goes away") and ``start()`` brings it back on the
same port; ``pause()``/``resume()`` (SIGSTOP/SIGCONT) make it go silent without closing any
socket. ``diagnostics()`` gives the tail of its log (tests/conftest.py shows it on failure).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(
        self,
        tmp_dir: Path,
        *,
        password: str | None = None,
        port: int | None = None,
        start: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.password = password
        self.dir = Path(tmp_dir) / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError(
                f"redis-server not found ({REDIS_SERVER}); apt-get install redis-server"
            )
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}\n{self.diagnostics()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server at once (no goodbye to its clients) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGCONT)  # a paused process must still die
            process.kill()
        except ProcessLookupError:
            pass
        process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server: its sockets stay open but nothing is answered."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A last resort: a test that forgot close() must not leave a server behind.
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.kill()

    # -- inspection ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def diagnostics(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-30:])

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # "+PONG", or "-NOAUTH ..." from a server with a password: either way it is up.
        return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
