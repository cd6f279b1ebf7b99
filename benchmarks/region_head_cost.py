"""CPU cost of the teacher's region heads: the thin fc head against the backbone's pretrained last
stage run per region (`--region-head trunk`) and once per image on a dilated stride-16 map
(`--region-head dilated`), one training step (forward + backward) per image.

    .venv/bin/python benchmarks/region_head_cost.py [--backbone efficientnet_lite0]
        [--size 256] [--proposals 300] [--repeats 3] [--threads 1]

Random images and boxes (the cost does not depend on the content); prints seconds per image for
each head and its ratio to fc. With `--threads 1` on a busy machine, compare the CPU seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.models.wsddn import REGION_HEADS, WSDDN  # noqa: E402


def step_seconds(head: str, args: argparse.Namespace) -> tuple[float, float]:
    """(wall, CPU) seconds of one training step on one image, best of `repeats`."""
    torch.manual_seed(0)
    model = WSDDN(20, args.backbone, pretrained=True, region_head=head).train()
    image = torch.rand(1, 3, args.size, args.size)
    corners = torch.rand(args.proposals, 2) * (args.size * 0.7)
    boxes = [torch.cat([corners, corners + 16 + torch.rand(args.proposals, 2) * args.size * 0.3],
                       dim=1)]
    labels = torch.zeros(1, 20)
    labels[0, :2] = 1
    best = (float("inf"), float("inf"))
    for _ in range(args.repeats + 1):                  # the first is a warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        model(image, boxes, labels=labels)["loss"].backward()
        model.zero_grad(set_to_none=True)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--proposals", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {head: step_seconds(head, args) for head in REGION_HEADS}
    for head, (wall, cpu) in figures.items():
        print(f"{args.backbone} {head:7s} head: {wall:.2f} s wall, {cpu:.2f} s CPU per image "
              f"({args.size} px, {args.proposals} proposals), "
              f"{cpu / figures['fc'][1]:.1f}x the fc head's CPU")


if __name__ == "__main__":
    main()
