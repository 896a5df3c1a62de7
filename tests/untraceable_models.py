"""A model torch-pruning's graph walker cannot follow: ShuffleNetV2 blocks with the shuffle inline.

Same block as mobileprune's traceable one, but the shuffle is a plain method (view → transpose → view)
instead of a child module, so the tracer meets the raw reshape.
"""

import torch
import torch.nn as nn
from torchvision.models import shufflenetv2

from mobileprune.models.tracing_fixes import TraceableShuffleResidual


class InlineShuffleBlock(TraceableShuffleResidual):
    def shuffle(self, x: torch.Tensor) -> torch.Tensor:
        return shufflenetv2.channel_shuffle(x, 2)


def inline_shufflenet() -> nn.Module:
    """torchvision's ShuffleNetV2 x0.5 (10 classes) with every block an `InlineShuffleBlock`."""
    import torchvision

    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    for module in model.modules():
        if type(module) is shufflenetv2.InvertedResidual:
            module.__class__ = InlineShuffleBlock
    return model.eval()
