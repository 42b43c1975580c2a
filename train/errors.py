"""Named failures of training, evaluation and training jobs.

Every class carries `user_facing = True`: the CLI prints the message as one line and exits 2,
the UI shows it as a warning.
"""

from __future__ import annotations


class TrainError(Exception):
    """Base class for training failures a user can act on."""

    user_facing = True


class DataError(TrainError):
    """An export folder that cannot be trained or evaluated on."""


class OptionsError(TrainError):
    """Training options that contradict each other or the base model."""


class NoCheckpoint(TrainError):
    """`--resume` with nothing to resume from."""


class JobError(TrainError):
    """A training job that cannot be started, cancelled or resumed."""


class JobAlreadyRunning(JobError):
    def __init__(self, job_id: int, status: str):
        super().__init__(f"training job {job_id} is {status}: only one training job runs at a time; "
                         "wait for it to finish or cancel it first")
        self.job_id = job_id
