"""`workbench serve` as a child process (the app's serve key, the tests, the benchmark): start it, read the
URL it announces, stop it with SIGTERM. Importing this module loads no torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class ServeProcess:
    """Start `workbench serve MODELS --port 0 --json`; .url once it listens; its stderr goes to `log_path`."""

    def __init__(self, home: str | Path, models: list[str], *extra: str, log_path: str | Path | None = None,
                 env: dict | None = None):
        home = Path(home)
        self.log_path = Path(log_path) if log_path else home / "jobs" / f"serve-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "--home", str(home), "serve", *models, "--port", "0", "--json",
             *extra], stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True,
            env=env or os.environ.copy())
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            lines = self.log().strip().splitlines()
            raise RuntimeError(lines[-1] if lines else "the server did not start")
        self.url = json.loads(line)["url"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server and wait for it (killed after `timeout` s); returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()
