"""Background training jobs that the app starts, polls, stops, resumes and saves.

A `TrainingJob` runs `runs.prepare_run`, `trainer.train` and `runs.finish_run` in a worker
thread and records every progress event under a lock. The app never touches the model while a
job runs: it reads `snapshot()`, a copy that is safe to draw from any thread. Nothing in this
module imports Streamlit.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paintae import checkpoints, config
from paintae.data import DataNotFoundError
from paintae.runs import PreparedRun, RunSettings, finish_run, prepare_run
from paintae.trainer import EpochEvent, StepEvent, TrainingError, TrainResult, train

logger = logging.getLogger(__name__)

QUEUED, RUNNING, STOPPING = "queued", "running", "stopping"
FINISHED, FAILED, STOPPED = "finished", "failed", "stopped"
ACTIVE_STATUSES = (QUEUED, RUNNING, STOPPING)
DONE_STATUSES = (FINISHED, FAILED, STOPPED)

# Phases shown while the status is "running".
PREPARING, TRAINING, EVALUATING = "preparing data", "training", "evaluating on the test split"

# Jobs allowed to run at once in one process. Each job trains on all CPU cores, so a third job
# slows every job down without finishing any sooner.
DEFAULT_MAX_RUNNING = 2

# Errors a job reports as a failed status with their message, without a traceback in the log.
_EXPECTED_ERRORS = (ValueError, DataNotFoundError, FileNotFoundError, NotADirectoryError)

_job_ids = itertools.count(1)


class JobLimitError(RuntimeError):
    """Too many jobs are running in this process. The message gives the count and the remedy."""


@dataclass
class JobSnapshot:
    """A consistent copy of a job's progress, safe to read while the job keeps training.

    `step_losses` are (global step, loss) pairs; `epochs` are dicts with keys epoch, train_loss
    and val_loss (None without a validation split). `samples` maps "clean", "input" and "output"
    to (K, C, H, W) CPU tensors in [0, 1] from the latest finished epoch; treat them as read-only.
    """

    job_id: int
    label: str
    status: str
    phase: str
    family: str
    settings: RunSettings
    step_losses: list[tuple[int, float]]
    epochs: list[dict]
    total_epochs: int
    images_per_second: float | None
    seconds_left: float | None
    elapsed: float
    samples: dict[str, torch.Tensor]
    error: str | None
    test_metrics: dict[str, float]
    metadata: dict | None
    saved_path: Path | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def can_resume(self) -> bool:
        """Whether a model exists to continue: the job ended and got past data preparation."""
        return self.status in DONE_STATUSES and bool(self.epochs)

    @property
    def can_save(self) -> bool:
        return self.status in (FINISHED, STOPPED) and self.metadata is not None


@dataclass
class _State:
    status: str = QUEUED
    phase: str = PREPARING
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    total_epochs: int = 0
    images_per_second: float | None = None
    seconds_left: float | None = None
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    error: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict | None = None
    saved_path: Path | None = None
    started: float = 0.0
    finished: float | None = None


class TrainingJob:
    """One training run in a background thread.

    Create it with the user's settings and call `start()` (or `JobRegistry.submit`). `stop()`
    makes the trainer end after the current step. The job then evaluates the model and ends as
    "stopped". `resume(epochs)` trains the same model, optimizer and history for more epochs.
    The settings object is copied, so the caller may keep changing its own.
    """

    def __init__(self, settings: RunSettings, label: str | None = None) -> None:
        self.job_id = next(_job_ids)
        self.settings = copy.deepcopy(settings)
        self.label = label or _describe(self.settings, self.job_id)
        self._lock = threading.Lock()
        self._state = _State(total_epochs=self.settings.train.epochs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared: PreparedRun | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._result: TrainResult | None = None
        self._step_offset = 0  # steps of earlier runs, so resumed curves continue
        self._steps_per_epoch = 1

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread; it prepares the data, so this returns at once."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"Job {self.job_id} was already started.")
            self._state.status = RUNNING
            self._state.phase = PREPARING
            self._state.started = time.perf_counter()
            self._thread = threading.Thread(
                target=self._run, args=(None,), name=f"paintae-job-{self.job_id}", daemon=True
            )
        self._thread.start()

    def stop(self) -> None:
        """Ask the job to stop after the current training step. Does nothing once it ended."""
        with self._lock:
            if self._state.status not in ACTIVE_STATUSES:
                return
            self._state.status = STOPPING
        self._stop.set()

    def resume(self, epochs: int, lr: float | None = None) -> None:
        """Train the same model `epochs` more epochs, continuing its optimizer and history.

        `lr` replaces the learning rate (for example after a failure on an invalid loss).
        Raises RuntimeError when the job is still active or has no trained model to continue.
        """
        with self._lock:
            if self._state.status in ACTIVE_STATUSES:
                raise RuntimeError(f"Job {self.job_id} is still {self._state.status}.")
            if self._prepared is None or self._result is None:
                raise RuntimeError(
                    f"Job {self.job_id} has no trained model to resume; start a new job instead."
                )
            if not 1 <= epochs <= 10_000:
                raise ValueError(f"Epochs to add must be 1 to 10000, got {epochs}.")
            train_config = self._prepared.settings.train
            train_config.epochs = int(epochs)
            if lr is not None:
                train_config.lr = float(lr)
            # A new run starts from the configured rate even if a schedule lowered it before.
            for group in self._optimizer.param_groups:
                group["lr"] = train_config.lr
            self._stop.clear()
            state = self._state
            state.status, state.phase, state.error = RUNNING, TRAINING, None
            state.total_epochs = len(self._result.history["epoch"]) + epochs
            state.seconds_left = None
            state.finished = None
            state.saved_path = None
            self._step_offset = self._result.steps
            self._thread = threading.Thread(
                target=self._run, args=(epochs,), name=f"paintae-job-{self.job_id}", daemon=True
            )
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; return True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def save(self, name: str, *, overwrite: bool = False) -> Path:
        """Save the trained model and its metadata to the user checkpoint folder; return the path.

        Raises ValueError for an invalid name or a name used by a shipped checkpoint,
        FileExistsError when the checkpoint exists and `overwrite` is False, and RuntimeError
        when the job has nothing to save (still running, failed or never trained).
        """
        cleaned = checkpoints.validate_name(name)
        shipped = config.repo_checkpoint_dir() / f"{cleaned}{checkpoints.SUFFIX}"
        if shipped.exists():
            raise ValueError(
                f"{cleaned!r} is the name of a shipped checkpoint; choose another name."
            )
        with self._lock:
            if self._state.status not in (FINISHED, STOPPED) or self._state.metadata is None:
                raise RuntimeError(
                    f"Job {self.job_id} is {self._state.status}: only a finished or stopped job "
                    "can be saved."
                )
            metadata = copy.deepcopy(self._state.metadata)
            prepared, optimizer = self._prepared, self._optimizer
            path = checkpoints.checkpoint_path(cleaned)
            # The lock keeps a resume from changing the weights while they are written.
            saved = checkpoints.save_checkpoint(
                path, prepared.model, metadata, optimizer=optimizer, overwrite=overwrite
            )
            self._state.saved_path = saved
        logger.info("Job %d saved as %s", self.job_id, saved)
        return saved

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> JobSnapshot:
        """Return a copy of the current progress (see JobSnapshot)."""
        with self._lock:
            state = self._state
            end = state.finished if state.finished is not None else time.perf_counter()
            return JobSnapshot(
                job_id=self.job_id,
                label=self.label,
                status=state.status,
                phase=state.phase,
                family=self.settings.family,
                settings=self.settings,
                step_losses=list(state.step_losses),
                epochs=[dict(epoch) for epoch in state.epochs],
                total_epochs=state.total_epochs,
                images_per_second=state.images_per_second,
                seconds_left=state.seconds_left,
                elapsed=end - state.started if state.started else 0.0,
                samples=dict(state.samples),
                error=state.error,
                test_metrics=dict(state.test_metrics),
                metadata=state.metadata,
                saved_path=state.saved_path,
            )

    @property
    def status(self) -> str:
        with self._lock:
            return self._state.status

    @property
    def model(self) -> torch.nn.Module | None:
        """The model being trained, or None before data preparation finished."""
        return None if self._prepared is None else self._prepared.model

    # -- worker --------------------------------------------------------------------------------

    def _run(self, resume_epochs: int | None) -> None:
        try:
            if resume_epochs is None:
                self._prepare()
            if self._stop.is_set():
                self._end(STOPPED)
                return
            self._set(phase=TRAINING)
            prepared = self._prepared
            train(
                prepared.model,
                prepared.train_data,
                prepared.val_data,
                prepared.settings.train,
                on_event=self._on_event,
                stop=self._stop,
                optimizer=self._optimizer,
                result=self._result,
            )
            self._set(phase=EVALUATING)
            metadata = finish_run(prepared, self._result)
            with self._lock:
                self._state.metadata = metadata
                self._state.test_metrics = dict(metadata.get("test_metrics", {}))
            self._end(STOPPED if self._stop.is_set() else FINISHED)
        except TrainingError as error:
            logger.warning("Job %d failed: %s", self.job_id, error)
            self._end(FAILED, str(error))
        except _EXPECTED_ERRORS as error:
            logger.warning("Job %d failed: %s", self.job_id, error)
            self._end(FAILED, str(error))
        except Exception as error:  # noqa: BLE001 - a worker thread has no caller to raise to
            logger.exception("Job %d failed unexpectedly", self.job_id)
            self._end(FAILED, f"{type(error).__name__}: {error}")

    def _prepare(self) -> None:
        prepared = prepare_run(copy.deepcopy(self.settings))
        self._prepared = prepared
        learning_rate = prepared.settings.train.lr
        self._optimizer = torch.optim.Adam(prepared.model.parameters(), lr=learning_rate)
        self._result = TrainResult()
        logger.info("Job %d prepared: %s", self.job_id, prepared.description.get("dataset"))

    def _on_event(self, event: StepEvent | EpochEvent) -> None:
        with self._lock:
            state = self._state
            if isinstance(event, StepEvent):
                self._steps_per_epoch = event.total_steps // self._prepared.settings.train.epochs
                state.step_losses.append((self._step_offset + event.step, event.loss))
                state.images_per_second = event.images_per_second
                state.seconds_left = event.seconds_left
            else:
                # The step at which the epoch ended, for plotting epoch losses on the step axis.
                run_epochs = self._prepared.settings.train.epochs
                done = event.epoch - (event.epochs - run_epochs)
                last = state.step_losses[-1][0] if state.step_losses else 0
                end_step = self._step_offset + done * self._steps_per_epoch
                state.epochs.append(
                    {
                        "epoch": event.epoch,
                        "step": min(end_step, last) if self._stop.is_set() else end_step,
                        "train_loss": event.train_loss,
                        "val_loss": event.val_loss,
                    }
                )
                state.seconds_left = event.seconds_left
                state.samples = event.samples

    def _set(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _end(self, status: str, error: str | None = None) -> None:
        with self._lock:
            self._state.status = status
            self._state.error = error
            self._state.seconds_left = 0.0 if status == FINISHED else None
            self._state.finished = time.perf_counter()
        logger.info("Job %d ended: %s", self.job_id, status)


class JobRegistry:
    """The jobs of one process, with a limit on how many run at the same time.

    Sessions keep their own jobs in the Streamlit session state. The registry only counts running
    jobs across all sessions, so a crowd of users cannot start unlimited threads.
    """

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING) -> None:
        self.max_running = max_running
        self._lock = threading.Lock()
        self._jobs: list[TrainingJob] = []

    def running(self) -> list[TrainingJob]:
        """Return the jobs still queued, running or stopping."""
        with self._lock:
            return [job for job in self._jobs if job.status in ACTIVE_STATUSES]

    def submit(self, settings: RunSettings, label: str | None = None) -> TrainingJob:
        """Create and start a job; raise JobLimitError when `max_running` jobs already run."""
        job = TrainingJob(settings, label)
        self._admit(job)
        job.start()
        return job

    def resume(self, job: TrainingJob, epochs: int, lr: float | None = None) -> None:
        """Resume `job` under the same limit as `submit`."""
        self._admit(job)
        try:
            job.resume(epochs, lr)
        except Exception:
            with self._lock:
                if job in self._jobs:
                    self._jobs.remove(job)
            raise

    def _admit(self, job: TrainingJob) -> None:
        with self._lock:
            # Drop ended jobs, but keep `job`: a resumed job is still "finished" at this point.
            self._jobs = [j for j in self._jobs if j.status in ACTIVE_STATUSES and j is not job]
            if len(self._jobs) >= self.max_running:
                raise JobLimitError(
                    f"{len(self._jobs)} training jobs are already running on this server (the "
                    f"limit is {self.max_running}). Stop one or wait until one finishes."
                )
            self._jobs.append(job)


def _describe(settings: RunSettings, job_id: int) -> str:
    if settings.dataset == "fashion-mnist":
        source = "Fashion-MNIST"
    elif settings.uploaded:
        source = f"{len(settings.uploaded)} uploaded images"
    else:
        source = Path(settings.painting_folder or "?").name
    return f"#{job_id} {settings.model} on {source}"


# The registry shared by every session of this process.
REGISTRY = JobRegistry()
