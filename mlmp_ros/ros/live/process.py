"""The segmentation node as a child process (``mlmp-segment``) with its log in a file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...constants import NODE_NAME


class NodeDiedError(RuntimeError):
    """The node process ended while the session needed it; the message holds its log's end."""



def node_command() -> list[str]:
    """How to start the node: the ``mlmp-segment`` beside this Python, on PATH, or ``-m``."""
    beside = Path(sys.executable).parent / "mlmp-segment"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("mlmp-segment")
    return [found] if found else [sys.executable, "-m", "mlmp_ros.ros"]


def format_parameter(value: Any) -> str:
    """A value as ``-p name:=VALUE`` wants it (YAML; strings quoted so '-1' stays a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eEn") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_parameter(v) for v in value) + "]"
    raise TypeError(f"cannot pass {type(value).__name__} as a ROS parameter")


class NodeProcess:
    """``mlmp-segment`` as a child process; stdout and stderr go to a log file.

    ``parameters`` become ``-p name:=value`` after the parameter file; ``remaps`` are
    ``{"image": "/camera/image_raw"}``; ``name`` and ``namespace`` remap the node's own.
    """

    def __init__(
        self,
        params_file: str | Path | None = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
        remaps: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        command: Sequence[str] | None = None,
    ):
        self.params_file = Path(params_file) if params_file else None
        self.parameters = dict(parameters or {})
        self.name = name or NODE_NAME
        self.namespace = "/" + (namespace or "").strip("/")
        self.remaps = dict(remaps or {})
        self.env = dict(env or {})
        self.command = list(command) if command else node_command()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def argv(self) -> list[str]:
        args = [*self.command, "--ros-args"]
        if self.params_file:
            args += ["--params-file", str(self.params_file)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={format_parameter(value)}"]
        if self.name != NODE_NAME:
            args += ["-r", f"__node:={self.name}"]
        if self.namespace != "/":
            args += ["-r", f"__ns:={self.namespace}"]
        for src, dst in self.remaps.items():
            args += ["-r", f"{src}:={dst}"]
        return args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RCUTILS_LOGGING_BUFFERED_STREAM="0",  # log lines reach the file as they happen
            RCUTILS_COLORIZED_OUTPUT="0",
            PYTHONUNBUFFERED="1",
            PYTHONFAULTHANDLER="1",  # a crash in native code (DDS, torch) leaves Python's stacks in the log
        )
        env.update(self.env)
        return env

    def start(self) -> NodeProcess:
        if self.log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mlmp_node_")
            self.log_path = Path(self._tmp.name) / "node.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.environment(),
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def check(self) -> None:
        """Raise :class:`NodeDiedError` if the process has ended."""
        if self.process is not None and self.process.poll() is not None:
            raise NodeDiedError(
                f"the node exited with code {self.process.returncode}; its output ends with:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (a clean ROS shutdown), then SIGTERM, then SIGKILL; returns the exit code."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return proc.returncode if proc is not None else None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
