"""Compact residual 3-D U-Net: strided stem to 2 mm, U-Net at 2-16 mm, light full-res head.

Input [N, 4, P, P, P] (1 mm, z-scored T1, T1c, T2, FLAIR), output logits [N, 4, P, P, P].
P must be a multiple of 16.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(c: int) -> nn.Module:
    return nn.InstanceNorm3d(c, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.n1 = _norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.n2 = _norm(cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv3d(cin, cout, 1, bias=False)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.n1(self.conv1(x)))
        y = self.n2(self.conv2(y))
        return self.act(y + self.skip(x))


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 2, stride=2, bias=False)
        self.norm = _norm(cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.block = ResBlock(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.act(self.norm(self.conv(x))))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=False)
        self.block = ResBlock(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.up(x) + skip)


class GlioNet(nn.Module):
    def __init__(self, in_ch: int = 4, n_classes: int = 4, widths: tuple[int, ...] = (16, 32, 64, 96),
                 head: int = 8) -> None:
        super().__init__()
        w = widths
        self.stem = Down(in_ch, w[0])  # 2 mm
        self.downs = nn.ModuleList([Down(w[i], w[i + 1]) for i in range(len(w) - 1)])
        self.ups = nn.ModuleList([Up(w[i + 1], w[i]) for i in reversed(range(len(w) - 1))])
        self.up_full = nn.ConvTranspose3d(w[0], head, 2, stride=2)
        self.head = nn.Sequential(
            nn.Conv3d(head + in_ch, head, 1),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(head, n_classes, 1),
        )
        self.aux = nn.Conv3d(w[0], n_classes, 1)  # 2 mm deep-supervision output (training only)

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        skips = [self.stem(x)]
        for d in self.downs:
            skips.append(d(skips[-1]))
        y = skips.pop()
        for u in self.ups:
            y = u(y, skips.pop())
        out = self.head(torch.cat([self.up_full(y), x], dim=1))
        if return_aux:
            return out, self.aux(y)
        return out


def build_model(**kw) -> GlioNet:
    return GlioNet(**kw)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
