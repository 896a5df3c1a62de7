"""A model torch-pruning's graph walker cannot follow: ShuffleNetV2 blocks with the shuffle inline.

It is torchvision's ShuffleNetV2 block under another class name, so mobileprune's ShuffleNet adapter
does not recognise it and the tracer meets the raw view → transpose → view.
"""

import torch
import torch.nn as nn
from torchvision.models import shufflenetv2


class InlineShuffleBlock(shufflenetv2.InvertedResidual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        b, c, h, w = out.shape
        return out.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def inline_shufflenet() -> nn.Module:
    """torchvision's ShuffleNetV2 x0.5 (10 classes) with every block an `InlineShuffleBlock`."""
    import torchvision

    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    for module in model.modules():
        if type(module) is shufflenetv2.InvertedResidual:
            module.__class__ = InlineShuffleBlock
    return model.eval()
