"""Plain-PyTorch reference models for the bundled specs, written without lazyspec.

Every layer here is given its input size by hand (no lazy modules), so the parameter counts and
shapes they produce are an independent computation to check the specs against. Attribute names
follow the specs' node names, which follow torchvision (ResNet) and Hugging Face (GPT-2).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# --- MLP (D2L 6.4) and LeNet (D2L 7.6) ----------------------------------------------------------


def mlp(in_features: int = 20) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, 256), nn.ReLU(), nn.Linear(256, 10))


def lenet(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, kernel_size=5, padding=2)), ("act1", nn.Sigmoid()),
        ("pool1", nn.AvgPool2d(2, stride=2)),
        ("conv2", nn.Conv2d(6, 16, kernel_size=5)), ("act2", nn.Sigmoid()),
        ("pool2", nn.AvgPool2d(2, stride=2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 5 * 5, 120)), ("act3", nn.Sigmoid()),
        ("fc2", nn.Linear(120, 84)), ("act4", nn.Sigmoid()),
        ("fc3", nn.Linear(84, num_classes)),
    ]))


# --- ResNet, as torchvision.models.resnet writes it (BasicBlock only) ---------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, 1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet([2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    return ResNet([3, 4, 6, 3], num_classes)


# --- GPT-2, with Hugging Face's names but nn.Linear (weights [out, in]) -------------------------

GPT2_SMALL = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
              "n_head": 12}


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.1):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        # Attention written out (not F.scaled_dot_product_attention), as in minGPT.
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.n_head)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = self.attn_dropout(att) @ v
        y = y.transpose(1, 2).contiguous().view(b, t, d)
        return self.resid_dropout(self.c_proj(y))


class GPT2MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float = 0.1):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.act = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.1):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = GPT2MLP(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 768,
                 n_layer: int = 12, n_head: int = 12, dropout: float = 0.1):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(GPT2Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one parameter

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# --- U-Net (specs/unet.yaml), in the style of milesial/Pytorch-UNet -----------------------------


def double_conv(in_channels: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
    )


class Down(nn.Module):
    def __init__(self, in_channels: int, c: int):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = double_conv(in_channels, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class Up(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, c: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, c, 2, stride=2)
        self.conv = double_conv(skip_channels + c, c)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 2, c: int = 16):
        super().__init__()
        self.inc = double_conv(in_channels, c)
        self.down1 = Down(c, 2 * c)
        self.down2 = Down(2 * c, 4 * c)
        self.down3 = Down(4 * c, 8 * c)
        self.up1 = Up(8 * c, 4 * c, 4 * c)
        self.up2 = Up(4 * c, 2 * c, 2 * c)
        self.up3 = Up(2 * c, c, c)
        self.outc = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        return self.outc(self.up3(self.up2(self.up1(x4, x3), x2), x1))


# --- two inputs, one shared encoder (specs/two_input.yaml) ---------------------------------------


class TwoInput(nn.Module):
    def __init__(self, in_features: int = 32, hidden: int = 64, head_hidden: int = 32,
                 num_classes: int = 2):
        super().__init__()
        self.enc_a = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(in_features, hidden)), ("act1", nn.ReLU()),
            ("fc2", nn.Linear(hidden, hidden)), ("act2", nn.ReLU()),
        ]))
        self.fc = nn.Linear(2 * hidden, head_hidden)
        self.out = nn.Linear(head_hidden, num_classes)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.enc_a(a), self.enc_a(b)], dim=-1)  # the same encoder, twice
        return self.out(F.relu(self.fc(z)))


# --- helpers -------------------------------------------------------------------------------------


def on_meta(factory, *args, **kwargs) -> nn.Module:  # type: ignore[no-untyped-def]
    """Build a reference model on the meta device: shapes without memory."""
    with torch.device("meta"):
        return factory(*args, **kwargs)


def param_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every distinct parameter, in registration order (tied ones once)."""
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def state_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of the whole state dict: parameters and buffers, tied ones under each name."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
