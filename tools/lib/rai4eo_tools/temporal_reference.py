"""The temporal classifier in PyTorch: the reference for rai4eo's C engine (src/core/temporal.c)
and the model tools/train temporal trains.

An nn.LSTM or nn.GRU (batch_first, unidirectional) over a sequence of embeddings, optionally
L2-normalised first, pooled by temporal attention (softmax over time of a linear score) or by
the last step's output, then a linear or MLP head.  state_dict() keys are the ones rai4eo
reads: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ... (PyTorch's own), attn.weight,
attn.bias, head.weight, head.bias (or head.0.*, head.2.* for the MLP).
"""

import torch
from torch import nn
import torch.nn.functional as F


class TemporalClassifier(nn.Module):
    """Sequence [B][T][D] (with optional lengths [B]) -> class logits [B][K]."""

    def __init__(self, arch, input_dim, hidden, layers, classes, attention=False, l2_normalize=False,
                 head_hidden=0):
        super().__init__()
        if arch not in ("lstm", "gru"):
            raise ValueError("arch must be lstm or gru")
        self.arch = arch
        self.l2_normalize = l2_normalize
        rnn = nn.LSTM if arch == "lstm" else nn.GRU
        self.rnn = rnn(input_dim, hidden, num_layers=layers, batch_first=True)
        self.attn = nn.Linear(hidden, 1) if attention else None
        if head_hidden:
            self.head = nn.Sequential(nn.Linear(hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, classes))
        else:
            self.head = nn.Linear(hidden, classes)

    def pooled(self, x, lengths=None):
        """The pooled top-layer state [B][H]; padding after a sequence's length is ignored."""
        if self.l2_normalize:
            x = F.normalize(x, dim=-1, eps=1e-12)
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        lengths = lengths.to(torch.long).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        mask = torch.arange(T)[None, :].to(x.device) < lengths[:, None].to(x.device)
        if self.attn is not None:
            score = self.attn(out).squeeze(-1).masked_fill(~mask, float("-inf"))
            a = torch.softmax(score, dim=1)
            return (a.unsqueeze(-1) * out).sum(1)
        return out[torch.arange(B), (lengths - 1).to(x.device)]

    def forward(self, x, lengths=None):
        return self.head(self.pooled(x, lengths))

    def export_state(self):
        """The state dict with rai4eo's key names (the RNN's own names, unprefixed)."""
        out = {}
        for k, v in self.state_dict().items():
            out[k[len("rnn."):] if k.startswith("rnn.") else k] = v.detach().to("cpu", torch.float32).contiguous()
        return out


def probabilities(model, seq, multilabel=True):
    """Class probabilities of one sequence [T][D] (float64 math when the model is double)."""
    with torch.no_grad():
        logits = model(seq.unsqueeze(0))[0]
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=0)


def random_model(arch, input_dim, hidden, layers, classes, attention=False, seed=0, head_hidden=0,
                 l2_normalize=False, scale=1.0):
    """A model with seeded random weights (uniform, PyTorch's own init times scale)."""
    torch.manual_seed(seed)
    m = TemporalClassifier(arch, input_dim, hidden, layers, classes, attention, l2_normalize, head_hidden)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m.eval()
