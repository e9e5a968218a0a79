"""Errors that carry a message meant for the user.

Everything the UI or API shows as "bad input" is a `UserError`: adapters catch this one base class and turn it
into a readable message (Gradio `gr.Error`, HTTP 4xx). Any other exception is a real fault (HTTP 5xx).
"""

from __future__ import annotations


class UserError(Exception):
    """Base class: the message is complete and safe to show to the user as is."""

    http_status = 400


class InvalidRequest(UserError):
    """A request field is out of range or inconsistent (steps <= 0, bad size, missing init image, ...)."""

    http_status = 422


class Forbidden(UserError):
    """A request the server's launch flags do not allow (an option that names a folder, changed over the API)."""

    http_status = 403


class UnknownSampler(UserError):
    """A sampler or schedule name that the registry does not know or diffusers cannot honour."""


class ModelNotFound(UserError):
    """A checkpoint/VAE name that matches nothing on disk."""

    http_status = 404


class UnsupportedModel(UserError):
    """A file that is not a checkpoint of a supported family (the message names the file and what was found)."""


class UnsafeCheckpoint(UserError):
    """A pickle (.ckpt) that would need to execute code to load; it is refused, never executed."""


class CorruptFile(UserError):
    """A model or image file that cannot be read."""


class OutOfMemory(UserError):
    """The request is too large for the memory of the device it runs on."""

    http_status = 507


class JobTooLarge(UserError):
    """A job whose estimated working memory exceeds what the device has (`modules.core.memory`)."""

    http_status = 413


class Interrupted(Exception):
    """The user stopped a step that has no partial result (an upscale between tiles); callers keep what finished
    before it. Not a `UserError`: nothing was wrong with the request."""
