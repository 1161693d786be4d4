"""``bench.filebacked.file_back``: a model's weights moved into file-backed memory compute the same, stay
tied where they were tied, and live in a mapped (unlinked) file, not in anonymous memory."""

from __future__ import annotations

import torch

from bench.filebacked import file_back, modules_of


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight  # tied, as OPT's lm_head is
        self.norm = torch.nn.LayerNorm(16).to(torch.float32)
        self.proj = torch.nn.Linear(16, 16).to(torch.bfloat16)

    def forward(self, ids):
        x = self.norm(self.embed(ids))
        return self.head(self.proj(x.to(torch.bfloat16)).float())


def _mapped_weight_files() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if ".weights (deleted)" in line]


def test_file_backed_weights_compute_the_same_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    model, ids = Tied(), torch.tensor([[1, 2, 3]])
    before = model(ids)
    maps_before = len(_mapped_weight_files())
    moved = file_back(model, tmp_path)
    assert moved == sum(p.numel() * p.element_size() for p in model.parameters())  # the tied one counted once
    assert torch.equal(model(ids), before)
    assert model.head.weight is model.embed.weight
    assert len(_mapped_weight_files()) == maps_before + 2  # one map per dtype (fp32, bf16), files unlinked
    assert not list(tmp_path.iterdir())


def test_a_pipeline_is_its_components():
    class Pipe:
        components = {"unet": torch.nn.Linear(2, 2), "scheduler": object(), "vae": None}

    assert len(modules_of(Pipe())) == 1 and len(modules_of(torch.nn.Linear(2, 2))) == 1
