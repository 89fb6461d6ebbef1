"""Child processes for the tests that need real ones: workers, writers, a killed process.

Every child a test starts through :class:`Children` is killed when the test
ends, pass or fail. Each child runs this checkout's code (not an installed
copy) and writes its stderr to a file the test can read while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_S = 30
"""How long a child asked to stop may take before the test fails."""

_T = TypeVar("_T")


def eventually(check: Callable[[], _T], what: str, *, timeout_s: float = 60, every_s: float = 0.05) -> _T:
    """Poll ``check`` until it returns something true, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


class Child:
    """One running child process, its stdin, and its stderr and stdout files."""

    def __init__(self, process: subprocess.Popen[str], stdout: Path, stderr: Path) -> None:
        self.process = process
        self.stdout_path = stdout
        self.stderr_path = stderr

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def send(self, line: str) -> None:
        """Write a line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def send_signal(self, number: int) -> None:
        self.process.send_signal(number)

    def wait(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """Its exit code, once it exits (the test fails if it takes longer than ``timeout_s``)."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process {self.pid} did not exit within {timeout_s}s:\n{self.stderr()}") from None

    def stop(self, number: int = signal.SIGTERM) -> int:
        """Send ``number`` and wait for the exit code."""
        self.send_signal(number)
        return self.wait()


class Children:
    """The child processes of one test; :meth:`close` kills those still running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._started: list[Child] = []
        self._files: list[IO[str]] = []

    def start(self, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None) -> Child:
        """Start ``argv`` with this checkout first on the import path and ``env`` over a clean environment."""
        environment = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
        if "DEPOSIT_LEDGER_CHAIN_KEY" in os.environ:  # how the test's store is written, like its URL
            environment["DEPOSIT_LEDGER_CHAIN_KEY"] = os.environ["DEPOSIT_LEDGER_CHAIN_KEY"]
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        environment.update(env or {})
        stdout, stderr = self.folder / f"{name}.out", self.folder / f"{name}.err"
        out, err = stdout.open("w"), stderr.open("w")
        self._files += [out, err]
        process = subprocess.Popen(
            list(argv),
            cwd=self.folder,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            text=True,
        )
        child = Child(process, stdout, stderr)
        self._started.append(child)
        return child

    def ledger(self, *args: str, name: str, env: dict[str, str] | None = None) -> Child:
        """``deposit-ledger ARGS...`` from this checkout."""
        return self.start([sys.executable, "-m", "ledger", *args], name=name, env=env)

    def close(self) -> None:
        for child in self._started:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()
            if child.process.stdin is not None:
                child.process.stdin.close()
        for file in self._files:
            file.close()
