"""Run under ``torchrun --nproc_per_node 2``: measures the noise of one distributed DP-SGD step.

It goes through the fine-tuning module's own private path (``DPDDP`` around
the model, then ``edgeworth.finetune.loop.make_private``), with a loss whose
per-example gradients are all zero, so that the averaged gradient every rank
ends up with is the noise alone, divided by the expected batch size of all
ranks together.  Rank 0 prints one JSON object: the noise's standard
deviation in units of sigma * C (1 if noise is added once per step, sqrt(2)
if once per rank), the largest difference between the ranks' gradients, the
number of coordinates, and the accountant's history.
"""
import json
import sys

import torch
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgeworth.finetune.config import FinetuneConfig
from edgeworth.finetune.loop import Plan, make_private


def main() -> None:
    torch.distributed.init_process_group(backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    torch.manual_seed(1234 + rank)
    sigma, clip, n, batch = 1.3, 0.5, 400, 40
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 37))
    loader = DataLoader(TensorDataset(torch.randn(n, 64), torch.randint(0, 37, (n,))), batch_size=batch)
    config = FinetuneConfig(max_grad_norm=clip)
    plan = Plan(sample_rate=1 / len(loader), planned_steps=1, noise_multiplier=sigma)
    model, optimizer, criterion, loader, private = make_private(
        DPDDP(model), torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(), loader, plan, config)
    x, y = next(iter(loader))
    logits = model(x)
    criterion(logits * 0.0, y).backward()  # every per-example gradient is exactly zero
    optimizer.step()
    grad = torch.cat([p.grad.reshape(-1) for p in optimizer.params])
    gathered = [torch.zeros_like(grad) for _ in range(world)]
    torch.distributed.all_gather(gathered, grad)
    # grad = noise / (expected local batch * world): undo the scaling to see the noise itself.
    noise = grad.double() * optimizer.expected_batch_size * world
    if rank == 0:
        print(json.dumps({
            "std_over_sigma_c": float(noise.std() / (sigma * clip)),
            "rank_difference": max(float((g - gathered[0]).abs().max()) for g in gathered),
            "coordinates": grad.numel(),
            "clipping": private.clipping,
            "history": [list(e) for e in private.engine.accountant.history],
        }))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
