"""SiLC loss terms: the image–text contrastive loss, the DINO self-distillation loss and the masked patch
self-distillation loss."""

from silc.losses.contrastive import ContrastiveLoss
from silc.losses.distillation import DINOLoss
from silc.losses.masked import MaskedPatchLoss

__all__ = ["ContrastiveLoss", "DINOLoss", "MaskedPatchLoss"]
