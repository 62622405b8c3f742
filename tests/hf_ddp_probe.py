"""A tiny PrivateTrainer run under torchrun (gloo, CPU); rank 0 prints one JSON line (test_hf)."""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
import hf_tiny  # noqa: E402

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--stop-at", type=int)
parser.add_argument("--resume")
a = parser.parse_args()
trainer = hf_tiny.trainer(a.out, stop_at=a.stop_at, ddp_backend="gloo")
trainer.train(resume_from_checkpoint=a.resume)
params = hf_tiny.trainable(trainer)
digest = hashlib.sha256(b"".join(params[k].numpy().tobytes() for k in sorted(params))).hexdigest()
gathered = [None] * dist.get_world_size()
dist.all_gather_object(gathered, {"records": trainer.step_records, "parameters": digest})
if dist.get_rank() == 0:
    print(json.dumps({"world_size": dist.get_world_size(), "records": [g["records"] for g in gathered],
                      "ranks_equal": len({g["parameters"] for g in gathered}) == 1, "parameters": digest,
                      "history": [list(h) for h in trainer.history], "sigma": trainer.noise_multiplier,
                      "epsilon": trainer.spent()[0]}))
    sys.stdout.flush()
# Tear the process group down before exit: left to the interpreter's exit, gloo's threads were sometimes destroyed
# while joinable ("terminate called without an active exception", rank 0 aborted after its work was done).
dist.barrier()
dist.destroy_process_group()
