"""A1111's `POST /sdapi/v1/interrogate`: a caption for a picture (`modules.interrogate`).

Body `{"image": base64, "model": "clip"}`, answer `{"caption": "..."}`, as A1111. "clip" is a BLIP caption from the
captioning model in `models/BLIP` (no CLIP ranking of artists and flavours); "deepdanbooru" and other names are a 404,
as an unknown model is in A1111; no captioning model is a 404 that names the folder to put one in. The caption runs
in the job queue, beside generations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modules.api.auth import Authenticator, client_group
from modules.api.codec import decode_image

if TYPE_CHECKING:
    from modules.app import App


class InterrogateRequest(BaseModel):
    """A1111's `InterrogateRequest`."""

    image: str = Field(default="", description="Image to caption, base64 (a data: URL prefix is accepted).")
    model: str = Field(default="clip", description='"clip" (a BLIP caption); "deepdanbooru" is not available.')


class InterrogateResponse(BaseModel):
    caption: str = Field(description="The generated caption for the image.")


def build_interrogate_router(app: "App", auth: Authenticator) -> APIRouter:
    """`POST /sdapi/v1/interrogate` behind `auth`."""
    from modules.api.sdapi import wait_until_finished

    router = APIRouter(prefix="/sdapi/v1", tags=["interrogate"], dependencies=[Depends(auth)])

    @router.post("/interrogate", response_model=InterrogateResponse)
    async def interrogate(body: InterrogateRequest, http: Request,
                          user: Optional[str] = Depends(auth)) -> InterrogateResponse:
        """Caption a picture with the captioning model in models/BLIP."""
        image = await run_in_threadpool(decode_image, body.image, "image")
        job = app.submit_interrogate(image, body.model, owner=user, group=client_group(user, http))
        await wait_until_finished(app.jobs, job)
        caption = job.outcome(timeout=0)  # re-raises the job's error (no model: 404)
        return InterrogateResponse(caption=str(caption))

    return router
