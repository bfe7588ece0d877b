"""Small layers shared by several SAM 2 modules."""

from __future__ import annotations

import torch
from torch import nn

from samurai.modeling.precision import Linear


class MLP(nn.Module):
    """Stack of ``num_layers`` linear layers with an activation between them.

    Parameter names follow the official checkpoints: ``layers.{i}.weight`` / ``layers.{i}.bias``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out, strict=True))
        self.sigmoid_output = sigmoid_output
        self.act = activation()
        # ReLU and exact GELU go into the GEMM (see samurai.modeling.gemm.linear)
        self._fused_act = {nn.ReLU: "relu", nn.GELU: "gelu"}.get(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            if i == last:
                x = layer(x)
            elif self._fused_act is not None:
                x = layer(x, self._fused_act)
            else:
                x = self.act(layer(x))
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def activation_from_name(name: str) -> type[nn.Module]:
    """Map a config activation name ("relu", "gelu") to its module class."""
    table: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[name]
