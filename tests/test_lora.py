"""LoRA 的课程结论: 第 0 步等于底座, merge 等于不 merge, 只有 lora_A/lora_B 得到梯度, 适配器可存取、可切换。"""
import copy

import pytest
import torch
import torch.nn as nn

from lora import (LoRALinear, apply_lora, base_fingerprint, count_parameters, load_lora_state_dict,
                  lora_param_arithmetic, lora_state_dict, merge_lora, merged_state_dict, unmerge_lora)
from model import GPT, get_config

ALL_KINDS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(seed=0):
    torch.manual_seed(seed)
    return GPT(get_config("tiny", vocab_size=64)).eval()


def randomize_lora_B(model, seed):
    # 假装训练过: B 不再是零, 旁路才有作用
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.05)


@pytest.fixture
def ids():
    return torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))


def test_layer_formula():
    # y = Wx + b + (alpha/r)·B(Ax); A 随机非零, B 从零开始
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=6, dropout=0.0)
    assert layer.scaling == 3.0 and layer.lora_A.weight.abs().min() > 0 and not layer.lora_B.weight.any()
    assert not base.weight.requires_grad and layer.lora_A.weight.shape == (2, 6) and layer.lora_B.weight.shape == (5, 2)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 4, 6)  # (B, T, n)
    A, B = layer.lora_A.weight, layer.lora_B.weight
    assert torch.allclose(layer(x), base(x) + 3.0 * x @ A.T @ B.T, atol=1e-5)


def test_step0_equals_base(ids):
    base = make_model()
    model = copy.deepcopy(base)
    apply_lora(model, "q_proj,v_proj", r=4, alpha=8, dropout=0.1)
    assert not model.layers[0].self_attn.q_proj.training  # 跟随模型的 eval 模式
    ref = base(ids)[0]
    assert torch.equal(model(ids)[0], ref)  # B = 0, 逐位相等
    model.train()  # dropout 只作用在旁路上, 旁路为零时也不改变输出
    assert torch.equal(model(ids)[0], ref)


def test_merge_equals_unmerged_and_unmerge_restores(ids):
    model = make_model()
    w0 = model.layers[0].self_attn.q_proj.weight.clone()
    apply_lora(model, "all-linear", r=4)
    randomize_lora_B(model, seed=0)
    y = model(ids)[0]
    assert not torch.allclose(y, make_model()(ids)[0], atol=1e-3)  # 旁路真的改变了输出
    merge_lora(model)
    merge_lora(model)  # 第二次 merge 不能再加一遍
    assert torch.allclose(model(ids)[0], y, atol=1e-5)
    assert not torch.equal(model.layers[0].self_attn.q_proj.base_layer.weight, w0)
    unmerge_lora(model)
    assert torch.equal(model.layers[0].self_attn.q_proj.base_layer.weight, w0)
    assert torch.allclose(model(ids)[0], y, atol=1e-6)


def test_merged_state_dict_loads_into_plain_model(ids):
    model = make_model()
    apply_lora(model, "q_proj,v_proj,down_proj", r=4)
    randomize_lora_B(model, seed=0)
    plain = make_model(seed=123)
    w0 = model.layers[0].self_attn.q_proj.base_layer.weight.clone()
    sd = merged_state_dict(model)
    assert torch.equal(model.layers[0].self_attn.q_proj.base_layer.weight, w0)  # model 本身不变
    assert sd["lm_head.weight"].data_ptr() == sd["embed_tokens.weight"].data_ptr()  # 共享的权重仍共享: 存盘时只占一份
    plain.load_state_dict(sd)
    assert torch.allclose(plain(ids)[0], model(ids)[0], atol=1e-5)


def test_merged_state_dict_of_a_merged_model_is_a_copy():
    # 已经 merge 过的模型: 结果和没 merge 时逐位相同, 而且之后 unmerge 也不会改动已经拿到手的 state_dict
    model = make_model()
    apply_lora(model, "q_proj,v_proj", r=4)
    randomize_lora_B(model, seed=0)
    expected = merged_state_dict(model)
    merge_lora(model)
    sd = merged_state_dict(model)
    unmerge_lora(model)
    for name in ("layers.0.self_attn.q_proj.weight", "layers.1.self_attn.v_proj.weight"):
        assert torch.equal(sd[name], expected[name])


def test_only_lora_params_train_and_get_grads(ids):
    model = make_model()
    apply_lora(model, ["q_proj", "v_proj"], r=4)
    randomize_lora_B(model, seed=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A.weight", ".lora_B.weight")) for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 层 x (q, v) x (A, B)
    model.train()
    model(ids, labels=ids)[1].backward()
    for n, p in model.named_parameters():
        if n in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_adapter_save_load_round_trip(ids, tmp_path):
    model = make_model()
    apply_lora(model, "q_proj,v_proj", r=4)
    randomize_lora_B(model, seed=0)
    torch.save(lora_state_dict(model), tmp_path / "adapter.pt")
    fresh = make_model()
    apply_lora(fresh, "q_proj,v_proj", r=4)
    load_lora_state_dict(fresh, torch.load(tmp_path / "adapter.pt", weights_only=True))
    assert torch.equal(fresh(ids)[0], model(ids)[0])


def test_switch_adapters_without_reloading_base(ids):
    model = make_model()
    apply_lora(model, "q_proj,v_proj", r=4)
    randomize_lora_B(model, seed=1)
    first, y1 = lora_state_dict(model), model(ids)[0]
    randomize_lora_B(model, seed=2)
    second, y2 = lora_state_dict(model), model(ids)[0]
    assert not torch.allclose(y1, y2, atol=1e-3)
    load_lora_state_dict(model, first)
    assert torch.equal(model(ids)[0], y1)
    merge_lora(model)  # 合并状态下换适配器: 旧的旁路不能残留在 W 里
    load_lora_state_dict(model, second)
    assert torch.allclose(model(ids)[0], y2, atol=1e-5)


def test_load_errors():
    model = make_model()
    apply_lora(model, "q_proj,v_proj", r=4)
    other_r = make_model()
    apply_lora(other_r, "q_proj,v_proj", r=8)
    with pytest.raises(SystemExit, match="^错误: .*形状"):
        load_lora_state_dict(model, lora_state_dict(other_r))
    other_targets = make_model()
    apply_lora(other_targets, "q_proj,k_proj", r=4)
    with pytest.raises(SystemExit, match="^错误: .*缺少.*v_proj.*多出.*k_proj"):
        load_lora_state_dict(model, lora_state_dict(other_targets))
    with pytest.raises(SystemExit, match="^错误: 模型里没有 LoRA"):
        load_lora_state_dict(make_model(), lora_state_dict(model))
    not_tensor = {k: "x" for k in lora_state_dict(model)}  # 手改过的适配器文件
    with pytest.raises(SystemExit, match="^错误: 适配器里的 .*lora_A.weight 不是张量 \\(是 str\\)"):
        load_lora_state_dict(model, not_tensor)


@pytest.mark.parametrize("bad", [{"r": 0}, {"alpha": float("nan")}, {"alpha": 0}, {"alpha": float("inf")},
                                 {"dropout": 1.0}, {"dropout": float("nan")}, {"target_modules": " , "}])
def test_bad_lora_settings_are_one_line(bad):
    """不合法的 r / alpha / dropout 在训练开始前就报一行错 (alpha = nan 以前要到第 1 步才以 "loss 是 nan" 的样子出现)。"""
    kwargs = {"target_modules": "q_proj,v_proj", "r": 4, "alpha": 8, "dropout": 0.1} | bad
    with pytest.raises(SystemExit, match="^错误: LoRA 设置不合法") as e:
        apply_lora(make_model(), **kwargs)
    assert "\n" not in str(e.value)


def test_rank_above_the_narrowest_target_is_one_line():
    """tiny 模型的 v_proj 是 32 -> 16 (GQA): r 最多 16; 更大的 r (例如 --lora_r 1000000000000) 开训前就拒绝, 不去分配内存。"""
    apply_lora(make_model(), "q_proj,v_proj", r=16)
    for r in (17, 10**12):
        with pytest.raises(SystemExit, match=f"^错误: LoRA 的秩 r={r} 超过了目标层 layers.0.self_attn.v_proj .*16") as e:
            apply_lora(make_model(), "q_proj,v_proj", r=r)
        assert "\n" not in str(e.value)


def test_unknown_target_lists_available_names():
    with pytest.raises(SystemExit, match="^错误: .*'qproj'.*可选: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj") as e:
        apply_lora(make_model(), "q_proj,qproj")
    assert "\n" not in str(e.value)
    with pytest.raises(SystemExit, match="^错误: target_modules=all-linear,q_proj: all-linear 已经包含所有线性层"):
        apply_lora(make_model(), "all-linear,q_proj")
    with pytest.raises(SystemExit, match="lm_head"):  # 输出层与 embedding 共享权重, 不可套
        apply_lora(make_model(), "lm_head")
    model = make_model()
    apply_lora(model, "q_proj")
    with pytest.raises(SystemExit, match="已经套过"):
        apply_lora(model, "v_proj")


def test_suffix_match_and_all_linear():
    assert apply_lora(make_model(), "self_attn.q_proj") == ["layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj"]
    model = make_model()
    names = apply_lora(model, "all-linear")
    assert sorted(names) == sorted(f"layers.{i}.{'self_attn' if k[0] in 'qkvo' else 'mlp'}.{k}"
                                   for i in range(2) for k in ALL_KINDS)
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is model.embed_tokens.weight


def test_parameter_count_formula():
    model = make_model()
    total_before = count_parameters(model)[1]
    names = apply_lora(model, "q_proj,down_proj", r=4)
    layer = model.layers[0].mlp.down_proj
    n, m = layer.base_layer.in_features, layer.base_layer.out_features
    assert lora_param_arithmetic(layer, r=4) == (n * m, (n + m) * 4)
    expected = sum(lora_param_arithmetic(model.get_submodule(name), r=4)[1] for name in names)
    trainable, total = count_parameters(model)
    assert trainable == expected == 2 * ((32 + 32) * 4 + (64 + 32) * 4)
    assert total == total_before + trainable


def test_fingerprint_stable_across_apply_merge_unmerge():
    model = make_model()
    fp = base_fingerprint(model)
    assert len(fp) == 16 and fp == base_fingerprint(make_model())
    apply_lora(model, "all-linear", r=4)
    assert base_fingerprint(model) == fp
    randomize_lora_B(model, seed=0)
    merge_lora(model)
    assert base_fingerprint(model) == fp
    unmerge_lora(model)
    assert base_fingerprint(model) == fp
    assert base_fingerprint(make_model(seed=1)) != fp
