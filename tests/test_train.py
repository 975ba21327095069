"""训练循环、checkpoint 与三个训练脚本的测试 (全部用 tiny 模型, 几秒一个)。

包括: loss 会下降; 中断后续训与不中断的结果一致; checkpoint 往返; weights_only 拒绝带代码的 pickle;
原子写入; NaN 时停下并保留上次的 checkpoint; 每个脚本作为子进程端到端跑一遍, 以及它们的报错路径;
torchrun 两个进程 (gloo) 的 loss 与单进程同样全局 batch 的一致。
"""
import argparse
import csv
import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import data
import trainer
from checkpoint import check_output_path, checkpoint_kind, load_checkpoint, load_model, save_checkpoint, save_model
from cli import run_main
from lora import apply_lora
from model import GPT, get_config
from tokenizer import Tokenizer
from trainer import add_train_args, finish_run, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["小明", "小红", "小刚", "阿花", "大壮", "Tom", "Lucy", "Jack"]


def make_conversations():
    convs = []
    for i, n in enumerate(NAMES):
        for a in range(6):
            convs.append([{"role": "user", "content": f"{n}有几个苹果？"},
                          {"role": "assistant", "content": f"{n}有{(i + a) % 10}个苹果。"}])
    return convs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """一个迷你的 data/ 目录: 分词器、SFT 训练/验证集、预训练文本。"""
    root = tmp_path_factory.mktemp("world")
    d = root / "data"
    d.mkdir()
    (root / "checkpoints").mkdir()
    convs = make_conversations()
    prose = [f"{n}住在北京, 喜欢苹果和香蕉。{n}今年{i + 20}岁。" for i, n in enumerate(NAMES)] * 6
    (d / "pretrain.txt").write_text("\n".join(prose), encoding="utf-8")
    (d / "pretrain_eval.txt").write_text("\n".join(prose[:16]), encoding="utf-8")
    with open(d / "sft_train.jsonl", "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps({"conversations": c}, ensure_ascii=False) + "\n")
    with open(d / "sft_eval.jsonl", "w", encoding="utf-8") as f:
        for c in convs[:8]:
            f.write(json.dumps({"conversations": c, "category": "x", "answer": "1"}, ensure_ascii=False) + "\n")
    tok = Tokenizer.train("\n".join(prose) + json.dumps(convs, ensure_ascii=False), 320)
    tok.save(str(d / "tokenizer.json"))
    return root, tok, convs


def train_args(out, *extra):
    p = argparse.ArgumentParser()
    add_train_args(p, out=str(out))
    return p.parse_args(["--device", "cpu", "--batch_size", "8", "--lr", "3e-3", "--warmup_steps", "2",
                         "--eval_interval", "5", "--seed", "0", *extra])


def tiny_model(tok, seed=0):
    torch.manual_seed(seed)
    return GPT(get_config("tiny", vocab_size=tok.vocab_size))


def run(script, cwd, *args, check=True, timeout=120):
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def run_parallel(cwd, *commands):
    """几条互不相干的脚本调用 (每条是 (脚本, 参数...)) 同时跑, 按顺序返回结果 (不查退出码)。
    每条都要先花一两秒导入 torch, 一条接一条跑, 报错路径的测试就占了整个测试的一大块; 有几个核就同时跑几条。"""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(lambda c: run(c[0], cwd, *c[1:], check=False), commands))


def assert_errors(cwd, cases):
    """cases: [((脚本, 参数...), 错误里应有的话), ...], 同时跑, 每条都是一行错误。返回各条的结果。"""
    results = run_parallel(cwd, *(command for command, _ in cases))
    for r, (_, pattern) in zip(results, cases):
        assert_one_line_error(r, pattern)
    return results


def assert_one_line_error(r, pattern):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert pattern in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("错误")


# ---------------------------------------------------------------- 训练循环

def test_loop_lowers_loss(world, tmp_path):
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    model = tiny_model(tok)
    args = train_args(tmp_path / "m.pt", "--max_steps", "60")
    m = train(model, ds, ds, lambda b: data.collate(b, tok.pad_id), args)
    finish_run(str(tmp_path / "m.pt"))  # 训练脚本存好模型后做的事: 日志和曲线换到正式位置
    rows = list(csv.DictReader(open(m["log"])))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert len(rows) == 60 and last < 0.6 * first
    # 每一步用的学习率就是 lr_at 给的 (日志里保留 3 位有效数字)
    assert [float(r["lr"]) for r in rows] == pytest.approx([trainer.lr_at(s, 60, args) for s in range(60)], rel=5e-3)
    assert os.path.exists(m["loss_png"]) and m["eval_loss"] is not None
    assert m["steps"] == 60 and 0 < 30 * m["step_s"] <= m["train_s"]  # 一半的步不短于中位数, 总用时至少是它的 30 倍


def test_grad_accum_equals_big_batch(world, tmp_path):
    """loss 按整个优化步的 token 数归一化: 2 × 4 的梯度累积 == 一次 8 个样本 (样本回复长度各不相同)。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    a, b = tiny_model(tok), tiny_model(tok)
    ma = train(a, ds, None, collate, train_args(tmp_path / "a.pt", "--max_steps", "3", "--batch_size", "8"))
    mb = train(b, ds, None, collate, train_args(tmp_path / "b.pt", "--max_steps", "3", "--batch_size", "4", "--grad_accum", "2"))
    assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4)


def test_every_example_is_trained_not_just_the_short_ones(world, tmp_path):
    """不满一个步 batch 的零头每个 epoch 随机丢几条, 而不是总丢最长的那几条 (那样它们永远训练不到)。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)  # 48 条, batch 10: 每个 epoch 丢 8 条
    seen = set()

    def collate(items):
        seen.update(tuple(x["input_ids"].tolist()) for x in items)
        return data.collate(items, tok.pad_id)
    train(tiny_model(tok), ds, None, collate, train_args(tmp_path / "m.pt", "--batch_size", "10", "--epochs", "8"))
    assert seen == {tuple(ds[i]["input_ids"].tolist()) for i in range(len(ds))}


def test_every_micro_batch_is_full(world, tmp_path):
    """凑不满一个优化步的零头整个丢掉: 每个 micro-batch 都恰好 batch_size 条 (否则最后那一步的梯度只来自几条样本)。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs[:45], tok, 64)  # 45 条, batch 8: 每个 epoch 5 步, 丢 5 条
    sizes = []

    def collate(items):
        sizes.append(len(items))
        return data.collate(items, tok.pad_id)
    m = train(tiny_model(tok), ds, None, collate, train_args(tmp_path / "m.pt", "--epochs", "2"))
    assert m["steps"] == 10 and sizes == [8] * 10


def test_learning_rate_warms_up_then_follows_the_cosine():
    """warmup 线性升到 lr, 然后余弦降到 lr × min_lr_ratio (数是手算的)。"""
    args = argparse.Namespace(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [trainer.lr_at(s, 110, args) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[4] == pytest.approx(5e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3)  # 余弦从 lr 开始
    assert lrs[60] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # 走到一半: 正好在 lr 和终点的正中间
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # 之后一路下降
    assert trainer.lr_at(110, 110, args) == pytest.approx(1e-4)  # 训练结束的那一刻落到终点,
    assert 1e-4 < lrs[-1] < 1.01e-4  # 最后一步略高于它


def test_weight_decay_only_on_the_projection_matrices(world):
    """AdamW 分两组: 做 weight decay 的恰好是各个 *_proj 的权重; RMSNorm 的增益和 (与 lm_head 共享的) embedding 不做。
    LoRA 时只有 lora_A / lora_B 在优化器里, 它们是矩阵, 做 decay。"""
    root, tok, convs = world
    model = tiny_model(tok)
    names = {id(p): n for n, p in model.named_parameters()}
    opt = trainer.make_optimizer(model, 1e-3, 0.1, torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert decay == {n for n in names.values() if n.endswith("_proj.weight")}
    assert no_decay == set(names.values()) - decay
    assert "embed_tokens.weight" in no_decay and all(n == "embed_tokens.weight" or n.endswith("norm.weight") for n in no_decay)

    apply_lora(model, "q_proj,v_proj", r=4)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in trainer.make_optimizer(model, 1e-3, 0.1, torch.device("cpu")).param_groups)
    assert no_decay == set() and decay and all(".lora_A" in n or ".lora_B" in n for n in decay)


def test_gradients_are_clipped_before_the_update(world, tmp_path, monkeypatch):
    """每一步更新之前, 全部梯度的总范数被裁到 --grad_clip 以内; --grad_clip 0 时不裁剪。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    real = trainer.make_optimizer
    norms = []

    def make_spied(*a, **k):
        opt = real(*a, **k)
        step = opt.step

        def spied_step(*sa, **sk):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norms[-1].append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
            return step(*sa, **sk)
        opt.step = spied_step
        return opt

    monkeypatch.setattr(trainer, "make_optimizer", make_spied)
    for clip in ("0.01", "0"):
        norms.append([])
        train(tiny_model(tok), ds, None, lambda b: data.collate(b, tok.pad_id),
              train_args(tmp_path / f"clip{clip}.pt", "--max_steps", "3", "--grad_clip", clip))
    clipped, unclipped = norms
    assert len(clipped) == len(unclipped) == 3
    assert max(clipped) <= 0.01 * 1.001 and min(unclipped) > 0.05


def test_validation_does_not_change_training(world, tmp_path):
    """验证只读权重: 之后模型回到训练模式 (dropout 照常), 所以 --eval_interval 多密, 训练出的权重都一样。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    states = []
    for interval in ("1", "1000"):
        torch.manual_seed(0)
        model = GPT(get_config("tiny", vocab_size=tok.vocab_size, dropout=0.3))
        train(model, ds, ds, lambda b: data.collate(b, tok.pad_id),
              train_args(tmp_path / f"e{interval}.pt", "--max_steps", "6", "--eval_interval", interval))
        assert model.training
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_mean_loss_weights_every_trained_token_equally(world):
    """验证 loss 和困惑度按被训练的 token 平均, 不是按 batch 平均: 1 个 token 的 batch 不能和 10 个 token 的一样重。"""
    root, tok, convs = world
    model = tiny_model(tok).eval()
    input_ids = torch.tensor([tok.encode("小明住在北京, 喜欢苹果和香蕉。小明今年20岁。")])

    def batch(positions):
        labels = torch.full_like(input_ids, -100)
        labels[0, positions] = input_ids[0, positions]
        return {"input_ids": input_ids, "labels": labels}
    one, ten = batch([5]), batch(list(range(1, 11)))
    assert trainer.n_targets(one["labels"]) == 1 and trainer.n_targets(ten["labels"]) == 10
    with torch.no_grad():
        l1, l10 = (model(b["input_ids"], b["labels"])[1].item() for b in (one, ten))
    got = trainer.mean_loss(model, [one, ten], torch.device("cpu"))
    assert got == pytest.approx((l1 + 10 * l10) / 11) and got != pytest.approx((l1 + l10) / 2)


def test_n_targets_counts_the_shifted_labels():
    """位置 t 预测第 t+1 个 token (错一位在模型里做): 被训练的是 labels[:, 1:] 里不是 -100 的, 第 0 列从来不是目标。"""
    assert trainer.n_targets(torch.tensor([[5, 6, -100, 7], [8, -100, -100, -100]])) == 2


def test_eval_loss_samples_short_and_long_batches(monkeypatch):
    """验证 loss 只用 eval_batches 个 batch; batch 按长度排过序, 要在整个列表上均匀取, 不能只取最短的那几个。"""
    class Lengths(list):
        lengths = property(lambda self: self)
    sampled = []
    monkeypatch.setattr(trainer, "mean_loss", lambda model, batches, device, autocast: sampled.extend(batches) or 0.0)
    args = argparse.Namespace(batch_size=16, eval_batches=20)
    trainer.evaluate_loss(torch.nn.Linear(1, 1), Lengths(range(1, 601)), max, args, "cpu", None)  # collate: batch 里最长的
    assert len(sampled) == 20 and min(sampled) <= 16 and max(sampled) > 550


class Crash(Exception):
    pass


@pytest.mark.parametrize("capability, hip, dtype", [((9, 0), None, torch.bfloat16), ((8, 0), None, torch.bfloat16),
                                                    ((7, 5), None, torch.float16), ((7, 0), None, torch.float16),
                                                    ((9, 4), "6.2", torch.bfloat16)])
@pytest.mark.filterwarnings("ignore:.*GradScaler is enabled, but CUDA is not available")  # 没有 GPU: 只看选了哪种
def test_mixed_precision_type_follows_the_card(monkeypatch, capability, hip, dtype):
    """CUDA 上: Ampere (8.0) 及以后和 ROCm 用 bf16; T4 (7.5)、V100 (7.0) 这些张量核只做 fp16 的老卡用 fp16 + GradScaler。
    torch.cuda.is_bf16_supported() 默认把 "能模拟 bf16" 也算支持, 在老卡上会选 bf16: 不能用它。不需要 GPU: 假装一块卡。"""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # 老卡上它也说 True (模拟)
    monkeypatch.setattr(torch.version, "hip", hip)
    assert trainer.amp_dtype(torch.device("cuda")) == dtype
    assert trainer.amp_dtype(torch.device("cpu")) is None
    _, scaler = trainer.autocast_for(torch.device("cuda")) if dtype == torch.float16 else (None, None)
    assert dtype == torch.bfloat16 or isinstance(scaler, torch.amp.GradScaler)


@pytest.mark.parametrize("lora_dropout", [None, 0.5])  # None: 全参数; 0.5: LoRA, 旁路上的 dropout 要用到随机数
def test_resume_matches_uninterrupted(world, tmp_path, lora_dropout):
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731

    def make_model(seed=0):
        model = tiny_model(tok, seed)
        if lora_dropout:
            apply_lora(model, "q_proj,v_proj", r=4, dropout=lora_dropout)
        return model

    full = train(make_model(), ds, None, collate, train_args(tmp_path / "a.pt", "--max_steps", "12", "--save_interval", "4"))

    calls = {"n": 0}

    def crashing_collate(b):  # 模拟 kill -9: 第 7 步中途进程消失, 没有任何清理代码执行
        calls["n"] += 1
        if calls["n"] == 7:
            raise Crash
        return collate(b)

    out = tmp_path / "b.pt"
    with pytest.raises(Crash):
        train(make_model(), ds, None, crashing_collate, train_args(out, "--max_steps", "12", "--save_interval", "4"))
    assert load_checkpoint(str(tmp_path / "b.resume.pt"))["step"] == 4
    resumed = train(make_model(seed=99), ds, None, collate,
                    train_args(out, "--max_steps", "12", "--save_interval", "4", "--resume"))
    assert resumed["steps"] == 12
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)
    assert os.path.exists(tmp_path / "b.resume.pt")  # 调用者存好最终模型之前, 续训状态一直留着
    finish_run(str(out))
    assert not os.path.exists(tmp_path / "b.resume.pt")
    steps = [int(r["step"]) for r in csv.DictReader(open(resumed["log"]))]
    assert steps == list(range(1, 13))  # 崩溃前写下的第 5、6 步被续训重算, 日志里不重复


def test_resume_refuses_other_data_and_notes_new_total_steps(world, tmp_path, capsys):
    """续训按步数找回数据位置: 训练数据 (这里换了 --no_mask 的 labels) 变了就拒绝, 而不是悄悄在另一批数据上接着训。
    总步数变了 (提前收尾) 可以续训, 但要说一声: 余弦学习率按新的总步数算, 和不中断的那次不再相同。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    out = tmp_path / "b.pt"
    train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "2", "--save_interval", "1"))  # 续训状态留着
    with pytest.raises(SystemExit, match="data: 当时 "):
        train(tiny_model(tok), data.SFTDataset(convs, tok, 64, no_mask=True), None, collate,
              train_args(out, "--max_steps", "2", "--resume"))
    capsys.readouterr()
    assert train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "2", "--resume"))["steps"] == 2
    printed = capsys.readouterr().out
    assert "总步数从当初" not in printed and "--" + "warmup_steps 2 ->" not in printed
    # 这么短的试跑, warmup 占满了全程: 学习率一路上升, 说一声
    assert "注意: --warmup_steps 2 不少于总步数 2: 学习率一路上升" in printed
    assert train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "3", "--resume"))["steps"] == 3
    assert "注意: 总步数从当初的 2 变成了 3" in capsys.readouterr().out
    # 学习率曲线的形状、梯度裁剪换了: 也能续训, 同样说一声
    train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "3", "--resume", "--warmup_steps", "1", "--grad_clip", "0.5"))
    assert "注意: --warmup_steps 2 -> 1, --grad_clip 1.0 -> 0.5: 接下来按新的设置训练" in capsys.readouterr().out


def test_resume_writes_the_kept_log_rows_before_the_first_step(world, tmp_path):
    """续训时旧日志被 "w" 打开 (清空) 后, 保留的前几步的行要立刻写回磁盘: 第一步里被 kill -9 的话, 缓冲区里的东西就没了,
    下一次续训只能读到一个空日志。这里在续训的第一次取数据时, 直接读磁盘上的日志。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    out = tmp_path / "b.pt"
    train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "3", "--save_interval", "2"))
    log_part = trainer.run_files(str(out))[1] + ".part"
    seen = []

    def peek(b):
        seen.append(open(log_part, encoding="utf-8").read().splitlines())
        return collate(b)
    train(tiny_model(tok), ds, None, peek, train_args(out, "--max_steps", "3", "--resume"))
    assert seen[0][0].startswith("step,") and [r.split(",")[0] for r in seen[0][1:]] == ["1", "2"]


def test_resume_on_another_device_uses_this_devices_fused_setting(world, tmp_path):
    """GPU 上存的续训状态 (AdamW fused=True) 拿到 CPU 上续训: fused 跟着这次的设备走, 而不是被存档里的值盖掉。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    out = tmp_path / "f.pt"
    train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "2", "--save_interval", "1"))
    state = load_checkpoint(str(tmp_path / "f.resume.pt"))
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = True  # 像是在 CUDA 上存的
    save_checkpoint(str(tmp_path / "f.resume.pt"), state)
    train(tiny_model(tok), ds, None, collate, train_args(out, "--max_steps", "4", "--save_interval", "1", "--resume"))
    state = load_checkpoint(str(tmp_path / "f.resume.pt"))  # 续训之后第 3 步存下的
    assert state["step"] == 3 and [g["fused"] for g in state["optimizer"]["param_groups"]] == [False, False]


@pytest.fixture
def terminal_sigint():
    """SIGINT 按终端里的样子处理 (Python 启动时装的 default_int_handler)。在后台 (sh -c '... &') 跑测试时,
    shell 让后台进程忽略 SIGINT, 训练循环就不会接管 Ctrl-C, 这个测试也就测不到东西。测试结束后恢复原样。"""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_finishes_the_step_then_saves(world, tmp_path, terminal_sigint):
    """Ctrl-C 落在一步的中途: 这一步照常做完, 存下的续训状态就是第 6 步结束时的状态, 续训结果与不中断完全相同。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    full = train(tiny_model(tok), ds, None, collate, train_args(tmp_path / "a.pt", "--max_steps", "12", "--save_interval", "4"))

    calls = {"n": 0}

    def ctrl_c_collate(b):  # 第 6 步取数据时 "按下" Ctrl-C
        calls["n"] += 1
        if calls["n"] == 6:  # 连着两个 SIGINT (torchrun 会把 Ctrl-C 再转发一次): 算同一次, 照样做完这一步再保存
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return collate(b)

    out = tmp_path / "b.pt"
    with pytest.raises(SystemExit) as e:
        train(tiny_model(tok), ds, None, ctrl_c_collate, train_args(out, "--max_steps", "12", "--save_interval", "4"))
    assert e.value.code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # 训练结束后 Ctrl-C 恢复原样
    assert load_checkpoint(str(tmp_path / "b.resume.pt"))["step"] == 6
    resumed = train(tiny_model(tok, seed=99), ds, None, collate,
                    train_args(out, "--max_steps", "12", "--save_interval", "4", "--resume"))
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)


def test_sigterm_also_finishes_the_step_then_saves(world, tmp_path, capsys):
    """kill (SIGTERM: 集群抢占、timeout 到时) 和 Ctrl-C 一样: 做完这一步, 存好续训状态, 以 143 退出, 之后恢复默认处理。"""
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    collate = lambda b: data.collate(b, tok.pad_id)  # noqa: E731
    calls = {"n": 0}

    def kill_collate(b):  # 第 3 步取数据时收到 SIGTERM
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return collate(b)

    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # 测试进程里 (pytest-xdist 的 worker) 未必是默认处理
    try:
        with pytest.raises(SystemExit) as e:
            train(tiny_model(tok), ds, None, kill_collate, train_args(tmp_path / "b.pt", "--max_steps", "12"))
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old)
    assert e.value.code == 143 and load_checkpoint(str(tmp_path / "b.resume.pt"))["step"] == 3
    assert "已中断 (SIGTERM): 第 3 步的状态存到 " in capsys.readouterr().out


def test_a_signal_on_one_rank_stops_every_rank_with_its_exit_code(tmp_path):
    """torchrun 的两个进程 (gloo), 只有 rank 0 收到 SIGTERM: 两个都在这一步停下, 没收到的 rank 1 也以 143 退出 (不是 130)。"""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import os, signal, torch, torch.distributed as dist; from trainer import StopSignal\n"
            "dist.init_process_group('gloo'); stop = StopSignal()\n"
            "if dist.get_rank() == 0: stop._handler(signal.SIGTERM, None)\n"
            "print(stop.requested(torch.device('cpu'), 2), stop.code, stop.name); stop.close(); dist.destroy_process_group()")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", PYTHONPATH=ROOT)
    ranks = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=dict(env, RANK=str(r)), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in ranks]
    assert [out for out, _ in outs] == ["True 143 SIGTERM\n", "True 143 SIGTERM, 另一个进程收到的\n"], outs


def test_ctrl_c_outside_training_is_one_line(capsys):
    """加载数据、建模型时按 Ctrl-C: 一行说明, 退出码 130, 没有 traceback。"""
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        run_main(main)
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "已中断 (Ctrl-C)"


ENTRY_SCRIPTS = ["bench.py", "chat.py", "data.py", "evaluate.py", "experiments.py", "lora.py", "model.py", "pretrain.py",
                 "train_lora.py", "train_sft.py"]


def test_ctrl_c_while_importing_torch_is_one_line():
    """import torch 要一两秒, 这时按 Ctrl-C 还没进 run_main: cli 装的 sys.excepthook 只打印一行, 进程照常按 SIGINT 退出。
    所以每个脚本都要在 torch (以及会导入 torch 的本地模块) 之前导入 cli。"""
    proc = subprocess.run([sys.executable, "-c", "import cli; raise KeyboardInterrupt"], capture_output=True, text=True)
    assert proc.stderr.strip() == "已中断 (Ctrl-C)" and proc.returncode in (-signal.SIGINT, 130)
    proc = subprocess.run([sys.executable, "-c", "import cli; raise ValueError('bug')"], capture_output=True, text=True)
    assert "Traceback" in proc.stderr and proc.returncode == 1  # 其他异常照旧: 程序的 bug 要看得见
    for script in ENTRY_SCRIPTS:
        with open(script, encoding="utf-8") as f:
            lines = [line for line in f if line.startswith(("import ", "from "))]
        first_heavy = next(i for i, line in enumerate(lines) if line.split()[1].split(".")[0] not in sys.stdlib_module_names)
        assert lines[first_heavy].startswith("from cli import"), script


def test_every_script_uses_the_shared_parser():
    """每个脚本的 --help 都写出默认值 (学习者不用翻代码), 而且不接受缩写的参数名: argparse 默认会把 --r 8
    (本想写 --lora_r 8) 当成 --resume, 报一个莫名其妙的 "unrecognized arguments: 8"; 写错的参数只报一行中文。"""
    for script in [*ENTRY_SCRIPTS, "sample_data.py", "tokenizer.py"]:
        with open(script, encoding="utf-8") as f:
            source = f.read()
        assert "make_parser(" in source and "ArgumentParser(" not in source, script
    lora_help, data_help, chat_help, r, typo = run_parallel(ROOT, ("train_lora.py", "--help"), ("data.py", "--help"),
                                                            ("chat.py", "--help"), ("train_lora.py", "--r", "8"),
                                                            ("train_sft.py", "--epochs", "3x"))
    assert "(默认: 8)" in lora_help.stdout and "(默认: 0.01)" in lora_help.stdout  # --lora_r, --lr
    # 默认 0 也写出来 (0 == False, 不能拿 "in (None, False)" 判断); 默认是空列表的不写
    assert "(从 0 开始) (默认: 0)" in data_help.stdout
    assert "(默认: [])" not in chat_help.stdout
    # 写错的参数: 一行中文 (不是一屏 usage 加英文), 退出码 2
    assert r.returncode == 2 and r.stderr == ("错误: 不认识的参数 --r 8 (参数名要写全, 不接受缩写)。"
                                              "运行 python train_lora.py --help 看全部参数和写法\n")
    assert typo.returncode == 2 and typo.stderr.splitlines() == ["错误: --epochs 要一个数, 收到 '3x'。运行 python train_sft.py --help 看全部参数和写法"]


def test_argument_errors_say_which_kind_of_mistake(tmp_path):
    """argparse 的几种报错各说一句中文, 值照用户写的原样 (不多转义一层); 多出来的值不说成 "缩写"; 开关不带值;
    以 - 开头的值说怎么写; --help 提示照用户运行脚本的路径写 (在别的目录里运行时不只是文件名)。"""
    stray, quote, switch, dash, typo = run_parallel(
        tmp_path, ("train_sft.py", "--epochs", "1", "2"), ("train_sft.py", "--epochs", "it's\\"), ("train_sft.py", "--resume=1"),
        ("chat.py", "--prompt", "-你好"), ("train_lora.py", "--epochs", "--lr", "3"))
    script = os.path.join(ROOT, "train_sft.py")  # 从 tmp_path 运行: 提示里是脚本的完整路径
    tail = f"。运行 python {script} --help 看全部参数和写法"
    assert stray.stderr.splitlines() == [f"错误: 多出来的值 '2' (每个参数只跟一个值; 值里有空格就整个加引号){tail}"]
    assert quote.stderr.splitlines() == [f"错误: --epochs 要一个数, 收到 'it's\\'{tail}"]
    assert switch.stderr.splitlines() == [f"错误: --resume 是开关, 不带值: 要打开就只写 --resume{tail}"]
    assert dash.stderr.startswith("错误: --prompt 后面少了一个值 (值以 - 开头时连着写: --prompt=-你好)。")
    assert typo.stderr.startswith("错误: --epochs 后面少了一个值。")  # 后面跟的 --lr 真是参数名: 就是少了值, 不提 "连着写"
    assert all(r.returncode == 2 and len(r.stderr.splitlines()) == 1 for r in (stray, quote, switch, dash, typo))


@pytest.mark.parametrize("cmd", [["data.py", "--show"], ["data.py", "--check", "data/sft_train.jsonl"],
                                 ["tokenizer.py", "--encode", "你好"], ["model.py"],
                                 ["bench.py", "--quick", "--device", "cpu", "--threads", "1"], ["experiments.py", "lora"],
                                 ["sample_data.py", "--out_dir", "sample_copy"]])
def test_closed_output_pipe_is_quiet(base, cmd):
    """`python data.py --show | head -1` 这样读了一点就关掉管道: 每个脚本都经 cli.run_main 安静退出, 没有 BrokenPipeError。
    (bench 和 experiments 在第一行输出时就退出了, 不会真的开始测量或训练。)"""
    root = base
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # 逐行写出 (像终端里那样), 写的时候管道已经关了
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, cmd[0]), *cmd[1:]], cwd=root, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # 在它写出第一行之前就关掉
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1 and err == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="需要 Linux 的 /dev/full (每次写都报 '磁盘满')")
def test_full_disk_on_stdout_is_one_line(base):
    """输出重定向到满了的磁盘 (`python data.py --check ... > out.txt`): 一行说明, 不是 traceback。"""
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "data.py"), "--check", "data/sft_train.jsonl"], cwd=base,
                           stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == ["错误: 写不下去了 (No space left on device)。腾出磁盘空间, 或把输出重定向到别处"]


def test_console_encoding_that_lacks_a_character():
    """中文 Windows 上重定向的输出是 GBK: 模型吐出的半个字 (\ufffd) GBK 里没有, 印成 "?" 而不是 UnicodeEncodeError。"""
    r = subprocess.run([sys.executable, "-c", "from cli import run_main; run_main(lambda: print('半个字\\ufffd'))"],
                       cwd=ROOT, env=dict(os.environ, PYTHONIOENCODING="gbk"), capture_output=True)
    assert r.returncode == 0 and r.stdout.decode("gbk") == "半个字?\n", r.stderr.decode(errors="replace")


def previous_run(folder, which=("m.log.csv", "m.loss.png")):
    """上一次运行在 folder/m.pt 旁边留下的日志和曲线 (train 只肯换掉这两种: 开头是日志表头的 CSV、PNG)。返回 {路径: 内容}。"""
    content = {"m.log.csv": (",".join(trainer.LOG_HEADER) + "\n1,0,3.0,0.001,100,\n").encode(),
               "m.loss.png": b"\x89PNG\r\n\x1a\n" + "上一次运行的".encode()}
    files = {folder / f: content[f] for f in which}
    for path, blob in files.items():
        path.write_bytes(blob)
    return files


def unchanged(files):
    return all(path.read_bytes() == blob for path, blob in files.items())


def test_nan_loss_stops_and_keeps_last_checkpoint(world, tmp_path):
    """NaN 时停下: 续训状态停在上次保存的那一步; 上一个模型的日志和 loss 曲线 (同一个 --out) 原样保留。"""
    root, tok, convs = world
    previous = previous_run(tmp_path)
    ds = data.SFTDataset(convs, tok, 64)
    model = tiny_model(tok)
    real_forward = model.forward
    calls = {"n": 0}

    def forward(*a, **k):
        calls["n"] += 1
        logits, loss = real_forward(*a, **k)
        return logits, loss * float("nan") if calls["n"] == 5 else loss

    model.forward = forward
    out = tmp_path / "m.pt"
    with pytest.raises(SystemExit, match="第 5 步的 loss 是 nan.*m.resume.pt 保持不变; 试试降低 --lr$"):
        train(model, ds, None, lambda b: data.collate(b, tok.pad_id), train_args(out, "--max_steps", "10", "--save_interval", "2"))
    assert load_checkpoint(str(tmp_path / "m.resume.pt"))["step"] == 4
    calls["n"] = 0  # 关掉了梯度裁剪: 提示里也说打开它
    with pytest.raises(SystemExit, match=r"\(尚无\) 保持不变; 试试降低 --lr、打开梯度裁剪 \(--grad_clip 1\)$"):
        train(model, ds, None, lambda b: data.collate(b, tok.pad_id), train_args(tmp_path / "n.pt", "--max_steps", "10", "--grad_clip", "0"))
    assert unchanged(previous)
    assert len(list(csv.reader(open(tmp_path / "m.log.csv.part")))) == 1 + 4  # 这次的日志: 表头和 NaN 之前的 4 步


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="需要 Linux 的 /dev/full (每次写都报 '磁盘满')")
def test_full_disk_while_logging_is_one_line(world, tmp_path):
    """训练中写 CSV 日志时磁盘满了: 一行说明 (哪一步、哪个文件、怎么办), 不是 traceback; 上一个模型的日志原样保留。"""
    root, tok, convs = world
    previous = previous_run(tmp_path, ["m.log.csv"])
    os.symlink("/dev/full", tmp_path / "m.log.csv.part")
    ds = data.SFTDataset(convs, tok, 64)
    with pytest.raises(SystemExit, match=r"第 1 步写不了训练日志 .*m\.log\.csv\.part \(No space left on device\), 训练停止。"
                                         r"腾出磁盘空间后重新训练"):
        train(tiny_model(tok), ds, None, lambda b: data.collate(b, tok.pad_id), train_args(tmp_path / "m.pt", "--max_steps", "3"))
    assert unchanged(previous)


@pytest.mark.parametrize("poison_step", [2, 4])
def test_nonfinite_weights_are_never_saved(world, tmp_path, monkeypatch, poison_step):
    """loss 还是有限的, 某一步的更新却把参数弄成了 NaN (例如梯度溢出): 保存之前就停下, 上一次的续训状态不被覆盖。
    第 2 步: 正赶上定期保存 (--save_interval 2), 什么都不写; 第 4 步: 最后一步, 不交给调用者去存最终模型。"""
    root, tok, convs = world
    real = trainer.make_optimizer

    def make_poisoned(*a, **k):
        opt = real(*a, **k)
        step, calls = opt.step, []

        def poisoned_step(*sa, **sk):
            out = step(*sa, **sk)
            calls.append(1)
            if len(calls) == poison_step:
                with torch.no_grad():
                    opt.param_groups[0]["params"][0].fill_(float("nan"))
            return out
        opt.step = poisoned_step
        return opt

    monkeypatch.setattr(trainer, "make_optimizer", make_poisoned)
    ds = data.SFTDataset(convs, tok, 64)
    out = tmp_path / "m.pt"
    save_model(str(out), tiny_model(tok, seed=1), tok)  # 上一次运行留下的模型、日志和曲线
    files = previous_run(tmp_path)
    previous = out.read_bytes()
    with pytest.raises(SystemExit, match=f"第 {poison_step} 步更新之后参数里出现了 NaN 或 inf"):
        train(tiny_model(tok), ds, None, lambda b: data.collate(b, tok.pad_id),
              train_args(out, "--max_steps", "4", "--save_interval", "2"))
    assert out.read_bytes() == previous and unchanged(files)
    resume = tmp_path / "m.resume.pt"
    if poison_step == 2:
        assert not resume.exists()
    else:
        state = load_checkpoint(str(resume))
        assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model_state"].values())


# ---------------------------------------------------------------- checkpoint

def test_long_paragraphs_are_split_not_cut(world, tmp_path):
    """比窗口长的段落切成相邻重叠一个 token 的几段: 每个 token 都恰好被预测一次, 而不是只训练开头。"""
    from pretrain import PretrainDataset
    root, tok, _ = world
    text = "小明住在北京, 喜欢苹果和香蕉。" * 5
    (tmp_path / "p.txt").write_text(text + "\n短的一段。\n", encoding="utf-8")
    ds = PretrainDataset(str(tmp_path / "p.txt"), tok, 16)
    ids = [tok.eot_id] + tok.encode(text) + [tok.eot_id]
    windows = [ds[i]["input_ids"].tolist() for i in range(len(ds) - 1)]
    assert len(ids) > 3 * 16 and all(len(w) <= 16 for w in windows)
    assert [t for w in windows for t in w[1:]] == ids[1:]  # 各窗口的预测目标连起来, 正好是整段
    assert ds[len(ds) - 1]["input_ids"].tolist() == [tok.eot_id] + tok.encode("短的一段。") + [tok.eot_id]


def test_paragraphs_split_only_at_newlines(world, tmp_path):
    """一行一段: 段落里的换页符、\u2028 之类不算换行 (str.splitlines 会在那里断开, 一段变成几段)。"""
    from pretrain import PretrainDataset
    root, tok, _ = world
    (tmp_path / "p.txt").write_text("小明住在北京\x0c他喜欢苹果\u2028和香蕉。\r\n第二段。\n", encoding="utf-8")
    ds = PretrainDataset(str(tmp_path / "p.txt"), tok, 64)
    assert [ds[i]["input_ids"].tolist() for i in range(len(ds))] == [
        [tok.eot_id] + tok.encode(t) + [tok.eot_id] for t in ("小明住在北京\x0c他喜欢苹果\u2028和香蕉。", "第二段。")]


def test_checkpoint_round_trip(world, tmp_path):
    root, tok, convs = world
    model = tiny_model(tok).eval()
    path = str(tmp_path / "m.pt")
    save_model(path, model, tok, {"lr": 1.0}, {"eval_loss": 2.0})
    loaded, tok2, ckpt = load_model(path)
    x = torch.randint(0, tok.vocab_size, (2, 16))
    assert torch.equal(model(x)[0], loaded(x)[0])
    assert tok2.encode("小明有3个苹果") == tok.encode("小明有3个苹果")
    assert ckpt["args"]["lr"] == 1.0 and ckpt["metrics"]["eval_loss"] == 2.0


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_weights_only_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    Evil.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": "sft-lesson/v1", "kind": "model", "payload": Evil()}, path)
    with pytest.raises(SystemExit, match="拒绝加载"):
        load_checkpoint(str(path))
    # 写结果之前查 "--out 上已有的是哪种 checkpoint" 的那一次读取, 同样不执行代码, 而且不覆盖这个认不出的文件
    assert checkpoint_kind(str(path)) is None
    with pytest.raises(SystemExit):
        check_output_path(str(path), kinds=("model",))
    assert not marker.exists()  # 代码没有被执行


def test_bad_checkpoint_files(world, tmp_path):
    root, tok, convs = world
    good = tmp_path / "m.pt"
    save_model(str(good), tiny_model(tok), tok)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:1000])
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="找不到"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    with pytest.raises(SystemExit, match="损坏或被截断"):
        load_checkpoint(str(tmp_path / "trunc.pt"))
    with pytest.raises(SystemExit, match="损坏或被截断"):
        load_checkpoint(str(tmp_path / "text.pt"))
    with pytest.raises(SystemExit, match="不是本课程的 checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))
    with pytest.raises(SystemExit, match="需要 lora_adapter"):
        load_checkpoint(str(good), kinds=("lora_adapter",))


@pytest.mark.parametrize("damage, pattern", [
    ("missing_weight", "权重或分词器不完整或对不上 \\(RuntimeError\\)"),
    ("no_tokenizer", "不完整或对不上 \\(缺少 'tokenizer'\\)"),
    ("n_head_0", "模型形状不合法"),
    ("unknown_field", "不完整或对不上 \\(TypeError\\)"),
    ("adapter_no_base", "不是完整的 LoRA 适配器 \\(缺少 base\\)"),
])
def test_checkpoint_with_bad_contents_is_one_line(world, tmp_path, damage, pattern):
    """格式对、内容坏的文件: 训练脚本 (--init) 和加载模型的脚本都经过 checkpoint.py, 一样是一行指名文件的错误。"""
    import train_sft
    root, tok, convs = world
    good = str(tmp_path / "good.pt")
    save_model(good, tiny_model(tok), tok)
    ckpt = load_checkpoint(good)
    if damage == "missing_weight":
        del ckpt["model_state"]["norm.weight"]
    elif damage == "no_tokenizer":
        del ckpt["tokenizer"]
    elif damage == "n_head_0":
        ckpt["model_config"]["n_head"] = 0
    elif damage == "unknown_field":
        ckpt["model_config"]["n_heads"] = 4
    else:
        ckpt = {"format": ckpt["format"], "kind": "lora_adapter", "lora_state": {},
                "lora_config": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}}
    bad = str(tmp_path / "bad.pt")
    save_checkpoint(bad, ckpt)
    starts = [lambda: load_model(bad)]
    if damage != "adapter_no_base":
        starts.append(lambda: train_sft.load_start(argparse.Namespace(init=bad, out=str(tmp_path / "out.pt"))))
    for start in starts:
        with pytest.raises(SystemExit, match=pattern) as e:
            start()
        assert str(e.value).startswith(f"错误: {bad}") and "\n" not in str(e.value)


def test_atomic_save_keeps_previous(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, {"format": "sft-lesson/v1", "kind": "model", "v": 1})

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(SystemExit, match="写不了 .*disk full"):  # 一行说明, 不是 traceback
        save_checkpoint(path, {"format": "sft-lesson/v1", "kind": "model", "v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1  # 上一个好的 checkpoint 完好无损
    assert os.listdir(tmp_path) == ["c.pt"]  # 写了一半的临时文件也删掉了


# ---------------------------------------------------------------- 脚本端到端 (子进程)

TINY = ["--device", "cpu", "--preset", "tiny", "--batch_size", "8", "--eval_interval", "5"]


@pytest.fixture(scope="module")
def base(world):
    root, tok, convs = world
    r = run("pretrain.py", root, *TINY, "--max_steps", "20", "--lr", "3e-3", "--save_interval", "5")
    assert "底座模型已保存到 checkpoints/base_model.pt" in r.stdout
    assert not (root / "checkpoints/base_model.resume.pt").exists()  # 最终模型存好后, 续训状态被清理
    return root


def test_pretrain_outputs(base):
    ckpt = load_checkpoint(str(base / "checkpoints/base_model.pt"))
    assert ckpt["kind"] == "model" and ckpt["args"]["max_steps"] == 20
    for f in ("base_model.log.csv", "base_model.loss.png"):
        assert (base / "checkpoints" / f).exists()


def test_train_sft_end_to_end(base):
    r = run("train_sft.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", "6", "--save_interval", "2")
    assert "SFT 模型已保存到 checkpoints/sft_model.pt" in r.stdout
    assert not (base / "checkpoints/sft_model.resume.pt").exists()
    ckpt = load_checkpoint(str(base / "checkpoints/sft_model.pt"))
    assert ckpt["args"]["init"] == "checkpoints/base_model.pt" and ckpt["metrics"]["steps"] == 6


def test_train_sft_scratch_and_no_mask(base, tmp_path):
    run("train_sft.py", base, *TINY, "--init", "scratch", "--max_steps", "3", "--out", str(tmp_path / "s.pt"))
    r = run("train_sft.py", base, "--device", "cpu", "--no_mask", "--max_steps", "3", "--out", str(tmp_path / "n.pt"),
            "--max_length", "100000")
    assert load_checkpoint(str(tmp_path / "n.pt"))["args"]["no_mask"] is True
    window = load_checkpoint(str(base / "checkpoints/base_model.pt"))["model_config"]["max_seq_len"]
    assert f"--max_length 100000 大于模型的窗口 {window}, 按 {window} 截断" in r.stdout  # 不悄悄改


def test_train_lora_end_to_end(base, tmp_path):
    out = tmp_path / "lora_adapter.pt"
    r = run("train_lora.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", "6", "--lora_r", "4",
            "--out", str(out), "--merge", "--save_interval", "2")
    assert not (tmp_path / "lora_adapter.resume.pt").exists()
    assert "可训练参数" in r.stdout and "(n+m)·r" in r.stdout
    adapter = load_checkpoint(str(out), kinds=("lora_adapter",))
    assert all(".lora_" in k for k in adapter["lora_state"])
    assert adapter["base"]["path"] == "checkpoints/base_model.pt"
    # 适配器 (自带底座路径) 与合并后的完整模型给出同样的输出
    cwd = os.getcwd()
    os.chdir(base)
    try:
        m1, tok, _ = load_model(str(out))
        m2, _, _ = load_model(str(tmp_path / "lora_merged.pt"))
    finally:
        os.chdir(cwd)
    x = torch.randint(0, tok.vocab_size, (1, 20))
    torch.testing.assert_close(m1(x)[0], m2(x)[0], atol=1e-5, rtol=1e-5)
    # 合并后的模型与底座一样大: 共享的 embedding / lm_head 只存一份
    merged_size, base_size = (tmp_path / "lora_merged.pt").stat().st_size, (base / "checkpoints/base_model.pt").stat().st_size
    assert merged_size < 1.1 * base_size, (merged_size, base_size)
    # 同样的命令 (同一个 --seed) 再训一次: lora_A 的初值和 dropout 都由种子决定, 得到逐位相同的适配器
    run("train_lora.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", "6", "--lora_r", "4",
        "--out", str(tmp_path / "again.pt"))
    again = load_checkpoint(str(tmp_path / "again.pt"))["lora_state"]
    assert all(torch.equal(adapter["lora_state"][k], again[k]) for k in again)


def test_script_errors(base, tmp_path):
    before = (base / "checkpoints/base_model.pt").read_bytes()
    (tmp_path / "text.pt").write_text("not a checkpoint")
    (tmp_path / "notes_merged.pt").write_text("my notes")
    (tmp_path / "lora_merged.pt").write_bytes(before)  # 底座恰好叫 *_merged.pt: --merge 另存的路径就是它
    folder = tmp_path / "run_adapter_merged_v1"
    folder.mkdir()
    (folder / "lora_merged.pt").write_bytes(before)
    (tmp_path / "latin1.jsonl").write_bytes("{}\n\xe9t\xe9\n".encode("latin-1"))
    cases = [
        (("train_sft.py", "--init", str(tmp_path / "nope.pt")), "找不到底座模型"),
        (("train_sft.py", "--data_path", str(tmp_path / "nope.jsonl")), f"找不到数据文件 {tmp_path / 'nope.jsonl'}。检查文件名和路径"),
        (("train_lora.py", "--target_modules", "qkv"), "没有匹配到任何 Linear 层"),
        (("train_sft.py", "--batch_size", "0"), "--batch_size 必须 >= 1, 收到 0"),
        (("pretrain.py", "--lr", "-1", "--save_interval", "0"),
         "--save_interval 必须 >= 1, 收到 0; --lr 必须在 0 到 1 之间 (不含 0), 收到 -1.0"),
        # 会在训练中途溢出、或把 NaN 存进模型的数值: 开训之前就拒绝
        (("train_sft.py", "--weight_decay", "inf", "--lr", "1e39", "--seed", str(2**64)),
         "--lr 必须在 0 到 1 之间 (不含 0), 收到 1e+39; --weight_decay 必须是有限的非负数, 收到 inf; --seed 必须在 0 到 2^63-1 之间"),
        (("train_sft.py", "--resume", "--out", str(tmp_path / "x.pt")), "找不到续训状态"),
        (("train_lora.py", "--lora_alpha", "nan"), "LoRA 设置不合法"),
        (("data.py", "--check", "data/sft_train.jsonl", "--max_length", "0"), "--max_length 必须 >= 1"),
        # 训练脚本也一样 (以前读完数据才说 "没有能放进 --max_length 0 的对话。调大 --max_length")
        (("train_lora.py", "--max_length", "0"), "--max_length 必须 >= 1, 收到 0"),
        (("train_sft.py", "--init", str(tmp_path / "text.pt")), "损坏或被截断"),
        # 会毁掉已有文件、或者训练完才失败的输入: 开训之前就停下
        (("train_lora.py", "--out", "checkpoints/base_model.pt"), "会覆盖底座"),
        (("train_sft.py", "--out", str(tmp_path)), "是目录"),
        (("train_lora.py", "--init", str(tmp_path / "lora_merged.pt"), "--merge", "--out", str(tmp_path / "lora_adapter.pt")),
         "会覆盖底座"),
        # --merge 的路径只改文件名: 目录名里恰好有 "_adapter_merged" 也不动它 (合并的模型放在适配器旁边, 这里就是底座)
        (("train_lora.py", "--init", str(folder / "lora_merged.pt"), "--merge", "--out", str(folder / "lora_adapter.pt")),
         "会覆盖底座"),
        # --merge 是开关, 合并的模型按 --out 起名: 那个名字上已经有别的文件时, 叫人换的是 --out
        (("train_lora.py", "--merge", "--out", str(tmp_path / "notes_adapter.pt")),
         f"--merge {tmp_path / 'notes_merged.pt'} 已经存在, 而且不是本课程的 checkpoint, 写结果会把它覆盖。换一个 --out (合并的模型按它起名)"),
        (("train_sft.py", "--eval_path", str(tmp_path / "typo.jsonl")), f"找不到验证数据 {tmp_path / 'typo.jsonl'}"),
        (("train_sft.py", "--data_path", str(tmp_path / "latin1.jsonl")), f"{tmp_path / 'latin1.jsonl'}:2: 不是 UTF-8")]
    if not torch.cuda.is_available():
        # 设备在读数据、建模型之前就查: 数据路径也写错时, 先说的是 CUDA
        cases.append((("train_sft.py", "--device", "cuda", "--data_path", "nope.jsonl"), "CUDA"))
    assert_errors(base, cases)
    assert (base / "checkpoints/base_model.pt").read_bytes() == before
    assert (tmp_path / "lora_merged.pt").read_bytes() == before and not (tmp_path / "lora_adapter.pt").exists()
    assert (tmp_path / "notes_merged.pt").read_text() == "my notes" and not (tmp_path / "notes_adapter.pt").exists()
    run("train_sft.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", "1", "--save_interval", "1",
        "--out", str(tmp_path / "s.pt"))
    full_sft = load_checkpoint(str(tmp_path / "s.pt"))  # 全参数 SFT 的续训状态, 却拿去给 LoRA 续训
    save_checkpoint(str(tmp_path / "l.resume.pt"), {"format": full_sft["format"], "kind": "resume", "step": 1, "history": [],
                                                    "model_state": full_sft["model_state"], "optimizer": {}})
    assert_one_line_error(run("train_lora.py", base, "--resume", "--out", str(tmp_path / "l.pt"), check=False), "对不上")
    # LoRA 的设置也核对: --lora_alpha 换了, 旁路的缩放就悄悄变了
    save_checkpoint(str(tmp_path / "l.resume.pt"), {"format": full_sft["format"], "kind": "resume", "step": 1, "history": [],
                                                    "model_state": {}, "optimizer": {}, "run_info": {"lora": {"alpha": 99.0}}})
    assert_one_line_error(run("train_lora.py", base, "--resume", "--out", str(tmp_path / "l.pt"), check=False),
                          "lora: alpha 当时 99.0, 现在 16")


def test_outputs_never_overwrite_inputs_or_finished_runs(base, tmp_path):
    """写结果的路径不能是要读的输入; 旁边的日志是目录时开训前就停; 对不上的续训状态 (别的脚本的、换了起点的、
    已经超过这次总步数的) 一律拒绝, --out 原有的文件不动。"""
    data_copy = tmp_path / "train.jsonl"
    data_copy.write_bytes((base / "data/sft_train.jsonl").read_bytes())
    before = data_copy.read_bytes()
    ckpt = tmp_path / "base.pt"
    ckpt.write_bytes((base / "checkpoints/base_model.pt").read_bytes())
    adapter = tmp_path / "lora_adapter.pt"
    save_checkpoint(str(adapter), {**load_checkpoint(str(ckpt)), "kind": "lora_adapter"})
    adapter_bytes = adapter.read_bytes()
    (tmp_path / "y.log.csv").mkdir()
    cases = [(("train_sft.py", "--data_path", str(data_copy), "--out", str(data_copy)), "就是 --data_path 读的文件"),
             (("evaluate.py", str(ckpt), "--json", str(ckpt)), "--json"),
             # --init 给成了适配器 (又恰好是 train_lora.py 默认的 --out): 说它不是底座, 而不是 "--out 和 --init 是同一个文件"
             (("train_lora.py", "--init", str(adapter), "--out", str(adapter)), "是 'lora_adapter' 类型的 checkpoint, 这里需要 model"),
             (("train_sft.py", "--out", str(tmp_path / "y.pt")), "y.log.csv' 是目录")]

    # 对不上的续训状态: 每种放在一个各自的 --out 旁边, --out 上是上一次训练出的模型
    weights = load_checkpoint(str(ckpt))["model_state"]
    # 别的脚本留下的续训状态, 步数也超了: 说出真正的原因 (task), 而不是步数
    mismatched = [({"run_info": {"task": "pretrain"}, "step": 9, "history": []}, "task: 当时 pretrain, 现在 sft"),
                  ({"run_info": {"task": "sft", "init_fingerprint": "0" * 16}, "step": 1, "history": []}, "init_fingerprint: 当时 0000"),
                  ({"run_info": {}, "step": 9, "history": []}, "已经训练到第 9 步, 超过了这次的总步数 2"),
                  # 手改过的续训状态 (步数是字符串、没有训练历史): 一行, 不是 TypeError / KeyError 的 traceback
                  ({"step": "5", "history": []}, "不是完整的续训状态"),
                  ({"step": 1}, "不是完整的续训状态")]
    outs = [tmp_path / f"s{i}.pt" for i in range(len(mismatched))]
    for out, (fields, pattern) in zip(outs, mismatched):
        out.write_bytes(ckpt.read_bytes())
        save_checkpoint(str(tmp_path / f"{out.stem}.resume.pt"), {"format": "sft-lesson/v1", "kind": "resume", **fields,
                                                                  "model_state": weights, "optimizer": {}})
        cases.append((("train_sft.py", "--resume", "--max_steps", "2", "--out", str(out)), pattern))
    results = assert_errors(base, cases)
    # "从头训练" 的办法要能照着做: 续训状态还在时新运行会被拒绝, 所以要先说删掉它
    for r, out in zip(results[4:7], outs):
        assert f"rm {tmp_path / (out.stem + '.resume.pt')}" in r.stderr
    assert data_copy.read_bytes() == before and load_checkpoint(str(ckpt))["kind"] == "model"
    assert adapter.read_bytes() == adapter_bytes
    assert all(out.read_bytes() == ckpt.read_bytes() for out in outs)


def test_out_replaces_only_the_same_kind_of_result(base, tmp_path):
    """--out / --json 上已有文件时, 只有同一种结果可以被覆盖 (重跑训练换掉上次的模型); 分词器、数据、README、
    另一种 checkpoint 一律开训之前拒绝, 文件原样不动。--out 要以 .pt 结尾 (日志、曲线按它的名字起名)。"""
    tok_json = tmp_path / "tokenizer.json"
    tok_json.write_bytes((base / "data/tokenizer.json").read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text("# 我的笔记\n", encoding="utf-8")
    sft = tmp_path / "sft.pt"
    sft.write_bytes((base / "checkpoints/base_model.pt").read_bytes())
    files = {p: p.read_bytes() for p in (tok_json, readme, sft)}
    train = ["--max_steps", "1"]
    cases = [("train_sft.py", [*train, "--out", str(tok_json)], "要以 .pt 结尾"),
             ("pretrain.py", [*train, "--out", str(readme)], "要以 .pt 结尾"),
             ("train_sft.py", [*train, "--out", str(tmp_path / "sft")], "要以 .pt 结尾"),  # 会盖掉 sft.pt 的日志
             ("train_lora.py", [*train, "--out", str(sft)], "是 'model' 类型的 checkpoint (这里要写的是 lora_adapter)"),
             ("evaluate.py", [str(sft), "--json", str(tok_json)], "不是这个脚本写的结果"),
             ("evaluate.py", ["checkpoints/base_model.pt", "--json", str(sft)], "要以 .json 结尾"),
             ("bench.py", ["--quick", "--json", str(tok_json)], "不是这个脚本写的结果")]
    (tmp_path / "notes.pt").write_text("not a checkpoint", encoding="utf-8")
    cases.append(("train_sft.py", [*train, "--out", str(tmp_path / "notes.pt")], "不是本课程的 checkpoint"))
    assert_errors(base, [((script, *flags), pattern) for script, flags, pattern in cases])
    assert {p: p.read_bytes() for p in files} == files and not list(tmp_path.glob("*.log.csv*"))
    # 空文件 (touch 出来的) 里没有可丢的东西: 可以写进去; /dev/null 当 checkpoint 读: 说它不是普通文件, 而不是 "找不到"
    (tmp_path / "empty.json").touch()
    run("bench.py", base, "--quick", "--device", "cpu", "--threads", "1", "--json", str(tmp_path / "empty.json"))
    assert json.loads((tmp_path / "empty.json").read_text())["train"]
    if os.path.exists("/dev/null"):
        assert_one_line_error(run("evaluate.py", base, "/dev/null", check=False), "/dev/null 不是普通文件")


def test_check_output_path_accepts_its_own_earlier_result(tmp_path):
    """同一种结果可以覆盖: 模型 -> 模型, evaluate 的结果 JSON -> 结果 JSON; 别的 JSON 不行。"""
    from checkpoint import check_output_path
    from evaluate import is_results_json
    ckpt = tmp_path / "m.pt"
    save_checkpoint(str(ckpt), {"format": "sft-lesson/v1", "kind": "model"})
    check_output_path(str(ckpt), kinds=("model",))
    with pytest.raises(SystemExit, match="是 'model' 类型的 checkpoint"):
        check_output_path(str(ckpt), kinds=("lora_adapter",))
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"checkpoints/sft_model.pt": {"overall": 0.5, "categories": {}, "stop_rate": 1.0, "n": 2}}),
                   encoding="utf-8")
    check_output_path(str(res), "--json", ours=is_results_json)
    for other in ({"merges": [[1, 2]]}, {}, {"x.pt": {"overall": 1}}):  # 别的 JSON、空对象、只像了一半的
        res.write_text(json.dumps(other), encoding="utf-8")
        with pytest.raises(SystemExit, match="不是这个脚本写的结果"):
            check_output_path(str(res), "--json", ours=is_results_json)
    res.write_text("[" * 5000, encoding="utf-8")  # 嵌套太深: json 报 RecursionError
    with pytest.raises(SystemExit, match="不是这个脚本写的结果"):
        check_output_path(str(res), "--json", ours=is_results_json)
    with pytest.raises(SystemExit, match="留给续训状态"):
        check_output_path(str(tmp_path / "y.resume.pt"), kinds=("model",))
    fifo = tmp_path / "pipe.json"  # 命名管道: 以前试写时的 open 会一直卡着, 等一个读的人
    os.mkfifo(fifo)
    with pytest.raises(SystemExit, match="是命名管道, 不是普通文件"):
        check_output_path(str(fifo), "--json", ours=is_results_json)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # 没有被换成普通文件


def test_fresh_run_refuses_to_discard_an_interrupted_one(base, tmp_path):
    """旁边有没训练完的续训状态时, 不加 --resume 的新运行开训之前就停: 否则它第一次保存就把那次运行盖掉了。"""
    out = tmp_path / "s.pt"
    run("train_sft.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", "1", "--out", str(out))
    save_checkpoint(str(tmp_path / "s.resume.pt"), {"format": "sft-lesson/v1", "kind": "resume", "step": 1})
    before = (tmp_path / "s.resume.pt").read_bytes(), out.read_bytes()
    assert_one_line_error(run("train_sft.py", base, "--max_steps", "2", "--out", str(out), check=False),
                          "里有一次没训练完的运行 (被中断或出错停下)。接着训练加 --resume")
    assert ((tmp_path / "s.resume.pt").read_bytes(), out.read_bytes()) == before
    (tmp_path / "s.resume.pt").write_bytes(out.read_bytes())  # 那个名字上是别的文件 (一个模型): 不叫人删它
    assert_one_line_error(run("train_sft.py", base, "--max_steps", "2", "--out", str(out), check=False),
                          "已经存在, 而且不是续训状态")


def test_own_files_next_to_out_are_not_overwritten(base, tmp_path):
    """--out 旁边碰巧有同名的别的文件 (用户自己的 s.log.csv、s.loss.png): 开训之前就停, 文件原样;
    上一次训练留下的日志和曲线, 重跑时照常换掉。"""
    out = tmp_path / "s.pt"
    args = ("--device", "cpu", "--batch_size", "8", "--max_steps", "1", "--out", str(out))
    for name in ("s.log.csv", "s.loss.png"):
        (tmp_path / name).write_text("precious\n", encoding="utf-8")
        assert_one_line_error(run("train_sft.py", base, *args, check=False), f"{tmp_path / name} 已经存在, 而且不是")
        assert (tmp_path / name).read_text(encoding="utf-8") == "precious\n" and not out.exists()
        (tmp_path / name).unlink()
    run("train_sft.py", base, *args)
    first = (tmp_path / "s.log.csv").read_bytes(), (tmp_path / "s.loss.png").read_bytes()
    run("train_sft.py", base, *args, "--seed", "1")
    again = (tmp_path / "s.log.csv").read_bytes(), (tmp_path / "s.loss.png").read_bytes()
    assert again[0] != first[0] and again[1] != first[1] and again[1].startswith(b"\x89PNG")
    (tmp_path / "s.log.csv").write_bytes(b"\xef\xbb\xbf" + again[0])  # 在 Excel 里打开、存回 "CSV UTF-8" (多了 BOM): 还是我们的日志
    run("train_sft.py", base, *args)


def test_experiments_resume_an_interrupted_run(tmp_path, monkeypatch):
    """experiments.py 重跑时, 上次被中断的训练接着训 (加 --resume); 训练失败时那一行错误直接报出来。"""
    import experiments
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/x.resume.pt").write_bytes(b"")
    calls = []

    def fake_run(cmd, stdout, stderr):
        calls.append(cmd)
        save_checkpoint(cmd[-1], {"format": "sft-lesson/v1", "kind": "model", "metrics": {"steps": 1}})
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(experiments.subprocess, "run", fake_run)
    assert experiments.train("x", "train_sft.py", "--lr", "1e-4")["steps"] == 1
    assert calls[0][1:] == ["train_sft.py", "--lr", "1e-4", "--resume", "--out", os.path.join("runs", "x.pt")]

    # --fresh: 几个实验共用的模型 (all --fresh 时的 sft_full) 在一次运行里只重新训练一次
    monkeypatch.setattr(experiments, "FRESHLY_TRAINED", set())
    calls.clear()
    experiments.train("z", "train_sft.py")
    experiments.train("z", "train_sft.py", fresh=True)  # 这次运行里刚训练过 (runs/z.pt 原来不存在)
    assert len(calls) == 1
    monkeypatch.setattr(experiments, "FRESHLY_TRAINED", set())  # 下一次运行: --fresh 照常重训
    experiments.train("z", "train_sft.py", fresh=True)
    experiments.train("z", "train_sft.py", fresh=True)
    assert len(calls) == 2

    def failing_run(cmd, stdout, stderr):
        stdout.write("进度 10%\r进度 20%\n错误: --lr 必须在 0 到 1 之间\n")
        return subprocess.CompletedProcess(cmd, 1)
    monkeypatch.setattr(experiments.subprocess, "run", failing_run)
    with pytest.raises(SystemExit, match=r"训练 y 失败 \(退出码 1\): --lr 必须在 0 到 1 之间 \(日志 runs/y.out\)"):
        experiments.train("y", "train_sft.py")


def test_run_lesson_continues_where_ctrl_c_stopped_it(tmp_path):
    """整节课在 SFT 那一步被 Ctrl-C 打断之后, 再运行 run_lesson.sh: 已经跑完的预训练跳过, SFT 加 --resume 接着训,
    后面的步骤照常; 只对一个脚本有意义的参数 (--out、--lora_r) 不收。脚本换成只记下自己参数的替身, 所以这个测试不训练任何东西。"""
    import shutil
    shutil.copy(os.path.join(ROOT, "run_lesson.sh"), tmp_path)
    for script in ("data.py", "pretrain.py", "train_sft.py", "train_lora.py", "evaluate.py", "chat.py"):
        (tmp_path / script).write_text(
            "import sys\nopen('calls.txt', 'a').write(' '.join(sys.argv) + '\\n')\n", encoding="utf-8")
    (tmp_path / "checkpoints").mkdir()
    for name in ("base_model.pt", "sft_model.resume.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])

    def trainers():  # 这次运行调用了哪些训练脚本, 带什么参数
        calls = (tmp_path / "calls.txt").read_text(encoding="utf-8").splitlines()
        return [c for c in calls if c.split()[0] in ("pretrain.py", "train_sft.py", "train_lora.py")]
    # 中断提示说 "加 --resume", 用户可能就加在 run_lesson.sh 后面: 只给被打断的那一步, 其他步骤不加
    subprocess.run(["bash", "run_lesson.sh", "--device", "cpu", "--resume"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert trainers() == ["train_sft.py --resume --device cpu", "train_lora.py --device cpu"]

    (tmp_path / "checkpoints" / "sft_model.resume.pt").unlink()  # 没有被打断过: 每一步都从头跑, 不加 --resume
    (tmp_path / "calls.txt").unlink()
    subprocess.run(["bash", "run_lesson.sh"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert trainers() == ["pretrain.py", "train_sft.py", "train_lora.py"]

    # 两步都留着续训状态 (课程之外手动跑过、又打断过): 先接着训预训练; SFT 的旧进度用的是旧底座, 接不上了,
    # 一行说明要删掉哪个文件, 而不是让 train_sft.py 报 "加 --resume" (这个脚本会把 --resume 去掉)
    for name in ("base_model.resume.pt", "sft_model.resume.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    (tmp_path / "calls.txt").unlink()
    r = subprocess.run(["bash", "run_lesson.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and trainers() == ["pretrain.py --resume"]
    assert r.stderr.strip().startswith("错误: checkpoints/sft_model.resume.pt 是更早一次没训练完的运行")
    assert "rm checkpoints/sft_model.resume.pt" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for name in ("base_model.resume.pt", "sft_model.resume.pt"):
        (tmp_path / "checkpoints" / name).unlink()

    (tmp_path / "calls.txt").unlink()  # --help 只打印说明, 什么也不跑 (不会把 --help 传给每个脚本、再去评估旧模型)
    r = subprocess.run(["bash", "run_lesson.sh", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("整节课从头到尾") and not (tmp_path / "calls.txt").exists()

    # 额外参数会传给全部三个脚本: --out 会让三个脚本写同一个文件, --lora_r 只有一个脚本认识。一行说明, 什么也不跑
    for extra in (["--device", "cpu", "--out", "x.pt"], ["--lora_r=8"]):
        r = subprocess.run(["bash", "run_lesson.sh", *extra], cwd=tmp_path, env=env, capture_output=True, text=True)
        flag = extra[-2] if len(extra) > 1 else "--lora_r"
        assert r.returncode == 2 and r.stderr.startswith(f"错误: bash run_lesson.sh 不收 {flag}:"), r.stderr
        assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "calls.txt").exists()
    # 开关带了值 (--resume=1): 一行说开关不带值, 而不是被上面去掉 --resume 的循环漏过、再由三个脚本各报一次
    r = subprocess.run(["bash", "run_lesson.sh", "--resume=1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "错误: --resume 是开关, 不带值: 要打开就写 --resume, 不要就不写\n"
    assert not (tmp_path / "calls.txt").exists()
    # 不是 --名字 的参数、少了值的参数: 生成数据之前就一行报错 (以前先跑完第 1 步, 再由预训练脚本报错)
    for extra, message in ((["foo"], "错误: bash run_lesson.sh 不收 foo: 额外参数要写成 --名字 值"),
                           (["--device", "cpu", "--epochs"], "错误: --epochs 后面少了值"),
                           (["--device", "--epochs", "1"], "错误: --device 后面少了值")):
        r = subprocess.run(["bash", "run_lesson.sh", *extra], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stdout == "" and not (tmp_path / "calls.txt").exists()
    # 三个脚本含义和默认值都一样的训练参数照样传下去
    subprocess.run(["bash", "run_lesson.sh", "--grad_clip", "0.5", "--weight_decay=0"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert trainers() == [f"{s} --grad_clip 0.5 --weight_decay=0" for s in ("pretrain.py", "train_sft.py", "train_lora.py")]


def test_pretrain_resume_checks_the_tokenizer_and_names_only_changed_fields(base, tmp_path):
    """同样大小的另一个分词器: 每个 id 的含义都变了, 续训拒绝。模型形状变了时只列出变了的字段。"""
    from trainer import describe_change
    for run_info, pattern in [({"task": "pretrain", "tokenizer": "0" * 16}, "tokenizer: 当时 0000000000000000, 现在 "),
                              ({"task": "pretrain", "model_config": {"n_layer": 3}}, "model_config: n_layer 当时 3, 现在 2")]:
        save_checkpoint(str(tmp_path / "b.resume.pt"), {"format": "sft-lesson/v1", "kind": "resume", "step": 1, "history": [],
                                                        "model_state": {}, "optimizer": {}, "run_info": run_info})
        assert_one_line_error(run("pretrain.py", base, *TINY, "--resume", "--max_steps", "2", "--out", str(tmp_path / "b.pt"),
                                  check=False), pattern)
    assert describe_change("model_config", {"n_layer": 2, "n_embd": 32}, {"n_layer": 3, "n_embd": 32}) \
        == "model_config: n_layer 当时 2, 现在 3"


def test_tokenizer_that_does_not_match_the_model_is_one_line(base, tmp_path):
    """checkpoint 里的分词器和模型的 vocab_size 对不上 (手工拼出来的文件): 加载时一行, 而不是生成时越界。"""
    ck = load_checkpoint(str(base / "checkpoints/base_model.pt"))
    ck["tokenizer"]["merges"] = ck["tokenizer"]["merges"][:-3]
    save_checkpoint(str(tmp_path / "odd.pt"), ck)
    assert_one_line_error(run("chat.py", base, "--checkpoint", str(tmp_path / "odd.pt"), "--prompt", "你好", check=False),
                          "分词器的词表有")


def test_truncated_checkpoint_is_damage_not_permissions(base, tmp_path):
    """截断在不同位置, torch 报的错不同 (RuntimeError, 或 "Invalid argument" 的 OSError): 都说文件坏了, 不说权限。"""
    whole = (base / "checkpoints/base_model.pt").read_bytes()
    for n in (1000, 5000, len(whole) // 2):
        (tmp_path / "t.pt").write_bytes(whole[:n])
        r = run("chat.py", base, "--checkpoint", str(tmp_path / "t.pt"), "--prompt", "你好", check=False)
        assert_one_line_error(r, "损坏或被截断")
        assert "权限" not in r.stderr


def test_small_input_mistakes_are_one_line(base, tmp_path):
    assert_one_line_error(run("chat.py", base, "--prompt", "  ", check=False), "--prompt 是空的")
    assert_one_line_error(run("tokenizer.py", base, "--bench", "--text", "data", check=False), "--text data 是目录")
    (tmp_path / "big.jsonl").write_text('{"n": ' + "9" * 5000 + "}\n", encoding="utf-8")
    r = run("data.py", base, "--check", str(tmp_path / "big.jsonl"), check=False)
    assert f"{tmp_path / 'big.jsonl'}:1: 无效的 JSON: ValueError: Exceeds the limit" in r.stdout + r.stderr


def test_disk_full_during_save_is_one_line(tmp_path, monkeypatch):
    """torch.save 把写文件的失败 (磁盘满) 包成 RuntimeError: 一行说明, 临时文件删掉, 原来的文件不动。"""
    path = tmp_path / "m.pt"
    path.write_bytes(b"old")

    def full(obj, f):
        f.write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SystemExit, match="多半是磁盘满了"):
        save_checkpoint(str(path), {"format": "sft-lesson/v1"})
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.pt"]  # 临时文件也删掉了


def test_is_main_process_before_the_process_group_exists(monkeypatch):
    """训练开始前的检查 (例如 train_lora.py 试写 --merge 的路径) 只该由 rank 0 做: 进程组还没建好时看 torchrun 的 RANK。"""
    monkeypatch.delenv("RANK", raising=False)
    assert trainer.is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not trainer.is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert trainer.is_main_process()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="只有 Linux 的 ru_maxrss 会从父进程继承")
def test_peak_memory_is_the_process_own_not_inherited_from_its_parent():
    """bench.py 在子进程里量每个配置的峰值内存: 父进程先占了 1 GB, 子进程报的也不能是这 1 GB。"""
    child = f"import sys; sys.path.insert(0, {ROOT!r}); import torch, trainer; print(trainer.peak_memory_mb(torch.device('cpu')))"
    parent = ("import subprocess, sys; big = bytearray(2**30); big[::4096] = b'1' * len(big[::4096]); "
              f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, check=True).stdout)")
    r = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True)
    assert 0 < float(r.stdout) < 900  # import torch 之后的子进程自己只有几百 MB


def test_training_finishes_where_peak_memory_cannot_be_read(world, tmp_path, monkeypatch):
    """Windows 上没有 /proc, 也没有 resource 模块: 峰值内存记成 nan, 训练照常结束 (以前在保存最终模型之前就 ImportError)。"""
    real_open = open

    def open_without_proc(path, *args, **kwargs):
        if path == "/proc/self/status":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_without_proc)
    monkeypatch.setitem(sys.modules, "resource", None)  # None: import resource 抛 ImportError
    root, tok, convs = world
    ds = data.SFTDataset(convs, tok, 64)
    m = train(tiny_model(tok), ds, None, lambda b: data.collate(b, tok.pad_id), train_args(tmp_path / "m.pt", "--max_steps", "2"))
    assert m["steps"] == 2 and math.isnan(m["peak_mem_mb"])


def test_atomic_write_leaves_a_users_tmp_file_alone(tmp_path):
    """写 m.pt 用的临时文件不是 m.pt.tmp: 用户自己的同名文件原样留着。"""
    (tmp_path / "m.pt.tmp").write_bytes(b"mine")
    save_checkpoint(str(tmp_path / "m.pt"), {"format": "sft-lesson/v1"})
    assert (tmp_path / "m.pt.tmp").read_bytes() == b"mine" and sorted(os.listdir(tmp_path)) == ["m.pt", "m.pt.tmp"]


@pytest.mark.skipif(os.name != "posix", reason="只在 POSIX 上收拾 (Windows 的 os.kill(pid, 0) 会结束那个进程)")
def test_atomic_write_removes_tmp_files_of_dead_processes(tmp_path):
    """被 kill -9 打断的保存留下 m.pt.<pid>.tmp (一个 checkpoint 那么大): 下一次写 m.pt 时删掉; 还活着的进程的不动。"""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # 一个已经结束的进程号 (短时间内不会被别的进程重用)
    for pid in (dead.pid, os.getppid()):
        (tmp_path / f"m.pt.{pid}.tmp").write_bytes(b"half")
    save_checkpoint(str(tmp_path / "m.pt"), {"format": "sft-lesson/v1"})
    assert sorted(os.listdir(tmp_path)) == sorted(["m.pt", f"m.pt.{os.getppid()}.tmp"])


def test_disk_full_while_writing_results_json_is_one_line(tmp_path, monkeypatch):
    """evaluate.py / bench.py 的 --json: 写到一半磁盘满了, 一行说明, 上次的结果原样保留 (不会只剩半个 JSON)。"""
    from checkpoint import save_results_json
    path = tmp_path / "res.json"
    path.write_text('{"old": 1}', encoding="utf-8")

    def full(obj, f, **kwargs):
        f.write('{"new": ')
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(json, "dump", full)
    with pytest.raises(SystemExit, match=r"^错误: 写不了 .*res.json \(No space left on device\)。结果表在上面") as e:
        save_results_json(str(path), {"new": 2})
    assert "\n" not in str(e.value)
    assert path.read_text(encoding="utf-8") == '{"old": 1}' and os.listdir(tmp_path) == ["res.json"]


def test_pretrain_empty_eval_text_is_one_line(base, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    assert_one_line_error(run("pretrain.py", base, "--eval_path", str(tmp_path / "empty.txt"), "--max_steps", "1",
                              "--out", str(tmp_path / "b.pt"), check=False), "里没有文字。检查 --eval_path")


def test_pretrain_on_json_data_warns(base, tmp_path):
    """把 SFT 的 .jsonl 当预训练文本: 照常训练 (一行一段文字), 但提醒一句, 不然学习者只会奇怪底座为什么满嘴引号和括号。"""
    r = run("pretrain.py", base, "--data_path", "data/sft_train.jsonl", "--eval_path", "data/sft_eval.jsonl", "--preset", "tiny",
            "--max_steps", "1", "--out", str(tmp_path / "b.pt"))
    assert "注意: --data_path data/sft_train.jsonl 看起来是 JSON 数据。预训练把每一行当成" in r.stderr, r.stderr
    assert "注意: --eval_path data/sft_eval.jsonl 看起来是 JSON 数据" in r.stderr and (tmp_path / "b.pt").exists()


def test_pretrain_does_not_overwrite_user_data(tmp_path):
    """data/ 里有用户自己的 SFT 数据但没有预训练文本: 不自动生成示例数据 (那会覆盖它)。"""
    (tmp_path / "data").mkdir()
    mine = tmp_path / "data/sft_train.jsonl"
    mine.write_text("my own data\n", encoding="utf-8")
    assert_one_line_error(run("pretrain.py", tmp_path, "--max_steps", "1", check=False), "不自动生成示例数据")
    assert mine.read_text(encoding="utf-8") == "my own data\n" and not (tmp_path / "data/pretrain.txt").exists()


def test_pretrain_under_torchrun_does_not_generate_data(tmp_path):
    """torchrun 的几个进程会同时生成示例数据、写同一批文件 (互相把临时文件改名改走): 多进程时不自动生成, 一行说先生成。
    torchrun 给每个进程设 RANK/WORLD_SIZE; 检查在建进程组之前, 一个带这两个变量的进程就够了。"""
    env = dict(os.environ, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "pretrain.py"), "--max_steps", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(r, "多进程 (torchrun) 训练之前先生成示例数据: python data.py --create_sample")
    assert not (tmp_path / "data").exists()


def test_experiments_without_data_is_one_line(tmp_path):
    """有底座、没有 data/ (例如删掉重新生成前): experiments.py 一行提示先生成数据, 而不是读文件时的 FileNotFoundError。"""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/base_model.pt").write_bytes(b"")  # main() 只看它在不在
    r = run("experiments.py", tmp_path, "topic", check=False)
    assert_one_line_error(r, "找不到 data/sft_train.jsonl (实验的训练和评估数据)。先运行 python data.py --create_sample")
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_records_are_skipped(base, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = (base / "data/sft_train.jsonl").read_text(encoding="utf-8")
    bad.write_text("{oops\n" + good, encoding="utf-8")
    r = run("train_sft.py", base, "--device", "cpu", "--data_path", str(bad), "--max_steps", "2", "--out", str(tmp_path / "m.pt"))
    assert f"{bad}:1: 无效的 JSON" in r.stderr and (tmp_path / "m.pt").exists()
    # 验证集里的坏记录同样报告 (以前悄悄跳过)
    r = run("train_sft.py", base, "--device", "cpu", "--eval_path", str(bad), "--max_steps", "2", "--out", str(tmp_path / "m.pt"))
    assert f"{bad}:1: 无效的 JSON" in r.stderr


def wait_for(path, timeout=180):
    t0 = time.time()
    while not os.path.exists(path):
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_then_resume(base, tmp_path, sig):
    """Ctrl-C 保存续训状态后干净退出; kill -9 则靠定期保存。两种情况 --resume 都能接着训完。"""
    out = str(tmp_path / "m.pt")
    args = [sys.executable, os.path.join(ROOT, "train_sft.py"), "--device", "cpu", "--batch_size", "8",
            "--max_steps", "100000", "--save_interval", "3", "--out", out]
    # 子进程的 SIGINT 恢复成默认处理: 在后台 (sh -c '... &') 跑测试时, shell 让后台进程忽略 SIGINT, Python 就不会装上
    # 产生 KeyboardInterrupt 的处理函数, Ctrl-C 变成无事发生 (在终端里按 Ctrl-C 时不会这样)
    proc = subprocess.Popen(args, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(str(tmp_path / "m.resume.pt"))
    time.sleep(0.3)
    proc.send_signal(sig)
    out_text, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in out_text and "Traceback" not in err
    step = load_checkpoint(str(tmp_path / "m.resume.pt"))["step"]
    assert step >= 3 and not os.path.exists(out)
    r = run("train_sft.py", base, "--device", "cpu", "--batch_size", "8", "--max_steps", str(step + 2), "--out", out, "--resume")
    assert f"第 {step} 步继续" in r.stdout
    assert load_checkpoint(out)["metrics"]["steps"] == step + 2
    assert not os.path.exists(tmp_path / "m.resume.pt")  # 最终模型存好之后才清理


def test_ddp_matches_single_process(base, tmp_path):
    """torchrun 2 个进程 × batch 4 == 单进程 batch 8: 同样的全局 batch, 同样的 loss。"""
    common = ["--device", "cpu", "--max_steps", "3", "--eval_interval", "100", "--lr", "1e-3"]
    run("train_sft.py", base, *common, "--batch_size", "8", "--out", str(tmp_path / "single.pt"))
    # --standalone: torchrun 自己在本机挑一个空闲端口做 rendezvous (先挑好端口再交给它, 中间可能被别的进程占掉)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        os.path.join(ROOT, "train_sft.py"), *common,
                        "--batch_size", "4", "--out", str(tmp_path / "ddp.pt")],
                       cwd=base, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"torchrun 退出码 {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.count("SFT 数据:") == 1, r.stdout  # 读数据的提示只由 rank 0 说一遍, 不是每个进程一遍
    single = [float(x["loss"]) for x in csv.DictReader(open(tmp_path / "single.log.csv"))]
    ddp = [float(x["loss"]) for x in csv.DictReader(open(tmp_path / "ddp.log.csv"))]
    assert len(single) == len(ddp) == 3
    assert ddp == pytest.approx(single, rel=1e-4)


def test_lora_resume_refuses_a_different_base(base, tmp_path, monkeypatch):
    """续训会把整个模型 (连同冻结的底座) 换成续训状态里的权重: --init 换成了别的底座时拒绝续训,
    否则训练的是旧底座, 适配器却记着新底座的指纹。换了决定数据顺序的 --batch_size 也拒绝。"""
    root = base
    tok = Tokenizer.load(str(root / "data/tokenizer.json"))
    other = tmp_path / "other_base.pt"
    save_model(str(other), tiny_model(tok, seed=5), tok)  # "重新训练过的底座": 同样的形状, 不同的权重
    import train_lora
    monkeypatch.chdir(root)
    monkeypatch.setattr(train_lora, "finish_run", lambda out: None)  # 留下续训状态, 像训练被中途打断了一样
    out = str(tmp_path / "a.pt")
    argv = ["train_lora.py", "--device", "cpu", "--batch_size", "8", "--max_steps", "3", "--save_interval", "1",
            "--lora_r", "4", "--out", out]
    monkeypatch.setattr(sys, "argv", argv)
    train_lora.main()
    monkeypatch.setattr(sys, "argv", argv + ["--resume", "--init", str(other)])
    with pytest.raises(SystemExit, match="对不上 .*base_fingerprint.*同一个 --init") as e:
        train_lora.main()
    assert str(e.value).startswith("错误: ") and "\n" not in str(e.value)
    # 换了 batch 大小, 按步数找回的数据位置就不对了
    monkeypatch.setattr(sys, "argv", argv + ["--resume", "--batch_size", "4"])
    with pytest.raises(SystemExit, match="对不上 .*batch_size: 当时 8, 现在 4"):
        train_lora.main()
    monkeypatch.setattr(sys, "argv", argv + ["--resume"])  # 原来的底座照常续训
    train_lora.main()
    assert load_checkpoint(out)["metrics"]["steps"] == 3
