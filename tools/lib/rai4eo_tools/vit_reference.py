"""A PyTorch DINO v1 Vision Transformer, the reference the C engine is checked against.

Written after facebookresearch/dino's vision_transformer.py and eval_linear.py
(summarised in docs/formats.md, "DINO ViT"): module and parameter names equal
DINO's (and timm's), so a DINO
backbone state dict loads with strict=True; the forward pass is DINO's in
eval mode (pre-norm blocks, fused qkv, exact GELU, LayerNorm eps 1e-6),
interpolate_pos_encoding reproduces DINO v1 including the +0.1 and the
scale_factor form of the bicubic call, and features() reproduces
eval_linear's recipe (n_last_blocks, avgpool, including the interleaving).

Also here: the input preprocessing the database applies (normalise, zero
nodata, optional bilinear resize) and a generator of random ViT weights
whose activations stay in a realistic range.
"""

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """Cut the image into P x P patches and project each to embed_dim (a strided conv)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        # [B, D, gh, gw] -> [B, gh*gw, D], tokens in row-major grid order
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        h = self.num_heads
        # columns [0,D) are q, [D,2D) k, [2D,3D) v; head i owns D/h columns of each
        qkv = self.qkv(x).reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, hidden: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """DINO v1's VisionTransformer without a head (num_classes=0)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_hidden: Optional[int] = None, eps: float = 1e-6):
        super().__init__()
        grid = img_size // patch_size
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        hidden = mlp_hidden or 4 * embed_dim
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, hidden, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def interpolate_pos_encoding(self, x, w, h):
        """DINO v1's resampling of the position embedding to the input's patch grid.

        As in DINO, `w` is the image height (dim 2) and `h` its width (dim 3).
        """
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos = self.pos_embed[:, 0]
        patch_pos = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_embed.patch_size
        h0 = h // self.patch_embed.patch_size
        # the +0.1 avoids floating point error in the output size (dino issue #8)
        w0, h0 = w0 + 0.1, h0 + 0.1
        side = int(math.sqrt(N))
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        assert int(w0) == patch_pos.shape[-2] and int(h0) == patch_pos.shape[-1]
        patch_pos = patch_pos.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos.unsqueeze(0), patch_pos), dim=1)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(x, w, h)

    def forward(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]

    def get_intermediate_layers(self, x, n: int = 1):
        """The final norm applied to the outputs of the last n blocks, oldest first."""
        x = self.prepare_tokens(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if len(self.blocks) - i <= n:
                out.append(self.norm(x))
        return out

    def token_stats(self, x, grid: int = 1):
        """The "token_stats" readout: [mean, std] over the patch tokens (CLS excluded)
        of the last block's output before the final norm; population std.  With grid g
        the token grid is cut into g x g regions (rows i*gh//g .. (i+1)*gh//g, the same
        for columns) and the regions' [mean, std] are concatenated row-major."""
        gh, gw = x.shape[-2] // self.patch_embed.patch_size, x.shape[-1] // self.patch_embed.patch_size
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        t = x[:, 1:].double().reshape(x.shape[0], gh, gw, x.shape[-1])
        out = []
        for i in range(grid):
            for j in range(grid):
                r = t[:, i * gh // grid:(i + 1) * gh // grid, j * gw // grid:(j + 1) * gw // grid]
                r = r.reshape(x.shape[0], -1, x.shape[-1])
                out += [r.mean(1), r.std(1, unbiased=False)]
        return torch.cat(out, dim=-1).float()

    def features(self, x, n_last_blocks: int = 1, avgpool: bool = False, readout: str = "cls",
                 readout_grid: int = 1):
        """The engine's feature vector: DINO eval_linear's, or token_stats.

        CLS tokens of the last n blocks, concatenated; with avgpool the mean
        of the last block's patch tokens is added.  For n == 1 that is
        eval_linear's interleaved [cls0, avg0, cls1, avg1, ...]; for n > 1,
        where eval_linear's cat does not type-check, it is [cls..., avg].
        readout "token_stats" returns token_stats(x, readout_grid) instead.
        """
        if readout == "token_stats":
            return self.token_stats(x, readout_grid)
        inter = self.get_intermediate_layers(x, n_last_blocks)
        output = torch.cat([t[:, 0] for t in inter], dim=-1)
        if avgpool:
            avg = torch.mean(inter[-1][:, 1:], dim=1)
            if n_last_blocks == 1:
                output = torch.cat((output.unsqueeze(-1), avg.unsqueeze(-1)), dim=-1)
                output = output.reshape(output.shape[0], -1)
            else:
                output = torch.cat((output, avg), dim=-1)
        return output


def vit_from_state_dict(state: Dict[str, torch.Tensor], num_heads: Optional[int] = None,
                        eps: float = 1e-6) -> VisionTransformer:
    """Build a VisionTransformer whose shapes fit a DINO state dict and load it strictly."""
    D, C, P, _ = state["patch_embed.proj.weight"].shape
    N = state["pos_embed"].shape[1] - 1
    grid = int(round(math.sqrt(N)))
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    model = VisionTransformer(img_size=grid * P, patch_size=P, in_chans=C, embed_dim=D,
                              depth=depth, num_heads=num_heads or D // 64,
                              mlp_hidden=hidden, eps=eps)
    model.load_state_dict({k: v.float() for k, v in state.items()
                           if not k.startswith("head.")}, strict=True)
    return model.eval()


def random_vit_state(embed_dim: int = 384, depth: int = 12, patch_size: int = 16,
                     in_chans: int = 3, img_size: int = 224, mlp_hidden: Optional[int] = None,
                     seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random float32 ViT weights with realistic activations.

    Linear and conv weights are scaled by 1/sqrt(fan_in) so activations stay
    near unit scale (residual branches a little smaller so depth does not
    blow them up); LayerNorm gains are drawn from [0.5, 1.5] and every bias
    is clearly non-zero, so a kernel that ignores one of them fails.
    """
    g = torch.Generator().manual_seed(seed)
    D = embed_dim
    Hd = mlp_hidden or 4 * D
    grid = img_size // patch_size
    K = in_chans * patch_size * patch_size

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def gain(n):
        return 0.5 + torch.rand(n, generator=g)

    state = {
        "cls_token": normal(1, 1, D, std=0.5),
        "pos_embed": normal(1, grid * grid + 1, D, std=0.5),
        "patch_embed.proj.weight": normal(D, in_chans, patch_size, patch_size, std=1 / math.sqrt(K)),
        "patch_embed.proj.bias": normal(D, std=0.2),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        state[p + "norm1.weight"] = gain(D)
        state[p + "norm1.bias"] = normal(D, std=0.2)
        state[p + "attn.qkv.weight"] = normal(3 * D, D, std=1.2 / math.sqrt(D))
        state[p + "attn.qkv.bias"] = normal(3 * D, std=0.2)
        state[p + "attn.proj.weight"] = normal(D, D, std=0.6 / math.sqrt(D))
        state[p + "attn.proj.bias"] = normal(D, std=0.1)
        state[p + "norm2.weight"] = gain(D)
        state[p + "norm2.bias"] = normal(D, std=0.2)
        state[p + "mlp.fc1.weight"] = normal(Hd, D, std=1 / math.sqrt(D))
        state[p + "mlp.fc1.bias"] = normal(Hd, std=0.2)
        state[p + "mlp.fc2.weight"] = normal(D, Hd, std=0.6 / math.sqrt(Hd))
        state[p + "mlp.fc2.bias"] = normal(D, std=0.1)
    state["norm.weight"] = gain(D)
    state["norm.bias"] = normal(D, std=0.2)
    return state


def preprocess(planes: torch.Tensor, mask: Optional[torch.Tensor], scale: float,
               mean: Sequence[float], std: Sequence[float], resize_to: Optional[int] = None):
    """The database's input preprocessing for [B, C, H, W] raw planes.

    (raw * scale - mean) / std in float64, rounded to float32; nodata pixels
    (mask true) and non-finite values become 0; then, when resize_to is
    given, F.interpolate bilinear (align_corners=False, no antialias).
    """
    x = planes.double()
    C = x.shape[1]
    m = torch.tensor(list(mean), dtype=torch.float64).reshape(1, C, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float64).reshape(1, C, 1, 1)
    out = (x * scale - m) / s
    bad = ~torch.isfinite(x)
    if mask is not None:
        bad = bad | mask.bool()
    out = torch.where(bad, torch.zeros_like(out), out).float()
    if resize_to is not None:
        out = F.interpolate(out, size=(resize_to, resize_to), mode="bilinear",
                            align_corners=False, antialias=False)
    return out
