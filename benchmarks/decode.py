"""How evaluation images become pixels: the ``decode`` protocol knob and its ``tensor`` path.

``pil`` (the default) is clip_benchmark's: ``Image.open(f).convert("RGB")`` and the encoder's eval transform on the
PIL image. ``tensor`` is an opt-in, recorded protocol: JPEGs are decoded by ``torchvision.io.decode_jpeg`` on the
encoder's device (nvJPEG on CUDA, libjpeg-turbo on CPU) and the eval transform runs on uint8 tensors (torch's
antialiased resize instead of PIL's), so its inputs differ from clip_benchmark's by 1-2 levels in a fraction of a
percent of the values; any other file, or a JPEG that torchvision does not take, is decoded by PIL and then
transformed the same way. :func:`pixel_difference` is the check that libjpeg-turbo through torchvision gives PIL's
pixels (it does, on every JPEG kind tests/test_decode.py writes).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.functional import _compute_resized_output_size  # Resize's own size rule

from benchmarks.readers.images import BadImage, ImageRef, decode_rgb
from silc.errors import UserError

# torchvision 0.29 announces the move of its decoders to TorchCodec on every process's first decode.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_DEVICE_MODES = ("RGB", "L")  # JPEG colour modes handed to the device decoder; CMYK is decoded on the CPU
_RGB_STEPS = ("MaybeConvertMode", "_convert_to_rgb")  # PIL mode conversion: the decoders give RGB already
_TO_TENSOR_STEPS = ("ToTensor", "MaybeToTensor")
_RESAMPLERS = ("bilinear", "bicubic")  # interpolations that F.interpolate antialiases as PIL does

# What ImageDataset yields for this path: (pixels or encoded bytes, index, why the image does not decode)
Item = tuple[torch.Tensor | None, int, str | None]


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts as a JPEG stream does (SOI and a marker)."""
    return data[:3] == _JPEG_MAGIC


def decode_jpeg_rgb(data: bytes, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torchvision.io.decode_jpeg`` of ``data`` as RGB, ``[3, H, W]`` uint8 on ``device`` (raises RuntimeError
    on a stream it cannot decode)."""
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


@dataclass(frozen=True)
class PixelDifference:
    """PIL's RGB pixels against torchvision's ``decode_jpeg`` of the same bytes: the largest absolute
    difference and the fraction of values that differ (both 0 when identical); ``None`` when the shapes differ."""

    max_abs: int | None
    differing: float | None

    @property
    def identical(self) -> bool:
        return self.max_abs == 0


def pixel_difference(data: bytes) -> PixelDifference:
    """How ``decode_jpeg`` (CPU, libjpeg-turbo) differs from ``Image.open(f).convert("RGB")`` on the JPEG ``data``."""
    with Image.open(io.BytesIO(data)) as im:
        pil = np.asarray(im.convert("RGB"), dtype=np.int16)
    ours = decode_jpeg_rgb(data).permute(1, 2, 0).numpy().astype(np.int16)
    if pil.shape != ours.shape:
        return PixelDifference(None, None)
    diff = np.abs(pil - ours)
    return PixelDifference(int(diff.max()), float((diff > 0).mean()))


class TensorTransform:
    """The encoder's eval transform (a torchvision ``Compose`` of PIL steps) run on uint8 ``[3, H, W]`` tensors:
    the steps before ``ToTensor`` (resize, crop) per image, then ``/255`` and the rest (normalize) on the batch."""

    def __init__(self, preprocess: Callable):
        steps = list(getattr(preprocess, "transforms", [preprocess]))
        names = [_step_name(s) for s in steps]
        if sum(n in _TO_TENSOR_STEPS for n in names) != 1:
            raise UserError(
                f"decode: tensor needs an eval transform with one ToTensor step; the encoder's is {preprocess!r}"
            )
        cut = next(i for i, n in enumerate(names) if n in _TO_TENSOR_STEPS)
        self.per_image = [s for s, n in zip(steps[:cut], names[:cut], strict=True) if n not in _RGB_STEPS]
        self.per_batch = steps[cut + 1 :]
        for step in self.per_image:
            if type(step) is T.Resize:
                if step.interpolation.value not in _RESAMPLERS or step.antialias is False:
                    raise UserError(_unsupported(step, "antialiased bilinear or bicubic Resize"))
            elif type(step) is not T.CenterCrop:
                raise UserError(_unsupported(step, "Resize, CenterCrop"))
        for step in self.per_batch:
            if type(step) is not T.Normalize:
                raise UserError(_unsupported(step, "Normalize after ToTensor"))
        for step, name in zip(steps[:cut], names[:cut], strict=True):
            if name == "MaybeConvertMode" and step.mode != "RGB":
                raise UserError(_unsupported(step, "conversion to RGB"))

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        """One decoded ``[3, H, W]`` uint8 image resized and cropped (uint8, as PIL's steps give)."""
        for step in self.per_image:
            pixels = resize_like_pil(pixels, step) if type(step) is T.Resize else step(pixels)
        return pixels

    def batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` uint8 -> float32 ``/255`` (as ``ToTensor``), then normalized."""
        x = pixels.float().div_(255)
        for step in self.per_batch:
            x = step(x)
        return x


def resize_like_pil(pixels: torch.Tensor, step: T.Resize, uint8_kernel: bool | None = None) -> torch.Tensor:
    """``step`` (an antialiased bilinear/bicubic ``Resize``) on uint8 ``[3, H, W]`` pixels, within one level of
    PIL's: with ``uint8_kernel`` (default: on the CPU, which has it) torch's uint8 kernel, a port of Pillow-SIMD's;
    else PIL's two passes (width, then height) in float, rounded to uint8 after each as PIL does."""
    height, width = pixels.shape[-2:]
    size = [step.size] if isinstance(step.size, int) else list(step.size)
    out = _compute_resized_output_size((height, width), size, step.max_size)
    mode = step.interpolation.value
    x = pixels.unsqueeze(0)
    if pixels.device.type == "cpu" if uint8_kernel is None else uint8_kernel:
        return F.interpolate(x, size=out, mode=mode, align_corners=False, antialias=True)[0]
    x = x.float()
    for size_hw in ((height, out[1]), tuple(out)):
        if tuple(x.shape[-2:]) != size_hw:
            x = F.interpolate(x, size=size_hw, mode=mode, align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
    return x[0].to(torch.uint8)


def _step_name(step: Callable) -> str:
    return getattr(step, "__name__", type(step).__name__)


def _unsupported(step: Callable, known: str) -> str:
    return (
        f"decode: tensor cannot run the encoder's eval transform step {step!r} on tensors (it knows {known}); "
        "use decode: pil"
    )


class TensorDecode:
    """The ``tensor`` decode path for an encoder on ``device``, in the two halves a loader needs.

    Called on an :class:`ImageRef` (in a loader worker or decoding thread) it gives, with ``in_loader`` (the
    default on a CPU device), the image decoded (``decode_jpeg``, else PIL) and resized/cropped to uint8
    ``[3, S, S]``; else (the default elsewhere) a JPEG's encoded bytes (1-D uint8) to decode on the device, or the
    uint8 ``[3, H, W]`` pixels of anything else. :meth:`collate` batches the items and :meth:`finish` turns a batch
    into the encoder's input on ``device``. Images that do not decode are :class:`BadImage` (the reasons PIL's
    reader gives), in both halves."""

    def __init__(self, preprocess: Callable, device: torch.device | str, in_loader: bool | None = None):
        self.transform = TensorTransform(preprocess)
        self.device = torch.device(device)
        self.in_loader = self.device.type == "cpu" if in_loader is None else in_loader

    def __call__(self, ref: ImageRef) -> torch.Tensor:
        data = ref.read_bytes()
        if not self.in_loader and _device_decodable(data):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        pixels = _decoded_on_cpu(data)
        return self.transform.image(pixels) if self.in_loader else pixels

    def collate(
        self, items: list[Item]
    ) -> tuple[torch.Tensor | list[torch.Tensor] | None, torch.Tensor, list[tuple[int, str]]]:
        """The items that decoded (stacked when decoded in the loader, else a list), their indices, and
        ``(index, why)`` of those that did not."""
        good = [(x, i) for x, i, _ in items if x is not None]
        bad = [(i, why) for x, i, why in items if x is None]
        pixels = [x for x, _ in good]
        batch = (torch.stack(pixels) if self.in_loader else pixels) if pixels else None
        return batch, torch.tensor([i for _, i in good], dtype=torch.long), bad

    def finish(
        self,
        batch: torch.Tensor | list[torch.Tensor] | None,
        indices: torch.Tensor,
        bad: list[tuple[int, str]],
    ) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
        """A collated batch as the encoder's float input on ``device``: JPEG bytes decoded there in one call (one
        by one, then on the CPU, if the batched call fails), every image resized and cropped, then normalized.
        Returns the input, the indices it holds, and ``bad`` plus any image that did not decode here."""
        if batch is None:
            return None, indices, bad
        if isinstance(batch, torch.Tensor):  # decoded, resized and cropped in the loader
            return self.transform.batch(batch.to(self.device, non_blocking=True)), indices, bad
        decoded = self._decode_on_device(batch)
        bad = bad + [(int(indices[k]), why) for k, why in enumerate(decoded) if isinstance(why, str)]
        keep = [k for k, x in enumerate(decoded) if isinstance(x, torch.Tensor)]
        if not keep:
            return None, indices[:0], bad
        pixels = torch.stack([self.transform.image(decoded[k]) for k in keep])
        return self.transform.batch(pixels), indices[keep], bad

    def _decode_on_device(self, items: Sequence[torch.Tensor]) -> list[torch.Tensor | str]:
        """Each item as uint8 ``[3, H, W]`` pixels on ``device``, or why it does not decode."""
        encoded = [k for k, x in enumerate(items) if x.dim() == 1]
        decoded: dict[int, torch.Tensor | str] = {}
        if encoded:
            try:
                batch = decode_jpeg([items[k] for k in encoded], mode=ImageReadMode.RGB, device=self.device)
                decoded = dict(zip(encoded, batch, strict=True))
            except RuntimeError:
                # one stream the device decoder refuses fails the whole call: decode them one by one
                decoded = {k: self._decode_one(items[k]) for k in encoded}
        return [
            decoded[k] if k in decoded else x.to(self.device, non_blocking=True) for k, x in enumerate(items)
        ]

    def _decode_one(self, encoded: torch.Tensor) -> torch.Tensor | str:
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            pass
        try:
            return _decoded_on_cpu(encoded.numpy().tobytes()).to(self.device, non_blocking=True)
        except BadImage as e:
            return str(e)


def _device_decodable(data: bytes) -> bool:
    """A JPEG for the device decoder: RGB or greyscale, within PIL's pixel limit, ending with its EOI marker (a
    truncated stream is left to the CPU decoders, which refuse it)."""
    return _jpeg_mode(data) in _DEVICE_MODES and data.rstrip(b"\0").endswith(_JPEG_EOI)


def _jpeg_mode(data: bytes) -> str | None:
    """The colour mode of a JPEG within PIL's pixel limit (read from its header), else None."""
    if not is_jpeg(data):
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            limit = Image.MAX_IMAGE_PIXELS
            return im.mode if limit is None or im.width * im.height <= limit else None
    except Exception:  # PIL cannot read the header: PIL's reader says why when it decodes
        return None


def _decoded_on_cpu(data: bytes) -> torch.Tensor:
    """uint8 ``[3, H, W]`` RGB pixels: libjpeg-turbo through ``decode_jpeg`` for a JPEG within PIL's pixel limit
    (PIL's pixels exactly, see :func:`pixel_difference`), else PIL's reader (:func:`decode_rgb`, whose
    :class:`BadImage` names why an image does not decode)."""
    if _jpeg_mode(data) is not None:
        try:
            return decode_jpeg_rgb(data)
        except RuntimeError:
            pass  # truncated, corrupt or unsupported: PIL's reader decides, and names the reason
    image = decode_rgb(io.BytesIO(data))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
