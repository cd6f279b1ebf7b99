"""A training round as a job of several processes, for the Training panel: `mlic train --round
--nproc N --progress jsonl` started with QProcess, its JSON lines turned into the same signals
the panel gets from an in-process round (`app.jobs.JobSlot` and the trainer's callbacks).

The config travels as a JSON file (`--config`), so the processes train exactly what the form
says. Cancel terminates the launcher, which stops the processes; the last checkpoint is kept and
Resume continues the run (with any number of processes). Quitting the app stops them too.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QProcess, Signal

from engine.errors import UserError
from engine.training.api import EpochReport, TrainConfig


@dataclass
class RunSummary:
    """A finished run as the launcher reported it."""

    model_version: str
    status: str


@dataclass
class ProcessOutcome:
    """What the panel shows of a finished round (the fields of `RoundOutcome` it reads)."""

    runs: list[RunSummary]
    figures: dict[str, Any]
    waiting: str = ""

    @property
    def completed(self) -> bool:
        return bool(self.runs) and all(run.status == "completed" for run in self.runs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessOutcome:
        from engine.review.rounds import RoundFigures

        figures = {version: RoundFigures(**{k: math.nan if v is None else v
                                            for k, v in figure.items()})
                   for version, figure in data.get("figures", {}).items()}
        return cls([RunSummary(**run) for run in data.get("runs", [])], figures,
                   data.get("waiting", ""))


def launch_arguments(store: Any, config_file: Path, processes: int,
                     warm_start: bool) -> list[str]:
    """The arguments of `python` that run the round on `store`'s project."""
    args = ["-m", "engine", "--project", str(store.paths.root)]
    if not str(store.url).startswith("sqlite"):
        args += ["--db-url", str(store.url)]
    args += ["train", "--round", "--config", str(config_file), "--nproc", str(processes),
             "--progress", "jsonl"]
    return args + ([] if warm_start else ["--no-warm-start"])


@dataclass
class _Reading:
    """What has come back from the launcher so far."""

    pending: str = ""
    outcome: ProcessOutcome | None = None
    errors: list[str] = field(default_factory=list)


class ProcessRun(QObject):
    """At most one round of several processes; signals as `JobSlot` and the trainer's callbacks."""

    progress = Signal(int, int)        # done, total
    stage = Signal(str)                # a new stage or phase started reporting steps
    epoch = Signal(object)             # EpochReport
    message = Signal(str)
    finished = Signal(object)          # ProcessOutcome
    failed = Signal(object)            # UserError with the launcher's error line
    cancelled = Signal()
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: QProcess | None = None
        self._reading = _Reading()
        self._stage = ""
        self._cancelling = False
        self._folder: tempfile.TemporaryDirectory | None = None
        app = QCoreApplication.instance()
        if app is not None:            # quitting the app stops the processes, never orphans them
            app.aboutToQuit.connect(self._stop)

    @property
    def busy(self) -> bool:
        return self.process is not None

    def start(self, store: Any, config: TrainConfig, processes: int, warm_start: bool) -> None:
        """Start the round on the open project; UserError when one is running already."""
        if self.busy:
            raise UserError("A training run is already running.")
        self._folder = tempfile.TemporaryDirectory(prefix="mlic-run-")
        config_file = Path(self._folder.name) / "config.json"
        config_file.write_text(json.dumps(config.to_dict()), encoding="utf-8")
        self._reading, self._stage, self._cancelling = _Reading(), "", False
        self.process = QProcess(self)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.readyReadStandardError.connect(self._read_errors)
        self.process.finished.connect(self._ended)
        self.process.start(sys.executable, launch_arguments(store, config_file, processes,
                                                            warm_start))
        self.busy_changed.emit(True)

    def cancel(self) -> None:
        if self.process is not None:
            self._cancelling = True
            self.process.terminate()

    def _stop(self) -> None:
        if self.process is not None:
            self.cancel()
            self.process.waitForFinished(30000)

    def _read_output(self) -> None:
        text = self._reading.pending + bytes(self.process.readAllStandardOutput()).decode(
            "utf-8", "replace")
        *lines, self._reading.pending = text.split("\n")
        for line in lines:
            if line.startswith("{"):
                self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        if "step" in event:
            stage, done, total = event["step"]
            if stage != self._stage:
                self._stage = stage
                self.stage.emit(stage)
            self.progress.emit(int(done), int(total))
        elif "epoch" in event:
            self.epoch.emit(EpochReport(**event["epoch"]))
        elif "message" in event:
            self.message.emit(event["message"])
        elif "outcome" in event:
            self._reading.outcome = ProcessOutcome.from_dict(event["outcome"])

    def _read_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        self._reading.errors += [line for line in text.splitlines()
                                 if line.startswith("mlic: error:")]

    def _ended(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read_output()
        self._read_errors()
        self.process.deleteLater()
        self.process = None
        self._folder.cleanup()
        self.busy_changed.emit(False)
        reading = self._reading
        if self._cancelling:
            self.cancelled.emit()
        elif reading.outcome is not None:
            self.finished.emit(reading.outcome)
        else:
            line = reading.errors[0] if reading.errors else (
                f"mlic: error: the training processes stopped (exit status {code}).")
            self.failed.emit(UserError(line.removeprefix("mlic: error: ")))
