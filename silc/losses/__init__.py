"""SiLC loss terms: the image–text contrastive loss and the DINO self-distillation loss."""

from silc.losses.contrastive import ContrastiveLoss
from silc.losses.distillation import DINOLoss

__all__ = ["ContrastiveLoss", "DINOLoss"]
