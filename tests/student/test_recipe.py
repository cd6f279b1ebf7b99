"""The fine-tuning recipe's switches: the defaults are the recommended recipe (pretrained
EfficientNet-Lite0, trained BatchNorm in the teacher), the command line sets each switch, the backbone
learns at its own rate, and the teacher's BatchNorm statistics stay fixed while it trains."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from engine.cli import train as train_cli
from engine.errors import UserError
from engine.training.api import TrainConfig
from engine.training.common import freeze_batchnorm, param_groups
from engine.training.student_options import sized_for, student_options


def parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    return train_cli.config_from_args(parser.parse_args(["train", *argv]))


def test_only_epochs_and_sizes_give_the_recommended_recipe():
    config = parse("--stage", "all", "--epochs", "3", "--image-size", "256",
                   "--student-image-size", "160")
    options = student_options(config)
    assert config.pretrained and not config.frozen_bn and config.region_head == "dilated"
    assert config.loss == "asl" and config.kd == "auto"
    assert config.backbone == config.student_backbone == "efficientnet_lite0"
    assert config.batch_size is None and config.lr is None      # sized for the training set
    assert (options.batch_size, options.epochs) == (4, 3)


def test_the_students_batch_grows_with_the_training_set_and_its_rate_with_the_batch():
    """Open batch and rate: about 32 steps an epoch, from --batch-size up to 32; 2e-3 at 32,
    scaled by the square root of the batch. What the person gives is kept."""
    config = parse()
    big, small = student_options(sized_for(config, 1120)), student_options(sized_for(config, 168))
    assert (big.batch_size, big.lr) == (32, pytest.approx(2e-3))
    assert (small.batch_size, small.lr) == (5, pytest.approx(2e-3 * (5 / 32) ** 0.5))
    assert student_options(sized_for(config, 40)).batch_size == 4            # --batch-size floor
    assert student_options(sized_for(config, 100_000)).batch_size == 32
    assert student_options(sized_for(parse("--batch-size", "64"), 1120)).batch_size == 64
    given = student_options(sized_for(parse("--student-batch-size", "8", "--student-lr", "1e-4"),
                                      1120))
    assert (given.batch_size, given.lr) == (8, pytest.approx(1e-4))


def test_the_teachers_batch_grows_with_the_training_set_and_its_rate_with_the_batch():
    """Open batch and rate: one image per 32 training images, 4 to 16; 1e-3 at batch 4 scaled
    by the square root of the batch (2e-3 at 16). What the person gives is kept."""
    from engine.training import teacher

    def sized(train_images: int, *argv: str) -> tuple[int, float]:
        config = teacher.sized_for(parse(*argv), train_images)
        return config.batch_size, config.lr

    assert sized(1120) == (16, pytest.approx(2e-3))
    assert sized(168) == (5, pytest.approx(1e-3 * (5 / 4) ** 0.5))
    assert sized(40) == (4, pytest.approx(1e-3))
    assert sized(1120, "--batch-size", "8", "--lr", "5e-4") == (8, pytest.approx(5e-4))


def test_the_student_takes_more_views_where_they_cost_only_decoding():
    """8 views without distillation or with the teacher in the step; 2 where each view's
    targets are computed once and cached on disk (distillation on the CPU); a given number kept."""
    def views(*argv: str, device: str = "cpu") -> int:
        return student_options(sized_for(parse(*argv), 1120, device)).views

    assert views("--kd", "none") == 8
    assert views("--kd", "feature") == 2
    assert views("--kd", "feature", device="cuda") == 8
    assert views("--kd", "feature", "--views", "4") == 4


def test_each_switch_reaches_the_config():
    config = parse("--no-pretrained", "--lr", "1e-3", "--backbone-lr-mult", "0.1", "--frozen-bn",
                   "--student-batch-size", "8", "--loss", "bce", "--grad-accum", "2",
                   "--region-head", "trunk", "--ema-decay", "0.998", "--distil-pairs", "all",
                   "--feature-weight", "0.5")
    assert not config.pretrained and config.frozen_bn and config.region_head == "trunk"
    assert config.backbone_lr == pytest.approx(1e-4)
    assert student_options(config).batch_size == 8 and config.loss == "bce"
    assert student_options(config).ema_decay == pytest.approx(0.998)
    assert student_options(config).distil_pairs == "all"
    assert student_options(config).feature_weight == pytest.approx(0.5)
    assert student_options(parse()).feature_weight == pytest.approx(0.1)
    with pytest.raises(UserError, match="feature-distillation weight must be 0 or more"):
        parse("--feature-weight", "-1")
    assert student_options(parse()).distil_pairs == "unknown"
    with pytest.raises(UserError, match="multiplier"):
        TrainConfig(backbone_lr_mult=0)


def test_the_backbone_learns_at_its_own_rate():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    plain = param_groups(model, 5e-4)
    assert len(plain) == 2 and all("lr" not in g for g in plain)
    groups = param_groups(model, 5e-4, backbone=model[:2], backbone_lr=1e-4)
    trunk = {id(p) for p in model[:2].parameters()}
    for group in groups:
        inside = {id(p) in trunk for p in group["params"]}
        assert len(inside) == 1                          # no group mixes trunk and heads
        assert group.get("lr") == (1e-4 if inside == {True} else None)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_frozen_batchnorm_keeps_the_running_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model.train()
    freeze_batchnorm(model)
    before = model[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8) * 5 + 3)
    assert torch.equal(model[1].running_mean, before) and model[0].training
    model.train()
    model(torch.randn(2, 3, 8, 8) * 5 + 3)
    assert not torch.equal(model[1].running_mean, before)


def test_a_run_begun_before_sizing_resumes_with_the_batch_it_began_with():
    """A checkpoint whose stored settings leave batch, rate and views open (a run begun before
    they were sized for the training set) resumes with the ones its options recorded."""
    from types import SimpleNamespace

    from engine.training.student import _as_begun

    begun = SimpleNamespace(checkpoint={"meta": {"options": {"batch_size": 4, "lr": 1e-3,
                                                             "views": 2}}})
    resumed = student_options(sized_for(_as_begun(parse(), begun), 1120))
    assert (resumed.batch_size, resumed.lr, resumed.views) == (4, pytest.approx(1e-3), 2)
    fresh = student_options(sized_for(_as_begun(parse("--kd", "none"),
                                                SimpleNamespace(checkpoint=None)), 1120))
    assert (fresh.batch_size, fresh.views) == (32, 8)
