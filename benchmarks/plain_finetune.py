"""The baseline a user would pick instead of mlic: a plain fine-tuning loop of a pretrained backbone.

    plain_finetune(store, backbone="efficientnet_lite0", size=160, epochs=6, seed=0) -> mAP

The backbone's whole trunk (stride 32, `engine.models.backbones`, ImageNet weights), global average
pooling and one linear layer, trained on the project's split 'train' with the textbook recipe:
AdamW at 2e-3 with a one-cycle schedule, batch 32, random resized crops (35-100 % of the area,
aspect 3/4-4/3) and horizontal flips drawn afresh every epoch, BCE. Evaluated on split 'test'
with the whole image stretched to the square (as `mlic tag` prepares it), mAP through
`engine.metrics`. Used by benchmarks/photos.py; runnable alone on a project:

    .venv/bin/python benchmarks/plain_finetune.py PROJECT_DIR [--size 160] [--epochs 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from engine.datasets.student import student_input  # noqa: E402
from engine.images import load_rgb  # noqa: E402
from engine.metrics import mean_average_precision  # noqa: E402
from engine.models.backbones import build_backbone  # noqa: E402

LR = 2e-3
BATCH = 32
WEIGHT_DECAY = 1e-4
CROP_SCALE = (0.35, 1.0)


class PlainClassifier(nn.Module):
    """Backbone trunk -> global average pooling -> linear."""

    def __init__(self, backbone: str, classes: int) -> None:
        super().__init__()
        spec = build_backbone(backbone, pretrained=True, stride=32)
        self.trunk = spec.module
        self.head = nn.Linear(spec.out_channels, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.trunk(images), 1), 1))


def _decoded(paths: list[Path], longest: int) -> list[torch.Tensor]:
    """Every image decoded once (uint8 (3, H, W), longest side at most `longest`)."""
    out = []
    for path in paths:
        image = load_rgb(path, max_side=longest)
        out.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
    return out


def _evaluate(model: nn.Module, paths: list[Path], labels: np.ndarray, size: int) -> float:
    model.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(paths), BATCH):
            batch = torch.stack([student_input(load_rgb(p), size)
                                 for p in paths[start:start + BATCH]]).float() / 255
            scores.append(torch.sigmoid(model(batch)).numpy())
    return float(mean_average_precision(np.concatenate(scores), labels))


def plain_finetune(store, backbone: str = "efficientnet_lite0", size: int = 160,  # noqa: ANN001
                   epochs: int = 6, seed: int = 0) -> float:
    """Train the plain classifier on split 'train' of `store`; its test-split mAP."""
    torch.manual_seed(seed)
    train, test = store.tags.label_matrix("train"), store.tags.label_matrix("test")
    images = _decoded(train.paths, 2 * size)
    targets = torch.from_numpy(train.labels)
    model = PlainClassifier(backbone, targets.shape[1])
    augment = v2.Compose([v2.RandomResizedCrop((size, size), scale=CROP_SCALE, antialias=True),
                          v2.RandomHorizontalFlip()])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = epochs * -(-len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), BATCH):
            index = order[start:start + BATCH]
            batch = torch.stack([augment(images[i]) for i in index.tolist()]).float() / 255
            loss = F.binary_cross_entropy_with_logits(model(batch), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return _evaluate(model, test.paths, test.labels, size)


def main() -> None:
    from engine.store import Store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = Store.open(args.project)
    try:
        figure = plain_finetune(store, args.backbone, args.size, args.epochs, args.seed)
    finally:
        store.close()
    print(f"plain fine-tuned {args.backbone}: test mAP {100 * figure:.1f}")


if __name__ == "__main__":
    main()
