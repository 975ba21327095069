"""model.py 的测试: 课程对模型的几条关键说法, 每条一个测试。全部用 tiny 预设, CPU 上几秒跑完。"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import GPT, PRESETS, get_config, pick_device


def make_model(**overrides):
    torch.manual_seed(0)
    return GPT(get_config("tiny", **overrides)).eval()


def make_lively_model(**overrides):
    """生成测试用的模型: 刚初始化的 tiny 模型 (std 0.02) 贪心生成时只会重复提示的最后一个 token, 位置、缓存、窗口算错了
    也看不出来。把矩阵放大到 std 0.3, 输出才取决于整段上下文。"""
    model = make_model(**overrides)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


def random_ids(model, B=2, T=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (B, T), generator=g)


def test_module_names_match_hf_llama():
    model = make_model()
    expected = {"embed_tokens.weight", "norm.weight", "lm_head.weight"}
    for i in range(model.config.n_layer):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            expected.add(f"layers.{i}.self_attn.{name}.weight")
        for name in ("gate_proj", "up_proj", "down_proj"):
            expected.add(f"layers.{i}.mlp.{name}.weight")
        expected.add(f"layers.{i}.input_layernorm.weight")
        expected.add(f"layers.{i}.post_attention_layernorm.weight")
    # RoPE 的 cos/sin 是算出来的, 不进 state_dict
    assert set(model.state_dict()) == expected
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))


def test_tied_embeddings_counted_once():
    model = make_model()
    assert model.lm_head.weight is model.embed_tokens.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(unique.values())
    assert model.num_params(exclude_embedding=True) == model.num_params() - model.embed_tokens.weight.numel()


def test_presets_build():
    assert set(PRESETS) >= {"tiny", "default", "gpu"}
    with torch.device("meta"):  # 只看形状, 不真的分配 1 亿个参数
        n_default = GPT(get_config("default")).num_params()
        n_gpu = GPT(get_config("gpu")).num_params()
    assert 4e6 < n_default < 8e6 and 80e6 < n_gpu < 130e6
    assert get_config("tiny", vocab_size=123).vocab_size == 123
    with pytest.raises(SystemExit, match="错误: 未知的模型预设"):
        get_config("huge")
    for bad in ({"n_layer": 0}, {"n_embd": 0}, {"n_embd": 30}, {"n_kv_head": 3}):  # 30/4 不整除; 4 个头分不成 3 组
        with pytest.raises(SystemExit, match="错误: 模型形状不合法"):
            get_config("tiny", **bad)


def test_attention_equals_the_hf_llama_formulation():
    """注意力 (RoPE + GQA + 因果 mask) 和照 HF Llama 的写法另写的一遍逐位置相同: rotate_half 用切两半再拼接,
    repeat_kv 用 expand + reshape, softmax(q·kᵀ/√d)·v 手算。权重能原样拷进 LlamaForCausalLM 靠的就是这一点;
    bench.py --compare_hf 也核对, 但它要装 transformers, 这个测试不用。"""
    model = make_lively_model()  # tiny: 4 个 query 头, 2 组 kv (GQA)
    attn, cfg = model.layers[0].self_attn, model.config
    B, T, nh, nkv = 2, 12, cfg.n_head, cfg.n_kv_head
    hd = cfg.n_embd // nh
    x = torch.randn(B, T, cfg.n_embd, generator=torch.Generator().manual_seed(2))

    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd)
    emb = torch.cat([torch.outer(torch.arange(T).float(), inv_freq)] * 2, dim=-1)  # (T, hd)

    def rotate_half(t):
        return torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], dim=-1)

    def repeat_kv(t):  # (B, nkv, T, hd) -> (B, nh, T, hd): 每组 kv 连着给 nh/nkv 个 query 头
        return t[:, :, None].expand(B, nkv, nh // nkv, T, hd).reshape(B, nh, T, hd)

    with torch.no_grad():
        q = attn.q_proj(x).view(B, T, nh, hd).transpose(1, 2)
        k = attn.k_proj(x).view(B, T, nkv, hd).transpose(1, 2)
        v = attn.v_proj(x).view(B, T, nkv, hd).transpose(1, 2)
        q, k = (t * emb.cos() + rotate_half(t) * emb.sin() for t in (q, k))
        scores = q @ repeat_kv(k).transpose(-1, -2) / hd ** 0.5  # (B, nh, T, T)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (scores.softmax(-1) @ repeat_kv(v)).transpose(1, 2).reshape(B, T, nh * hd)
        expected = attn.o_proj(y)
        got = attn(x, model.rope_cos[:T], model.rope_sin[:T])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_head", [4, 2])  # 4: 普通多头注意力; 2: GQA
def test_kv_cache_matches_full_forward(n_kv_head):
    model = make_model(n_kv_head=n_kv_head)
    ids = random_ids(model, B=2, T=24)
    with torch.no_grad():
        full, _ = model(ids)  # (B, T, V)
        cache = model.init_kv_cache(batch_size=2)
        # 先 prefill 10 个, 再接一段 6 个 (走带 mask 的分支), 最后一个一个解码
        parts = [model(ids[:, :10], kv_cache=cache, start_pos=0)[0],
                 model(ids[:, 10:16], kv_cache=cache, start_pos=10)[0]]
        parts += [model(ids[:, t:t + 1], kv_cache=cache, start_pos=t)[0] for t in range(16, 24)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


def test_loss_ignores_minus_100():
    model = make_model()
    ids = random_ids(model)
    labels = ids.clone()
    labels[0, :8] = -100
    labels[1, 5:12] = -100
    logits, loss = model(ids, labels)
    with torch.no_grad():
        full, _ = model(ids)
    # 手算: 位置 t 预测 labels[t+1], 只数不是 -100 的那些
    pred, target = full[:, :-1].reshape(-1, full.size(-1)), labels[:, 1:].reshape(-1)
    keep = target != -100
    expected = F.cross_entropy(pred[keep], target[keep])
    torch.testing.assert_close(loss, expected)
    assert logits.shape == (int(keep.sum()), model.config.vocab_size)  # 只返回算 loss 的位置


def test_label_shift_predicts_from_previous_position():
    # 只有 labels[0, 5] 有效: 它应该由位置 4 的输出来预测
    model = make_model()
    ids = random_ids(model, B=1, T=10)
    labels = torch.full_like(ids, -100)
    labels[0, 5] = 7
    _, loss = model(ids, labels)
    with torch.no_grad():
        full, _ = model(ids)
    expected = -full[0, 4].log_softmax(-1)[7]
    torch.testing.assert_close(loss, expected)


def test_all_masked_gives_zero_loss_and_zero_grads():
    model = make_model().train()
    ids = random_ids(model)
    logits, loss = model(ids, torch.full_like(ids, -100))
    assert logits.shape == (0, model.config.vocab_size)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.all(p.grad == 0), name


def test_q_proj_can_be_wrapped_like_lora():
    # LoRA 会把 q_proj 换成一个包装模块: 注意力必须通过 self.q_proj(x) 调用它, 而不是直接读 .weight
    class Wrapper(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base_layer = base
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.base_layer(x) * 2

    model = make_model()
    ids = random_ids(model)
    with torch.no_grad():
        before, _ = model(ids)
        wrapper = Wrapper(model.layers[0].self_attn.q_proj)
        model.layers[0].self_attn.q_proj = wrapper
        after, _ = model(ids)
    assert wrapper.calls == 1 and not torch.allclose(before, after)


def greedy_by_full_forward(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generate_equals_argmax_and_is_deterministic(use_cache):
    model = make_lively_model()
    prompt = [5, 17, 42, 8]
    out = list(model.generate(prompt, max_new_tokens=12, temperature=0, use_cache=use_cache))
    assert out == greedy_by_full_forward(model, prompt, 12)
    assert out == list(model.generate(prompt, max_new_tokens=12, temperature=0, use_cache=use_cache))


def test_top_k_1_equals_greedy_and_seed_reproduces():
    model = make_lively_model()
    prompt = [3, 1, 4, 1, 5]
    greedy = list(model.generate(prompt, max_new_tokens=10, temperature=0))
    assert list(model.generate(prompt, max_new_tokens=10, temperature=1.0, top_k=1, seed=123)) == greedy
    # top_p 很小时只剩概率最大的那个 token, 也等于贪心
    assert list(model.generate(prompt, max_new_tokens=10, temperature=1.0, top_p=1e-6, seed=5)) == greedy
    a = list(model.generate(prompt, max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9, seed=7))
    assert a == list(model.generate(prompt, max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9, seed=7))
    assert len(a) == 10 and all(0 <= t < model.config.vocab_size for t in a)


def test_top_k_below_one_is_a_clear_error():
    model = make_model()
    with pytest.raises(ValueError, match="top_k 要 >= 1"):
        next(model.generate([1, 2], max_new_tokens=3, top_k=0))


def test_top_p_keeps_the_shortest_prefix_that_reaches_it():
    """概率 0.5/0.25/0.25, top_p=0.5: 第一名的累计已经到了 0.5, 后面的都不留 (恰好等于也算到了); 0.75 才留前两名。"""
    from model import sample_next
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    gen = torch.Generator().manual_seed(0)
    picks = lambda top_p: {sample_next(logits, 1.0, None, top_p, gen).item() for _ in range(300)}
    assert picks(0.5) == {0}
    assert picks(0.75) == {0, 1}
    assert picks(0.0) == {0}  # 直接调用时给了 0 也总留下第一名, 不会抽到概率最小的那个


def test_generate_stops_after_eos():
    model = make_lively_model()
    prompt = [9, 2, 6]
    free = list(model.generate(prompt, max_new_tokens=10, temperature=0))
    eos = free[3]
    out = list(model.generate(prompt, max_new_tokens=10, temperature=0, eos_id=eos))
    assert out == free[:free.index(eos) + 1]  # 结束符本身也 yield 出来, 然后停止


@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_greedy_batch_equals_generate_row_by_row(n_kv_head):
    """一样长的几条提示一起解码, 每一行和单独用 generate 贪心解码一样; 一行说出结束 token 就停, 别的行不受影响。"""
    model = make_lively_model(n_kv_head=n_kv_head)
    prompts = random_ids(model, B=5, T=7, seed=3).tolist()
    free = [list(model.generate(p, max_new_tokens=12, temperature=0)) for p in prompts]
    assert len({t for f in free for t in f}) > 12 and len({tuple(f) for f in free}) == 5  # 测试本身有区分力
    assert model.greedy_batch(prompts, 12, set()) == [(f, None) for f in free]
    # 第 0 行第一次出现在第 3 个以后的 token 当结束符: 那一行在它那里停下, 别的行说到它才停 (或者一直说到上限)
    stop = next(t for k, t in enumerate(free[0]) if k >= 2 and free[0].index(t) == k)
    expected = [(f[:f.index(stop)], stop) if stop in f else (f, None) for f in free]
    assert expected[0][0] and any(e[1] is None or len(e[0]) != len(expected[0][0]) for e in expected[1:])
    assert model.greedy_batch(prompts, 12, {stop}) == expected
    # 刚好放得下 (提示 7 + 58 个新 token - 1 = 64 = max_seq_len); 再多一个就不行 (greedy_batch 不滑动窗口)
    assert model.greedy_batch(prompts[:2], 58, set()) == [(list(model.generate(p, 58, temperature=0)), None) for p in prompts[:2]]
    with pytest.raises(ValueError):
        model.greedy_batch(prompts[:2], 59, set())
    with pytest.raises(ValueError):
        model.greedy_batch([prompts[0], prompts[1][:-1]], 4, set())


def test_generate_past_max_seq_len_cache_equals_no_cache():
    # 提示 + 生成超过 max_seq_len (64): 两条路径按同样的规则截断窗口, 输出应一致
    model = make_lively_model()
    prompt = random_ids(model, B=1, T=80)[0].tolist()
    with_cache = list(model.generate(prompt, max_new_tokens=60, temperature=0, use_cache=True))
    without = list(model.generate(prompt, max_new_tokens=60, temperature=0, use_cache=False))
    assert len(with_cache) == 60 and with_cache == without


def test_generate_with_a_one_token_window():
    # max_seq_len=1: 窗口满了只留最后 1 个 token (L // 2 是 0, 曾经切出整个列表, 下一步就超长报错)
    model = make_lively_model(max_seq_len=1)
    with_cache = list(model.generate([3, 4], max_new_tokens=5, temperature=0, use_cache=True))
    assert len(with_cache) == 5 and with_cache == list(model.generate([3, 4], max_new_tokens=5, temperature=0, use_cache=False))


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(SystemExit, match="错误: 不认识的设备"):
        pick_device("tpu")


@pytest.mark.parametrize("name, pattern", [
    ("cpu:abc", "设备写法不对 'cpu:abc' .*可选: auto, cpu, cuda, cuda:N"),
    ("cuda:x", "设备写法不对 'cuda:x'"),
    ("cuda:-1", "设备写法不对"),
    ("cuda:1", "没有编号 1 的 GPU .*只有 1 块。用 cuda:0 到 cuda:0"),
])
def test_malformed_device_string_is_one_line_error(monkeypatch, name, pattern):
    """torch.device("cpu:abc") 抛 RuntimeError (Invalid device string), 不存在的 GPU 编号要到用时才出错: 都是一行说明。
    假装有一块 GPU, 没有 CUDA 的机器上也能测 cuda:N 的检查。"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(SystemExit, match="^错误: " + pattern) as exc:
        pick_device(name)
    assert "\n" not in str(exc.value.code)


@pytest.mark.skipif(torch.cuda.is_available(), reason="这台机器有 CUDA")
def test_pick_device_cuda_without_cuda_is_one_line_error():
    with pytest.raises(SystemExit, match="错误: .*CUDA") as exc:
        pick_device("cuda")
    assert "\n" not in str(exc.value.code)


@pytest.mark.parametrize("overrides, pattern", [
    ({"vocab_size": -5}, "模型尺寸必须 >= 1, 收到 vocab_size=-5"),
    ({"intermediate_size": 0, "max_seq_len": 0}, "模型尺寸必须 >= 1, 收到 intermediate_size=0, max_seq_len=0"),
    ({"n_embd": 10**14}, "模型太大, 内存放不下"),  # 128 PB 的 embedding: 比地址空间还大, 分配立刻失败
    ({"dropout": 2.0}, "dropout 要在 \\[0, 1\\) 内, 收到 2.0"),  # 手改过的 checkpoint 配置: 否则第一次 forward 才报错
])
def test_bad_model_sizes_are_one_line_errors(overrides, pattern):
    """python model.py --vocab_size -5、pretrain.py --n_embd 1000000000: 一行说明, 不是 torch 的 traceback。"""
    with pytest.raises(SystemExit, match="^错误: " + pattern) as exc:
        GPT(get_config("tiny", **overrides))
    assert "\n" not in str(exc.value.code)


def test_sequence_longer_than_max_seq_len_is_one_line_error():
    model = make_model()
    with pytest.raises(SystemExit, match="错误: 序列长度 65 超过了模型的 max_seq_len=64"):
        model(torch.zeros(1, 65, dtype=torch.long))
