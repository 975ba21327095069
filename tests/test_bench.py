"""bench.py 的冒烟测试: --quick 在 tiny 形状上作为子进程跑通, 打印表格, JSON 里恰好是文档写的那些键。

不需要 GPU; 装了 transformers 和 peft 时顺带跑 --compare_hf (含 "拷贝权重后 logits 一致" 的检查), 没装就跳过那部分。
另有一个不开子进程的小测试: 按手算核对 MFU 分子的 FLOP 公式。
"""
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import data
from bench import TRAINER_SEED, TrainRun, profile_shares, train_flops_per_token
from lora import apply_lora
from model import GPT, get_config
from tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """几 KB 的对话和一个小分词器, 让 bench 不必临时生成整份示例数据。"""
    d = tmp_path_factory.mktemp("bench_data")
    convs = [[{"role": "user", "content": f"第{i}个问题: {'为什么' * (i % 7 + 1)}天是蓝的? why {i}"},
              {"role": "assistant", "content": f"因为散射。{'Rayleigh scattering. ' * (i % 5 + 1)}"}] for i in range(60)]
    with open(d / "sft_train.jsonl", "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps({"conversations": c, "category": "test"}, ensure_ascii=False) + "\n")
    text = "\n".join(m["content"] for c in convs for m in c)
    Tokenizer.train(text, 320).save(str(d / "tokenizer.json"))
    return d


def test_quick_run_writes_documented_json(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "bench.py", "--quick", "--device", "cpu", "--threads", "1",
           "--data_dir", str(data_dir), "--json", str(out), "--batch_size", "8"] + (["--compare_hf"] if HAS_HF else [])
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("tokens/s", "MFU", "lora_qv", "lora_all", "KV cache", "padding", "分词器"):
        assert word in r.stdout
    # tiny 形状的数和 issue 的目标无关: --quick 不说 "达标"/"未达标"
    assert "不对照目标" in r.stdout and "达标" not in r.stdout
    res = json.loads(out.read_text())
    expected = {"train", "train_100m", "generate", "padding_fraction", "tokenizer_mb_per_s", "matmul_gflops"}
    assert set(res) == expected | ({"hf"} if HAS_HF else set())
    for mode in ("full", "lora_qv", "lora_all"):
        assert set(res["train"][mode]) == {"tokens_per_s", "mfu", "peak_mem_mb"}
        assert res["train"][mode]["tokens_per_s"] > 0 and res["train"][mode]["peak_mem_mb"] > 0
    assert set(res["train_100m"]) == {"full", "lora_qv"}
    assert set(res["generate"]) == {"cache_tokens_per_s", "nocache_tokens_per_s"}
    assert 0 <= res["padding_fraction"] < 1 and res["tokenizer_mb_per_s"] > 0 and res["matmul_gflops"] > 0
    # padding 比例按课程训练器的方式、用 --batch_size (这里 8; --quick 也收它) 和 --max_length 的默认 256 组 batch,
    # --quick 缩小的训练形状 (batch 2) 不影响它
    ds = data.SFTDataset(data.load_conversations(str(data_dir / "sft_train.jsonl"), quiet=True),
                         Tokenizer.load(str(data_dir / "tokenizer.json")), 256)
    batches = data.length_grouped_batches(ds.lengths, 8, seed=TRAINER_SEED, drop_last=True)
    assert res["padding_fraction"] == pytest.approx(data.padding_fraction(ds.lengths, batches))
    assert "(batch 8," in r.stdout
    if HAS_HF:
        assert "logits 和 loss 的最大差" in r.stdout
        assert set(res["hf"]) == {"train", "generate"}
        assert set(res["hf"]["train"]) == {"full", "lora_qv", "lora_all"}
        assert set(res["hf"]["generate"]) == {"cache_tokens_per_s"}


def test_flops_formula_by_hand():
    """tiny 预设: C=32, 4 个 query 头、2 组 kv (kv 宽 16), MLP 64, 2 层, vocab 320。

    每层 Linear 参数: q 32*32 + k 32*16 + v 32*16 + o 32*32 = 3072, MLP 3*32*64 = 6144, 共 9216; 两层 18432。
    lm_head 32*320 = 10240。注意力 6*L*C*T = 6*2*32*T。
    全参 (lm_head 只算一半位置): 6*18432 + 6*10240*0.5 + 6*2*32*T。
    LoRA r=8 on q,v: 每层 A+B = (32*8 + 8*32) + (32*8 + 8*16) = 896 个可训练参数, 两层 1792;
    冻结的权重 (含 lm_head) 只算 4 倍: 4*18432 + 6*1792 + 4*10240*0.5 + 6*2*32*T。
    """
    cfg, T = get_config("tiny"), 32
    model = GPT(cfg)
    assert train_flops_per_token(model, cfg, T, 0.5) == 6 * 18432 + 6 * 10240 * 0.5 + 6 * 2 * 32 * T
    apply_lora(model, "q_proj,v_proj", r=8)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 1792
    assert train_flops_per_token(model, cfg, T, 0.5) == 4 * 18432 + 6 * 1792 + 4 * 10240 * 0.5 + 6 * 2 * 32 * T


def test_bad_flag_is_one_line():
    r = subprocess.run([sys.executable, "bench.py", "--repeats", "0", "--threads", "0"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "错误: --threads 必须 >= 1, 收到 0; --repeats 必须 >= 1, 收到 0"


def test_missing_data_dir_or_preset_with_quick_is_one_line(tmp_path):
    """--data_dir 写错了: 一行报错, 而不是悄悄量一份临时生成的示例数据; --quick 配 --preset、--seq_len: 说明 --quick 会忽略它。"""
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--device", "cpu", "--data_dir", str(tmp_path / "nope")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.startswith("错误: 数据目录 ") and "--data_dir) 找不到" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--device", "cpu", "--data_dir", "README.md"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)  # 存在, 但是个文件
    assert r.returncode != 0 and r.stderr.startswith("错误: 数据目录 README.md (--data_dir) 不是目录"), r.stderr
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--preset", "gpu"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and r.stdout == "" and r.stderr.startswith("错误: --quick 固定用 tiny 形状")
    # --quick 也会忽略形状和计时参数; 线程数多于核数 (几万个时 OpenMP 建不出线程, 进程直接崩掉): 都是一行
    for extra, says in [(["--seq_len", "64"], "会忽略 --seq_len。"), (["--threads", "100000"], "错误: --threads 100000 多于这台机器的 CPU 核数")]:
        r = subprocess.run([sys.executable, "bench.py", "--quick", *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and r.stdout == "" and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("where", ["dir", "file_as_folder"])
def test_bad_json_path_is_one_line_before_measuring(tmp_path, where):
    """--json 是目录、或所在的 "目录" 其实是个文件: 开始测量之前一行报错, 而不是测完几分钟后的 traceback。"""
    (tmp_path / "f").write_text("x")
    path = tmp_path if where == "dir" else tmp_path / "f" / "bench.json"
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--device", "cpu", "--threads", "1", "--json", str(path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.startswith("错误: --json ") and len(r.stderr.strip().splitlines()) == 1


def test_compile_flag_reports_compiled_training(data_dir, tmp_path, monkeypatch, capsys):
    """--compile 多量一遍编译后的训练 (三种配置各一个; 有 --compare_hf 时 HF 也编译一份), 打印在表里, 也写进 JSON。
    真编译要几十秒: 这里把 torch.compile 换成原样返回, 只测这条管线 (--quick 不开子进程, 所以 monkeypatch 管用)。"""
    import torch
    import bench
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # 别把整个 pytest 进程改成 1 个线程
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench.py", "--quick", "--compile", "--device", "cpu", "--data_dir", str(data_dir),
                                      "--json", str(out)] + (["--compare_hf"] if HAS_HF else []))
    bench.main()
    assert len(compiled) == (6 if HAS_HF else 3)
    printed = capsys.readouterr().out
    assert all(f"torch.compile {mode}" in printed for mode in ("full", "lora_qv", "lora_all"))
    res = json.loads(out.read_text())
    assert set(res["compiled"]) == {"full", "lora_qv", "lora_all"}
    for r in res["compiled"].values():
        assert set(r) == {"tokens_per_s", "mfu", "warmup_s"} and r["tokens_per_s"] > 0 and r["warmup_s"] > 0
    if HAS_HF:
        assert printed.count("两边都编译: 我们/HF") == 3 and set(res["hf"]["compiled"]) == {"full", "lora_qv", "lora_all"}


def test_profile_shares_sum_to_one_and_find_the_optimizer():
    """--profile 的归类: 一个训练步里矩阵乘、注意力、优化器各有份, 合起来正好 100%。"""
    run = TrainRun(dict(device="cpu", threads=1, warmup=1, steps=1, repeats=1, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                        mode="full", impl="ours", preset="tiny", batch_size=2, seq_len=32))
    shares = profile_shares(run.run)
    assert abs(sum(shares.values()) - 1) < 1e-6
    assert {"矩阵乘 (mm)", "注意力 (SDPA)", "优化器 (AdamW)"} <= set(shares)
    assert all(v > 0 for v in shares.values())


def test_profile_flag_prints_the_breakdown(data_dir):
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--profile", "--device", "cpu", "--threads", "1",
                        "--data_dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "全参训练" in r.stdout and "生成" in r.stdout and "矩阵乘 (mm)" in r.stdout


def test_gpu_check_passes_only_flags_the_scripts_know(tmp_path):
    """gpu_check.sh 要在难得借到的 GPU 上一次跑通: 它传给每个脚本的参数, 那个脚本的 argparse 里都要有。
    用一个假的 python (只记下参数, 什么也不跑) 把整个脚本走一遍, 再和各脚本 --help 列出的参数比。"""
    import re
    calls_file, fake = tmp_path / "calls.txt", tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\nif [ "$1" = "-c" ]; then exec "{sys.executable}" "$@"; fi\n'
                    f'printf "%s\\n" "$*" >> "{calls_file}"\n', encoding="utf-8")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}", DEVICE="cpu", TMPDIR=str(tmp_path))
    r = subprocess.run(["bash", "gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    calls = [line.split() for line in calls_file.read_text(encoding="utf-8").splitlines()]
    scripts = sorted({c[0] for c in calls})
    assert scripts == ["bench.py", "chat.py", "data.py", "evaluate.py", "pretrain.py", "train_lora.py", "train_sft.py"]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # 每个 --help 都要先花一两秒导入 torch: 同时跑
        helps = list(pool.map(lambda script: subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                                                            text=True).stdout, scripts))
    for script, help_text in zip(scripts, helps):
        used = {t for c in calls if c[0] == script for t in c[1:] if t.startswith("--")}
        assert used <= set(re.findall(r"--[a-z_]+", help_text)), (script, used - set(re.findall(r"--[a-z_]+", help_text)))
