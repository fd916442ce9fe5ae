"""Refiner structure derived from the base UNet, checked against the spec's tables."""

from __future__ import annotations

import pytest

from primedepth.model.refiner import PrimeDepthRefiner, largest_divisor_up_to, plan_refiner_steps

# Official spec §6.7 (768x768 table) and §7.1-7.2.
FULL_FEATURES = [2560, 2560, 2560, 2560, 2560, 1920, 1920, 1280, 960, 960, 640, 640]
FULL_ATTENTION_IN = [2820, 0, 0, 2820, 5640, 2820, 4230, 2820, 1410, 2115, 1410, 705]
FULL_ATTENTION_OUT = [1410, 0, 0, 1410, 1410, 1410, 1410, 705, 705, 705, 352, 352]
FULL_MERGED = [2690, 1280, 1280, 2690, 2690, 2370, 2370, 1345, 1185, 1185, 672, 672]
FULL_BLOCK_IN = [2690, 1920, 1920, 3330, 3330, 3010, 3010, 1665, 1505, 1505, 832, 832]
FULL_BLOCK_OUT = [640] * 6 + [320] * 3 + [160] * 3
FULL_INPUT_GROUPS = [10, 32, 32, 30, 30, 14, 14, 15, 7, 7, 32, 32]
# Fixtures README §2.1 / §2.5 (tiny: ratio 0.75).
TINY_ATTENTION_OUT = [211, 0, 0, 211, 211, 211, 211, 211, 211, 211, 105, 105]
TINY_FEATURE_OUT = [96] * 8 + [72, 72, 48, 48]
TINY_BLOCK_IN = [307, 144, 144, 355, 355, 355, 355, 355, 331, 331, 177, 177]
TINY_INPUT_GROUPS = [1, 24, 24, 5, 5, 5, 5, 5, 1, 1, 3, 3]


def full_plan():
    return plan_refiner_steps((320, 640, 1280, 1280), 2, (5, 10, 20, 0), 20, 0.5, 64)


def tiny_plan():
    return plan_refiner_steps((32, 64, 64, 64), 2, (1, 2, 2, 0), 2, 0.75, 32)


def test_full_size_plan_matches_spec_table():
    plan = full_plan()
    assert [p.feature_channels for p in plan] == FULL_FEATURES
    assert [p.attention_channels for p in plan] == FULL_ATTENTION_IN
    assert [p.attention_out for p in plan] == FULL_ATTENTION_OUT
    assert [p.merged_channels for p in plan] == FULL_MERGED
    assert [p.block_in for p in plan] == FULL_BLOCK_IN
    assert [p.block_out for p in plan] == FULL_BLOCK_OUT
    assert [largest_divisor_up_to(p.block_in, 32) for p in plan] == FULL_INPUT_GROUPS
    assert [p.upsample for p in plan] == [i in (2, 5, 8) for i in range(12)]
    assert [(p.transformer_heads, p.transformer_head_dim) for p in plan] == (
        [(0, 0)] * 3 + [(10, 64)] * 3 + [(5, 64)] * 3 + [(4, 40)] * 3
    )


def test_tiny_plan_matches_fixture_readme():
    plan = tiny_plan()
    assert [p.attention_out for p in plan] == TINY_ATTENTION_OUT
    assert [p.feature_out for p in plan] == TINY_FEATURE_OUT
    assert [p.block_in for p in plan] == TINY_BLOCK_IN
    assert [largest_divisor_up_to(p.block_in, 32) for p in plan] == TINY_INPUT_GROUPS
    assert [(p.transformer_heads, p.transformer_head_dim) for p in plan][3:] == [(2, 24)] * 6 + [(1, 24)] * 3


def test_refiner_modules_follow_the_plan_and_official_epsilons():
    refiner = PrimeDepthRefiner(
        base_block_out_channels=(32, 64, 64, 64), base_attention_heads=(1, 2, 2, 0), base_mid_attention_heads=2,
        refiner_ratio=0.75, max_head_dim=32, cross_attention_dim=32, temb_channels=128, out_channels=64,
    )
    assert sorted(int(k) for k in refiner.attention_convs) == [0, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    for plan, block in zip(refiner.plans, refiner.blocks):
        assert block.resnet.norm1.num_groups == largest_divisor_up_to(plan.block_in, 32)
        assert block.resnet.norm1.eps == block.resnet.norm2.eps == 1e-5
        if block.transformer is not None:
            assert block.transformer.norm.eps == 1e-6
    assert refiner.norm_out.eps == 1e-5 and refiner.conv_out.out_channels == 64


@pytest.mark.parametrize("value,limit,expected", [(2690, 32, 10), (160, 64, 40), (48, 32, 24), (307, 32, 1), (640, 64, 64)])
def test_largest_divisor(value, limit, expected):
    assert largest_divisor_up_to(value, limit) == expected
