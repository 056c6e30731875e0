"""Makes tests/fixtures/tiny_mlp.pt: a TorchScript 64→16→10 MLP for digits-shaped input [1, 8, 8], and
tests/fixtures/tiny_mlp.json: reference inputs and the logits PyTorch computes for them.

The weights are PyTorch's default initialisation under seed 0 (an untrained model): the tests compare logits, not
accuracy. Run through scripts/make-torchscript-fixture.sh, which sets up a torch 2.11 environment on a machine
without CUDA.
"""

import json
import pathlib
import sys

import torch
from torch import nn

OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")


class TinyMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x.flatten(1))))


def main() -> None:
    torch.manual_seed(0)
    module = torch.jit.script(TinyMlp().eval())
    OUT.mkdir(parents=True, exist_ok=True)
    module.save(str(OUT / "tiny_mlp.pt"))

    # Three deterministic inputs in [0, 1], like the digits anbiq loads (pixels / 16).
    inputs = (torch.arange(3 * 64, dtype=torch.float32).reshape(3, 1, 8, 8) * 0.37).sin().abs()
    with torch.no_grad():
        logits = module(inputs)
    reference = {
        "torch": torch.__version__,
        "input_shape": [1, 8, 8],
        "classes": 10,
        "parameters": sum(p.numel() for p in module.parameters()),
        "inputs": inputs.flatten().tolist(),
        "logits": logits.flatten().tolist(),
    }
    (OUT / "tiny_mlp.json").write_text(json.dumps(reference, indent=1) + "\n")
    print("logits:", logits)


if __name__ == "__main__":
    main()
