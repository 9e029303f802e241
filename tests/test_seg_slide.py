"""Slide inference of the zero-shot segmentor: window placement and stitching equal mmseg's, whole = slide when the
crop covers the image, batched windows (of one image, and of several images in one forward) = one-by-one windows,
synonyms and the background threshold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import require_mm

pytestmark = pytest.mark.mm
require_mm()  # before the mm imports below: fails when mm is missing, skips with SILC_SKIP_MM=1

from mmengine.config import ConfigDict  # noqa: E402
from mmseg.models.segmentors import EncoderDecoder  # noqa: E402
from mmseg.models.utils import resize  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from adapters.mmseg import ZeroShotSegmentor, window_starts  # noqa: E402
from silc.errors import UserError  # noqa: E402
from tests.seg_fixtures import COLOURS, ColourOracle  # noqa: E402


class _MmsegSlideStub:
    """Enough of an EncoderDecoder for its ``slide_inference``: windows are identified by coordinate channels."""

    def __init__(self, crop: int, stride: int, channels: int, window_logits) -> None:
        self.test_cfg = ConfigDict(crop_size=(crop, crop), stride=(stride, stride))
        self.out_channels = channels
        self.window_logits = window_logits  # (y1, x1, h, w) -> [1, C, h, w]
        self.seen: list[tuple[int, int, int, int]] = []

    def encode_decode(self, crop: torch.Tensor, metas) -> torch.Tensor:
        key = (int(crop[0, 0, 0, 0]), int(crop[0, 1, 0, 0]), crop.shape[2], crop.shape[3])
        self.seen.append(key)
        return self.window_logits(key)


def _coordinates(height: int, width: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([ys, xs]).float()[None]


@pytest.mark.parametrize("size,crop,stride", [((70, 100), 32, 16), ((20, 50), 32, 24), ((64, 64), 64, 32)])
def test_window_starts_match_mmseg_slide_inference(size, crop, stride):
    height, width = size
    stub = _MmsegSlideStub(crop, stride, 1, lambda k: torch.zeros(1, 1, k[2], k[3]))
    EncoderDecoder.slide_inference(stub, _coordinates(height, width), [{}])
    ours = [
        (y, x, min(crop, height), min(crop, width))
        for y in window_starts(height, crop, stride)
        for x in window_starts(width, crop, stride)
    ]
    assert stub.seen == ours


@pytest.mark.parametrize(
    "size,out_size,crop,stride,patch", [((70, 100), (91, 130), 32, 16, 8), ((20, 50), (33, 41), 32, 24, 6)]
)
def test_stitching_and_resize_equal_mmseg(size, out_size, crop, stride, patch):
    """Our matrix-product decoding equals mmseg's slide_inference + resize on the same per-window logits."""
    torch.manual_seed(0)
    height, width = size
    ys, xs = window_starts(height, crop, stride), window_starts(width, crop, stride)
    win_h, win_w = min(crop, height), min(crop, width)
    cells_h, cells_w = -(-win_h // patch), -(-win_w // patch)
    channels = 5
    cells = {(y, x): torch.randn(channels, cells_h, cells_w) for y in ys for x in xs}

    def window_logits(key):  # patch grid -> padded window -> cropped to the window (our convention)
        up = F.interpolate(cells[key[:2]][None], size=(cells_h * patch, cells_w * patch), mode="bilinear")
        return up[:, :, : key[2], : key[3]]

    stub = _MmsegSlideStub(crop, stride, channels, window_logits)
    stitched = EncoderDecoder.slide_inference(stub, _coordinates(height, width), [{}])
    reference = resize(stitched, size=out_size, mode="bilinear", align_corners=False, warning=False)[0]

    names = [f"class {k}" for k in range(channels)]
    oracle = ColourOracle([[n] for n in names], list(range(channels)), patch_size=patch)
    seg = ZeroShotSegmentor(
        encoder=oracle, class_names=names, templates="identity", crop_size=crop, stride=stride
    )
    grid = torch.stack([torch.cat([cells[(y, x)] for x in xs], dim=2) for y in ys], dim=1)
    grid = grid.reshape(channels, len(ys) * cells_h, len(xs) * cells_w)
    ours = torch.cat([c for _, c, _ in seg._row_chunks(grid, size, out_size)]).permute(2, 0, 1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def _whole_image_labels(encoder, seg: ZeroShotSegmentor, image: torch.Tensor, out_size) -> torch.Tensor:
    """Reference whole-image inference: pad to patches, encode once, cosine x scale, upsample, crop, resize."""
    p = encoder.patch_size
    h, w = image.shape[-2:]
    padded = F.pad(image, (0, -(-w // p) * p - w, 0, -(-h // p) * p - h))
    feats = encoder.encode_dense(padded, seg.dense_mode)
    logits = torch.einsum("ndhw,qd->nqhw", feats, seg.queries) * seg.logit_scale
    logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)[:, :, :h, :w]
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits[0].argmax(dim=0)


def _segmentor(encoder, **kw) -> ZeroShotSegmentor:
    names = kw.pop("class_names", ["circle", "square", "grass", "sky", "water"])
    return ZeroShotSegmentor(encoder=encoder, class_names=names, templates="identity", **kw)


def test_slide_equals_whole_image_when_crop_covers_image(tiny_encoder):
    torch.manual_seed(1)
    image = torch.randn(1, 3, 60, 76)
    seg = _segmentor(tiny_encoder, dense_mode="maskclip", crop_size=80, stride=40)
    sample = SegDataSample(metainfo={"img_shape": (60, 76), "ori_shape": (90, 114)})
    slide = seg.predict(image, [sample])[0].pred_sem_seg.data[0]
    whole = _whole_image_labels(tiny_encoder, seg, image, (90, 114))
    assert seg.timing["windows"] == 1
    assert torch.equal(slide, whole)


def test_batched_windows_equal_one_by_one(tiny_encoder):
    torch.manual_seed(2)
    image = torch.randn(1, 3, 72, 104)
    shapes, out = [(72, 104)], [(72, 104)]
    batched = _segmentor(tiny_encoder, dense_mode="sclip", crop_size=32, stride=24)
    single = _segmentor(tiny_encoder, dense_mode="sclip", crop_size=32, stride=24, max_windows_per_forward=1)
    a, b = batched.class_logits(image, shapes, out)[0], single.class_logits(image, shapes, out)[0]
    assert batched.timing["windows"] == single.timing["windows"] == 3 * 4
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert torch.equal(a.argmax(0), b.argmax(0))


def test_windows_of_a_batch_share_forwards_across_images(tiny_encoder, monkeypatch):
    """Images with different window counts (3x4 and 3x5 windows of 32 px) go through one forward together; an
    image shorter than a window (its windows are 24 px high) gets its own; logits equal those of images alone."""
    torch.manual_seed(3)
    inputs = torch.randn(3, 3, 72, 128)
    shapes = [(72, 104), (72, 128), (24, 40)]
    seg = _segmentor(tiny_encoder, crop_size=32, stride=24)
    calls: list[tuple[int, ...]] = []
    encode = tiny_encoder.encode_dense
    monkeypatch.setattr(
        tiny_encoder, "encode_dense", lambda x, mode: calls.append(tuple(x.shape)) or encode(x, mode)
    )
    batched = seg.class_logits(inputs, shapes, shapes)
    assert calls == [(12 + 15, 3, 32, 32), (2, 3, 24, 32)]
    for i, shape in enumerate(shapes):
        alone = seg.class_logits(inputs[i : i + 1], [shape], [shape])[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=1e-4)
        assert torch.equal(batched[i].argmax(0), alone.argmax(0))


def test_synonyms_take_the_max_and_threshold_sets_background():
    oracle = ColourOracle([["sky", "heaven"], ["grass"], ["water"]], [1, 2, 3], patch_size=4)
    seg = ZeroShotSegmentor(
        encoder=oracle, class_names=[["sky", "heaven"], "grass", "water"], templates="identity"
    )
    assert seg.num_classes == 3 and seg.has_synonyms and seg.query_owner.tolist() == [0, 0, 1, 2]
    grid = torch.randn(4, 3, 5)
    rows = list(seg._row_chunks(grid, (12, 20), (12, 20)))
    class_logits = torch.cat([c for _, c, _ in rows])  # [H, W, classes]
    query_logits = torch.cat([q for _, _, q in rows])  # [H, W, queries]
    assert class_logits.shape == (12, 20, 3) and query_logits.shape == (12, 20, 4)
    torch.testing.assert_close(
        class_logits[..., 0], torch.maximum(query_logits[..., 0], query_logits[..., 1])
    )
    torch.testing.assert_close(class_logits[..., 1:], query_logits[..., 2:])
    # Probabilities are a softmax over all four queries: with logit scale 1 no class reaches 0.5 -> background.
    vague = ZeroShotSegmentor(encoder=oracle, class_names=[["sky", "heaven"], "grass", "water"],
                              templates="identity", logit_scale=1.0, bg_threshold=0.5, bg_index=2)  # fmt: skip
    sharp = ZeroShotSegmentor(encoder=oracle, class_names=[["sky", "heaven"], "grass", "water"],
                              templates="identity", logit_scale=100.0, bg_threshold=0.5, bg_index=2)  # fmt: skip
    rgb = torch.tensor(COLOURS[1], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 8, 8) / 255.0
    image = (rgb - torch.tensor(oracle.mean).view(1, 3, 1, 1)) / torch.tensor(oracle.std).view(1, 3, 1, 1)
    shape = [(8, 8)]
    assert vague._predict_labels(vague.grid_logits(image, shape)[0], (8, 8), (8, 8)).unique().tolist() == [2]
    assert sharp._predict_labels(sharp.grid_logits(image, shape)[0], (8, 8), (8, 8)).unique().tolist() == [0]


def test_normalisation_follows_the_encoder():
    oracle = ColourOracle([["sky"], ["grass"]], [1, 2], patch_size=4)
    seg = ZeroShotSegmentor(encoder=oracle, class_names=["sky", "grass"], templates="identity")
    torch.testing.assert_close(seg.data_preprocessor.mean.flatten(), torch.tensor(oracle.mean) * 255)
    torch.testing.assert_close(seg.data_preprocessor.std.flatten(), torch.tensor(oracle.std) * 255)
    assert seg.data_preprocessor.channel_conversion  # mmcv loads BGR; the encoder wants RGB
    given = {"mean": [76.5, 127.5, 178.5], "std": [51.0, 63.75, 76.5]}  # the same values, written out
    ZeroShotSegmentor(
        encoder=oracle, class_names=["sky", "grass"], templates="identity", data_preprocessor=given
    )
    with pytest.raises(UserError, match=r"model.data_preprocessor.mean: \[123.675, 116.28, 103.53\] differs"):
        ZeroShotSegmentor(encoder=oracle, class_names=["sky", "grass"], templates="identity",
                          data_preprocessor={"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]})  # fmt: skip
