"""A1111's Extras routes: `POST /sdapi/v1/extra-single-image`, `POST /sdapi/v1/extra-batch-images`, and the lists
`GET /sdapi/v1/realesrgan-models` and `GET /sdapi/v1/face-restorers` (empty: no face restorer ships).

Request and response shapes are A1111's (`ExtrasSingleImageRequest`, `ExtrasBatchImagesRequest`, ...). The upscale
runs in the job queue (`App.submit_extras`), so it waits its turn beside generations and `POST interrupt` stops
it. As in A1111 the API returns pictures without saving them. Face restoration (`gfpgan_visibility`,
`codeformer_visibility` above 0) is refused with a 400: there is no face restorer here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modules.api.auth import Authenticator, client_group
from modules.api.codec import decode_image, encode_png
from modules.errors import UserError
from modules.extras import ExtrasRequest, ExtrasResult
from modules.upscalers.registry import ModelUpscaler

if TYPE_CHECKING:
    from modules.app import App


class ExtrasBaseRequest(BaseModel):
    """A1111's `ExtrasBaseRequest` fields and defaults."""

    model_config = ConfigDict(extra="allow")

    resize_mode: Literal[0, 1] = Field(default=0, description="0 = scale by upscaling_resize, 1 = scale to w x h.")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1, description="Face restoration is not available: 0.")
    codeformer_visibility: float = Field(default=0, ge=0, le=1, description="Face restoration is not available: 0.")
    codeformer_weight: float = Field(default=0, ge=0, le=1)
    upscaling_resize: float = Field(default=2, ge=1, le=8)
    upscaling_resize_w: int = Field(default=512, ge=1)
    upscaling_resize_h: int = Field(default=512, ge=1)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field(default="", description="Base64 image (a data: URL prefix is accepted).")


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: Optional[str] = None


class FileData(BaseModel):
    data: str = Field(description="Base64 image.")
    name: str = Field(description="File name.")


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(description="Images to upscale.")  # noqa: N815 - A1111's field name


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class RealesrganItem(BaseModel):
    name: str
    path: Optional[str] = None
    scale: Optional[int] = None


class NoFaceRestorer(UserError):
    """A request for face restoration, which this program does not have."""


def _request(body: ExtrasBaseRequest, images: list[Any], names: list[str]) -> ExtrasRequest:
    if body.gfpgan_visibility > 0 or body.codeformer_visibility > 0:
        raise NoFaceRestorer("Face restoration (GFPGAN, CodeFormer) is not available: send gfpgan_visibility and "
                             "codeformer_visibility of 0.")
    return ExtrasRequest(
        images=tuple(images), names=tuple(names), resize_mode=body.resize_mode,
        upscaling_resize=body.upscaling_resize, upscaling_resize_w=body.upscaling_resize_w,
        upscaling_resize_h=body.upscaling_resize_h, upscaling_crop=body.upscaling_crop,
        upscaler_1=body.upscaler_1, upscaler_2=body.upscaler_2,
        extras_upscaler_2_visibility=body.extras_upscaler_2_visibility, save=False)


def _encoded(result: ExtrasResult) -> list[str]:
    return [encode_png(image, image.info.get("parameters"), {"extras": text})
            for image, text in zip(result.images, result.infotexts, strict=True)]


def build_extras_router(app: "App", auth: Authenticator) -> APIRouter:
    """The Extras routes under /sdapi/v1, each behind `auth`."""
    from modules.api.sdapi import wait_until_finished

    router = APIRouter(prefix="/sdapi/v1", tags=["extras"], dependencies=[Depends(auth)])

    async def run(request: ExtrasRequest, user: Optional[str], http: Request) -> ExtrasResult:
        job = app.submit_extras(request, owner=user, group=client_group(user, http))
        await wait_until_finished(app.jobs, job)
        result = job.outcome(timeout=0)  # re-raises the job's error
        assert isinstance(result, ExtrasResult)
        return result

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(body: ExtrasSingleImageRequest, http: Request,
                                 user: Optional[str] = Depends(auth)) -> ExtrasSingleImageResponse:
        """Upscale one image with the Extras tab's settings."""
        image = await run_in_threadpool(decode_image, body.image, "image")
        result = await run(_request(body, [image], []), user, http)
        encoded = await run_in_threadpool(_encoded, result)
        return ExtrasSingleImageResponse(html_info=result.html_info(),
                                         image=encoded[0] if encoded else None)

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(body: ExtrasBatchImagesRequest, http: Request,
                                 user: Optional[str] = Depends(auth)) -> ExtrasBatchImagesResponse:
        """Upscale several images with the same settings."""
        images = [await run_in_threadpool(decode_image, item.data, f"imageList[{index}].data")
                  for index, item in enumerate(body.imageList)]
        result = await run(_request(body, images, [item.name for item in body.imageList]), user, http)
        encoded = await run_in_threadpool(_encoded, result)
        return ExtrasBatchImagesResponse(html_info=result.html_info(), images=encoded)

    @router.get("/realesrgan-models", response_model=list[RealesrganItem])
    def realesrgan_models() -> list[dict[str, Any]]:
        """The upscaler model files of the RealESRGAN folder."""
        return [{"name": model.name, "path": str(model.path), "scale": model.scale}
                for model in app.models.upscalers.model_upscalers()
                if isinstance(model, ModelUpscaler) and model.folder == "RealESRGAN"]

    @router.get("/face-restorers")
    def face_restorers() -> list[dict[str, Any]]:
        """Face restorers: none ship with this program."""
        return []

    return router
