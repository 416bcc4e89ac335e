"""A test server script run in a child process, so a test can freeze it (SIGSTOP),
thaw it (SIGCONT) or kill it like a real server.

The script takes the port to listen on (0: any free one) as its argument and prints
the port it listens on, one line, once it is ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Self

__all__ = ["ChildServer"]


class ChildServer:
    """``script`` in a child process; ``start()`` it again after ``stop()`` to get the
    same port back."""

    def __init__(self, script: Path, what: str = "server") -> None:
        self.script = script
        self.what = what
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stdout: IO[str] | None = None

    def start(self) -> Self:
        proc = subprocess.Popen(
            [sys.executable, str(self.script), str(self.port)],
            stdout=subprocess.PIPE, text=True,
        )
        self._proc, self._stdout = proc, proc.stdout
        if self._stdout is None:  # pragma: no cover - stdout=PIPE gives one
            raise RuntimeError("no stdout from the child")
        line = self._stdout.readline()  # the port, once it listens; "" if it died
        if not line:
            self.stop()
            raise RuntimeError(f"the {self.what} process exited before listening")
        self.port = int(line)
        return self

    def freeze(self) -> None:
        os.kill(self._process().pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self._process().pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()  # SIGKILL ends a stopped process too
            self._proc.wait(timeout=30)
            self._proc = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def _process(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError(f"the {self.what} process is not running")
        return self._proc
