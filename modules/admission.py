"""Admission at submission: a job over the batch caps, or one that cannot fit in the memory the device has in
all, is refused before it is queued, so an API client gets a 4xx at once and the server never starts it (the
estimate: `modules.core.memory`).

What is free changes while other jobs run, so this check compares with the device's *total* memory; the
generation core checks again against what is free when the job starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.errors import UserError
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.models.manager import ModelManager


class SubmitAdmission:
    """`App.admission`: raises JobTooLarge for a request whose estimate exceeds the device's total memory."""

    def __init__(self, models: "ModelManager") -> None:
        self._models = models

    def __call__(self, request: GenerationRequest) -> None:
        from modules.core.memory import admit  # torch: loaded with the first job, not at start-up
        from modules.core.validate import check_counts

        check_counts(request)
        try:
            identity = self._models.resolve_checkpoint(request.checkpoint).identity
        except UserError:
            return  # no such or unreadable checkpoint: the job itself reports it
        plan = self._models.plan
        admit(request, identity, plan.device, plan.dtype, plan.vae_dtype, now=False)
