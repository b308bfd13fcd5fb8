"""A PyTorch torchvision-layout ResNet, the reference the C ResNet engine is checked against.

Written after torchvision's torchvision/models/resnet.py (summarised in
docs/formats.md, "torchvision ResNet"; no torchvision needed): module and
parameter names equal
torchvision's (and timm's), so a torchvision ResNet state dict loads with
strict=True.  conv1 7x7/2 (no bias) -> bn1 -> ReLU -> maxpool 3x3/2 pad 1 ->
layer1..layer4 of BasicBlocks (conv1 3x3 carrying the stride, conv2 3x3) or
Bottlenecks (conv1 1x1, conv2 3x3 carrying the stride: "v1.5", conv3 1x1,
expansion 4) with downsample.0 (1x1 conv) + downsample.1 (BN) where the shape
changes -> global average pool -> fc (optional; the embedding is the pooled
vector, torchvision's forward with fc = Identity).  Eval-mode BatchNorm with
eps 1e-5 unless told otherwise.

stride_on_1x1=True builds the original ResNet v1 Bottleneck (stride on the
first 1x1 conv), a plausible wrong variant the parity tests use as a
negative control.

Also here: a generator of random ResNet weights with non-trivial BatchNorm
statistics whose activations stay in a realistic range.
"""

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

ARCHS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first carries the stride."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, eps: float = 1e-5,
                 stride_on_1x1: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, "v1.5") -> 1x1 with 4x expansion."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, eps: float = 1e-5,
                 stride_on_1x1: bool = False):
        super().__init__()
        s1, s2 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, s2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet with any number of input channels and stem width."""

    def __init__(self, block: str, layers: Sequence[int], in_chans: int = 3, width: int = 64,
                 num_classes: int = 0, eps: float = 1e-5, stride_on_1x1: bool = False):
        super().__init__()
        cls = Bottleneck if block == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or inplanes != planes * cls.expansion):
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * cls.expansion, 1, s, bias=False),
                                         nn.BatchNorm2d(planes * cls.expansion, eps=eps))
                blocks.append(cls(inplanes, planes, s, down, eps, stride_on_1x1))
                inplanes = planes * cls.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = inplanes
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else None

    def features(self, x):
        """The embedding: layer4's output, globally average-pooled ([B, out_dim])."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        f = self.features(x)
        return f if self.fc is None else self.fc(f)


def layout_of(state: Dict[str, torch.Tensor]):
    """(block, layers, in_chans, width) of a torchvision ResNet state dict."""
    width, in_chans = state["conv1.weight"].shape[:2]
    block = "bottleneck" if any(k.endswith(".conv3.weight") for k in state) else "basic"
    layers = []
    for s in range(1, 5):
        idx = [int(k.split(".")[1]) for k in state if k.startswith(f"layer{s}.")]
        layers.append(1 + max(idx))
    return block, layers, int(in_chans), int(width)


def resnet_from_state_dict(state: Dict[str, torch.Tensor], eps: float = 1e-5,
                           stride_on_1x1: bool = False) -> ResNet:
    """Build a ResNet whose shapes fit a torchvision state dict and load it strictly (eval mode)."""
    block, layers, in_chans, width = layout_of(state)
    num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 0
    model = ResNet(block, layers, in_chans, width, num_classes, eps, stride_on_1x1)
    model.load_state_dict({k: (v if k.endswith("num_batches_tracked") else v.float())
                           for k, v in state.items()}, strict=True)
    return model.eval()


def random_resnet_state(arch: str = "resnet50", in_chans: int = 3, width: int = 64,
                        layers: Optional[Sequence[int]] = None, num_classes: int = 0,
                        seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random float32 ResNet weights with realistic activations and BatchNorm statistics.

    Convs are He-initialised (std sqrt(2 / fan_in)).  Every BatchNorm gets
    gains in [0.5, 1.5] (the last one of each block [0.15, 0.45], so the
    residual stream grows slowly, like zero-init-residual training leaves
    it), biases N(0, 0.1), running means N(0, 0.3) and running variances in
    [0.5, 2]; one channel in eight has a small variance (1e-3 .. 1e-2, gain
    scaled down to match), as trained networks do, which makes the result
    sensitive to the BatchNorm epsilon.  Includes num_batches_tracked (I64)
    like a real state dict, and fc.* when num_classes > 0.
    """
    block, default_layers = ARCHS[arch]
    model = ResNet(block, list(layers or default_layers), in_chans, width, num_classes)
    g = torch.Generator().manual_seed(seed)
    state = {}
    last_bn = {"bn2"} if block == "basic" else {"bn3"}
    for name, t in model.state_dict().items():
        mod, _, kind = name.rpartition(".")
        n = t.shape[0] if t.dim() else 1
        if kind == "num_batches_tracked":
            state[name] = torch.tensor(int(torch.randint(1000, 100000, (1,), generator=g)))
            continue
        if t.dim() == 4:
            fan_in = t.shape[1] * t.shape[2] * t.shape[3]
            state[name] = torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif mod == "fc":
            state[name] = torch.randn(t.shape, generator=g) / math.sqrt(t.shape[-1])
        elif kind == "weight":
            last = mod.rpartition(".")[2] in last_bn or mod.endswith("downsample.1")
            lo, hi = (0.15, 0.45) if last else (0.5, 1.5)
            state[name] = lo + (hi - lo) * torch.rand(n, generator=g)
        elif kind == "bias":
            state[name] = torch.randn(n, generator=g) * 0.1
        elif kind == "running_mean":
            state[name] = torch.randn(n, generator=g) * 0.3
        elif kind == "running_var":
            state[name] = 0.5 + 1.5 * torch.rand(n, generator=g)
        else:
            raise AssertionError(f"unexpected entry {name}")
    # One channel in eight with a small variance; its gain shrinks so the output does not explode.
    for name in list(state):
        if name.endswith("running_var"):
            mod = name[:-len("running_var")]
            n = state[name].shape[0]
            small = torch.rand(n, generator=g) < 0.125
            v = 1e-3 + 9e-3 * torch.rand(n, generator=g)
            state[name] = torch.where(small, v, state[name])
            state[mod + "weight"] = torch.where(small, state[mod + "weight"] * v.sqrt(),
                                                state[mod + "weight"])
    return state


def param_count(state: Dict[str, torch.Tensor]) -> int:
    """Parameters as PyTorch counts them (no running statistics, no fc)."""
    return sum(v.numel() for k, v in state.items()
               if not k.startswith("fc.") and not k.endswith(("running_mean", "running_var",
                                                               "num_batches_tracked")))
