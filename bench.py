"""bench.py — 性能基准: 在这台机器上, 一次运行量出一张表, 可选地与 Hugging Face transformers + PEFT 并排对比。

量什么 (每项怎么量写在对应函数里):
  - 训练 tokens/s 与 MFU: 全参 SFT、LoRA r=8 (q_proj,v_proj)、LoRA all-linear; 默认形状 vocab 4096、宽 256、6 层、
    8 头、MLP 688, batch 16 x 256, 每行前一半 label = -100 (相当于 prompt), 预热步不计, 取 3 次计时的中位数。
  - 峰值内存: 每个配置在一个全新的子进程里跑 (CPU 的 RSS 高水位是按进程算的, 混在一起就分不开);
    另外在约 1 亿参数 (gpu 预设, batch 1) 上比较全参与 LoRA q,v —— 那里权重、梯度和优化器状态才是大头。
  - 生成 tokens/s: 32 个 token 的提示, batch 1, 贪心, 忽略结束符, 生成 200 个, 带与不带 KV cache。
  - 示例数据按训练器的方式组 batch (length_grouped_batches, batch 16) 后的 padding 比例; 分词器编码 MB/s。

MFU 的分子是这一步训练要做的矩阵乘 (每个 token, 前向 + 反向), 我们和 HF 用同一个数, 所以 MFU 之比就是速度之比:
  - 可训练的 Linear 权重 N 个参数: 6N (前向 2N, 对输入求梯度 2N, 对权重求梯度 2N);
  - 冻结的 Linear (LoRA 时的底座): 4N —— 冻结的权重不需要权重梯度那次矩阵乘 (第 0 层的 q/k/v 连对输入的梯度
    也不用算, 只要 2N; 这里仍记 4N, 高估约 1~2%);
  - lm_head 只算 label 不是 -100 的位置 (这里约一半): loss 只要这些位置的 logits。我们的模型也只算这些;
    HF 每个位置都算, 多做的那些不算进它的 MFU (按 issue 字面的 6N, lm_head 每个位置都算的话, 两边的 MFU 都高 8%–9% 左右);
  - 注意力 (因果, 只算下三角那一半): 前向每层每 token 2·C·T (QK^T 与 AV 各 C·T), 训练 x3, 即 6·L·C·T。
  分母是本脚本现场量出的矩阵乘峰值: CPU 上 2048x2048 的 fp32 torch.mm, CUDA 上 8192x8192 的 bf16, 开头和每轮计时后
  各量一次, 取最好的一次。tokens/s 计入所有 token (含被掩码的一半)。

共享的机器很吵: 绝对数字会差好几倍, 所以我们与 HF 在各自的常驻子进程里 A B A B 交替计时, 看的是同一次运行里的比值。

--compile 时另外量一遍 torch.compile 之后的训练 (与训练脚本的 --compile 相同), 连同含编译的预热用时;
和 --compare_hf 一起时 HF 的模型也编译一份, 比两边都编译后的速度。
不做什么: 不测多卡、不测量化, 生成不编译。
优化器: 两边都用 trainer.make_optimizer (AdamW, 两组 weight decay, CUDA 上 fused): 比的是模型代码, 不是优化器。

运行:
    python bench.py                              # 默认形状, CPU 上约 2 分钟
    pip install -r requirements-bench.txt && python bench.py --compare_hf --json bench.json
    python bench.py --device cuda --preset gpu --json bench_gpu.json
    python bench.py --profile                    # 时间花在哪: 矩阵乘 / 注意力 / 优化器 / 其余各占几成
    python bench.py --quick                      # 极小形状的冒烟测试 (tests/test_bench.py 用它)
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch
import torch.nn as nn

import data
from checkpoint import check_output_path, save_results_json
from lora import apply_lora
from model import GPT, get_config, pick_device
from trainer import amp_dtype, autocast_for, below_minimum, make_optimizer, n_targets, peak_memory_mb, use_tf32

TARGETS = {"full": None, "lora_qv": "q_proj,v_proj", "lora_all": "all-linear"}  # 三种训练配置 -> apply_lora 的目标
TRAINER_SEED = 1337  # 训练脚本 --seed 的默认值: 第 0 个 epoch 的 batch 顺序由它决定


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def sync(device):
    """GPU 是异步的: 计时前后要等它真的算完。"""
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # 不带参数时等的是 "当前" GPU, --device cuda:1 时就等错了卡
    elif device.type == "mps":
        torch.mps.synchronize()


def precision(device):
    """矩阵乘峰值和训练用的精度的名字: bf16 / fp16 (不支持 bf16 的老卡) / fp32。"""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype(device), "fp32")


def matmul_gflops(device, n, repeats):
    """矩阵乘峰值: 两个 n x n 矩阵相乘 2n^3 次浮点运算, 取中位数。"""
    dtype = amp_dtype(device) or torch.float32  # 和训练用的精度一致: CUDA 上 bf16 (老卡 fp16), 其他设备 fp32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    inner = 20 if device.type == "cuda" else 1  # GPU 上一次乘法太快, 计时要攒一批
    times = []
    for i in range(repeats + 2):  # 前 2 次是预热
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        if i >= 2:
            times.append((time.perf_counter() - t0) / inner)
    return 2 * n**3 / statistics.median(times) / 1e9


def train_flops_per_token(model, cfg, seq_len, head_fraction):
    """每个 token 一个训练步实际做的浮点运算 (见文件开头的公式)。对我们的模型和 HF/PEFT 的模型都适用:
    只看 nn.Linear 模块和它的权重是否 requires_grad。head_fraction: lm_head 真正计算的位置占比。"""
    flops = 0.0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            per_weight = 6 if m.weight.requires_grad else 4
            share = head_fraction if name.split(".")[-1] == "lm_head" else 1.0
            flops += per_weight * m.weight.numel() * share
    return flops + 6 * cfg.n_layer * cfg.n_embd * seq_len


def make_batch(cfg, batch_size, seq_len, device):
    """固定种子的随机 token; 每行前一半 label = -100 (prompt), 后一半训练。我们和 HF 用同一个 batch。"""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=g)  # (B, T)
    labels = input_ids.clone()
    labels[:, :seq_len // 2] = data.IGNORE_INDEX
    return input_ids.to(device), labels.to(device)


def build_ours(cfg, target, s, device):
    torch.manual_seed(0)  # 同一个种子 -> 同一份初始权重, HF 一侧拷贝的也是它
    model = GPT(cfg)
    if target:
        apply_lora(model, target, r=s["lora_r"], alpha=s["lora_alpha"], dropout=s["lora_dropout"])
    return model.to(device)


def build_hf(cfg, target, s, device):
    """同形状的 LlamaForCausalLM, 拷入我们的权重, 核对 logits; target 不为空时再套同配置的 PEFT LoRA。"""
    import warnings
    from transformers import LlamaConfig, LlamaForCausalLM
    warnings.filterwarnings("ignore", category=FutureWarning)  # 库内部的弃用提示, 与测量无关
    ours = build_ours(cfg, None, s, device).eval()
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                         num_key_value_heads=cfg.n_kv_head, head_dim=cfg.n_embd // cfg.n_head,
                         max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
                         tie_word_embeddings=True, attention_bias=False, mlp_bias=False, hidden_act="silu",
                         attention_dropout=cfg.dropout, attn_implementation="sdpa",
                         # 没有结束符: 生成时不必每步查停没停, 也不禁止 id 2 (LlamaConfig 默认 eos 是 2);
                         # 也没有 pad (有的话, 提示里等于 pad 的 token 会被 generate 当成 padding 遮掉)
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf = LlamaForCausalLM(hf_cfg).to(device)
    # 模块名与 HF 一致, 只差 "model." 前缀 (lm_head 在外层); strict=True: 少一个、多一个都报错
    hf.load_state_dict({(k if k == "lm_head.weight" else "model." + k): v for k, v in ours.state_dict().items()})
    hf.eval()
    x, labels = make_batch(cfg, 2, min(64, cfg.max_seq_len), device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # 核对用真正的 fp32: TF32 下两边各自的舍入就可能超过 1e-4
    try:
        with torch.no_grad():
            diff = (ours(x)[0] - hf(x).logits).abs().max().item()
            # loss 也要一样: 两边对 labels 的理解 (模型内部错一位、-100 不计) 相同, 训练时比的才是同一件事
            diff = max(diff, (ours(x, labels)[1] - hf(input_ids=x, labels=labels).loss).abs().item())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if not diff < 1e-4:
        raise SystemExit(f"错误: 拷贝权重后我们与 HF 的 logits 或 loss 最大相差 {diff:.2e} (bench.py build_hf)。两边的结构不一致, 对比没有意义")
    if target:
        from peft import LoraConfig, get_peft_model
        targets = "all-linear" if target == "all-linear" else target.split(",")
        hf = get_peft_model(hf, LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                                           target_modules=targets, bias="none", task_type="CAUSAL_LM"))
    return hf, diff


class TrainRun:
    """一个训练配置 (我们或 HF; full / lora_qv / lora_all): 建好模型并预热; 每次 run() 计时 s["steps"] 个训练步。"""

    def __init__(self, s):
        self.s, device = s, torch.device(s["device"])
        self.device, self.cfg = device, get_config(s["preset"])
        if device.type == "cuda":  # --quick 时几个配置在同一个进程里跑: 显存峰值要从这个配置开始重新记
            torch.cuda.init()  # 带编号的设备 (cuda:1) 不会顺带初始化 CUDA, 直接查显存统计会报 "did you call init?"
            torch.cuda.reset_peak_memory_stats(device)
        self.base_mem = peak_memory_mb(device)  # 建模型之前: CPU 上就是 import torch 等库之后的 RSS
        target = TARGETS[s["mode"]]
        if s["impl"] == "hf":
            self.model, self.diff = build_hf(self.cfg, target, s, device)
        else:
            self.model, self.diff = build_ours(self.cfg, target, s, device), None
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # 两边同一个优化器 (训练器里的那个, CUDA 上 fused; HF Trainer 新版默认也是 fused AdamW): 比的是模型代码
        self.opt = make_optimizer(self.model, 3e-4, 0.1, device)
        if s.get("compile"):  # 编译后的模块与原模型共享参数; 第一步前向、反向时才真正编译 (算在预热里)
            self.model = torch.compile(self.model)
        self.autocast, _ = autocast_for(device)  # CUDA 上两边都用同样的 bf16 autocast
        self.input_ids, self.labels = make_batch(self.cfg, s["batch_size"], s["seq_len"], device)
        t0 = time.perf_counter()
        for _ in range(s["warmup"]):  # 预热: 第一步才分配优化器状态, 前几步还有各种缓存要建 (--compile 时还要编译)
            self.step()
        sync(device)
        self.warmup_s = time.perf_counter() - t0

    def step(self):  # 与 trainer.train 的一步相同: 前向、反向、梯度裁剪、更新、清梯度
        with self.autocast():
            if self.s["impl"] == "ours":
                loss = self.model(self.input_ids, self.labels)[1]
            else:  # use_cache=False: 训练时不需要 KV cache, 免得 HF 白建一个
                loss = self.model(input_ids=self.input_ids, labels=self.labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, arg=None):
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(self.s["steps"]):
            self.step()
        sync(self.device)
        return time.perf_counter() - t0

    def info(self):
        # lm_head 只记有 label 的位置 (loss 要的): 两边同一个 FLOPs, HF 在其余位置多算的不记 (见文件开头)
        head_fraction = n_targets(self.labels).item() / self.labels.numel()
        return {"tokens_per_run": self.labels.numel() * self.s["steps"], "peak_mem_mb": peak_memory_mb(self.device),
                "base_mem_mb": self.base_mem,
                "flops_per_token": train_flops_per_token(self.model, self.cfg, self.s["seq_len"], head_fraction),
                "params": sum(p.numel() for p in self.model.parameters()),
                "trainable": sum(p.numel() for p in self.params), "logits_diff": self.diff, "warmup_s": self.warmup_s}


class GenerateRun:
    """batch 1、贪心、不因结束符停下地生成 s["gen_tokens"] 个 token; run(use_cache) 计时一次。"""

    def __init__(self, s):
        self.s, self.device, cfg = s, torch.device(s["device"]), get_config(s["preset"])
        g = torch.Generator().manual_seed(1)
        self.prompt = torch.randint(0, cfg.vocab_size, (s["prompt_len"],), generator=g).tolist()
        if s["impl"] == "hf":
            self.model, self.diff = build_hf(cfg, None, s, self.device)
        else:
            self.model, self.diff = build_ours(cfg, None, s, self.device), None
        self.model.eval()
        self.ids = {}
        for use_cache in (True, False):  # 预热
            self.generate(use_cache, 8)

    def generate(self, use_cache, n):
        if self.s["impl"] == "hf":  # 模型没有结束符 (build_hf): 一定生成满 n 个, 与我们忽略结束符一致
            x = torch.tensor([self.prompt], device=self.device)
            out = self.model.generate(x, do_sample=False, max_new_tokens=n, use_cache=use_cache)
            return out[0, len(self.prompt):].tolist()
        return list(self.model.generate(self.prompt, max_new_tokens=n, temperature=0, eos_id=None, use_cache=use_cache))

    def run(self, use_cache):
        t0 = time.perf_counter()  # 每个 token 都要 .item() 取回来, 已经同步, 不用再 sync
        ids = self.generate(use_cache, self.s["gen_tokens"])
        dt = time.perf_counter() - t0
        assert len(ids) == self.s["gen_tokens"], f"生成了 {len(ids)} 个 token, 应为 {self.s['gen_tokens']}"
        self.ids[use_cache] = ids
        return dt

    def info(self):
        return {"tokens_per_run": self.s["gen_tokens"], "ids": self.ids[True], "logits_diff": self.diff}


class Worker:
    """在一个全新的 Python 进程里持有一个 TrainRun/GenerateRun: CPU 的 RSS 高水位是按进程算的, 这样每个配置的
    峰值内存互不干扰。进程一直活着, 主进程让我们与 HF 轮流计时 (A B A B ...), 机器负载的起伏就同时落在两边。"""

    def __init__(self, kind, s):
        self.err = tempfile.TemporaryFile(mode="w+")  # 子进程的 stderr (库的警告) 放这里, 出错时取最后一行
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_worker", json.dumps([kind, s])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.name = f"{s['impl']} {s.get('mode', 'generate')}"
        self.call("ready")  # 等它建好模型、预热完, 才开始下一个

    def call(self, method, arg=None):
        if method != "ready":
            self.p.stdin.write(json.dumps([method, arg]) + "\n")
            self.p.stdin.flush()
        for line in self.p.stdout:  # 只认带前缀的行: 库有时会往 stdout 打印东西
            if line.startswith("@bench "):
                return json.loads(line[7:])
        self.err.seek(0)
        last = (self.err.read().strip().splitlines() or ["(没有输出)"])[-1].removeprefix("错误: ")
        raise SystemExit(f"错误: 测量子进程 ({self.name}) 失败: {last}")

    def run(self, arg=None):
        return self.call("run", arg)

    def info(self):
        out = self.call("info")
        self.p.stdin.close()
        self.p.wait()
        return out


def worker_main(spec):
    """子进程这一侧: 建好测量对象, 然后一行一个命令 (run / info), 一行一个结果。"""
    kind, s = json.loads(spec)
    torch.set_num_threads(s["threads"])
    if kind == "train":  # 生成两边都用真正的 fp32: TF32 的舍入会让两边贪心选出的 token 对不上 (batch 1 的生成也不靠算力)
        use_tf32(torch.device(s["device"]))
    obj = (TrainRun if kind == "train" else GenerateRun)(s)
    print("@bench null", flush=True)
    for line in sys.stdin:
        method, arg = json.loads(line)
        print("@bench " + json.dumps(obj.run(arg) if method == "run" else obj.info()), flush=True)


def measure(runs, schedule, repeats, probe=None):
    """runs: {名字: TrainRun/GenerateRun/Worker}; schedule: 一轮里依次做的 (名字, run 的参数)。
    重复 repeats 轮, 返回 ({(名字, 参数): 中位数秒数}, {名字: info})。probe: 每轮之后调用一次 (再量一次矩阵乘峰值)。"""
    times = {key: [] for key in schedule}
    for _ in range(repeats):
        for name, arg in schedule:
            times[name, arg].append(runs[name].run(arg))
        if probe:
            probe()
    return {key: statistics.median(v) for key, v in times.items()}, {name: r.info() for name, r in runs.items()}


def op_category(event):
    """torch.profiler 的一个算子事件 -> 它属于哪一类。优化器 step 里的算子 (逐元素的 mul_、addcdiv_……) 都归优化器。"""
    p = event
    while p is not None:
        if p.name.startswith("Optimizer.step"):
            return "优化器 (AdamW)"
        p = p.cpu_parent
    if event.name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return "矩阵乘 (mm)"
    if "scaled_dot_product" in event.name or "flash_attention" in event.name:
        return "注意力 (SDPA)"
    return "其余 (逐元素运算、拷贝、调度)"


def profile_shares(fn):
    """在 torch.profiler 下跑一次 fn(), 返回 {类别: 占全部算子自身 CPU 时间的比例}, 从大到小。"""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    total = {}
    for e in prof.events():  # 自身时间 (不含它调用的子算子): 加起来就是总时间, 不会重复计
        category = op_category(e)
        total[category] = total.get(category, 0) + e.self_cpu_time_total
    n = sum(total.values()) or 1
    return {k: v / n for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def profile_breakdown(spec, gen_tokens, prompt_len):
    """--profile: 剖析我们的一个全参训练步和一次带 KV cache 的生成, 时间按算子归类。
    看的是 "时间花在哪", 不是速度 (剖析本身会拖慢每个小算子)。"""
    train = TrainRun(dict(spec, mode="full", impl="ours"))
    gen = GenerateRun(dict(spec, impl="ours", gen_tokens=gen_tokens, prompt_len=prompt_len))
    weights_mb = sum(p.numel() * p.element_size() for p in gen.model.parameters()) / 1e6
    for title, fn in ((f"全参训练 {spec['steps']} 步", train.run),
                      (f"生成 {gen_tokens} 个 token (KV cache)", lambda: gen.generate(True, gen_tokens))):
        print(f"{title}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in profile_shares(fn).items()))
    print(f"权重 {weights_mb:.1f} MB ({next(gen.model.parameters()).dtype}): batch 1 生成时每个 token 都要把它们读一遍")


def data_figures(data_dir, batch_size, max_length, repeats):
    """示例数据按训练器方式组 batch 后的 padding 比例, 以及分词器编码速度。数据不在时临时生成 (不写进 data_dir)。"""
    from tokenizer import Tokenizer
    train_path, tok_path = os.path.join(data_dir, "sft_train.jsonl"), os.path.join(data_dir, "tokenizer.json")
    note = f"{train_path}"
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        if not (os.path.exists(train_path) and os.path.exists(tok_path)):
            # 与 python data.py --create_sample 完全相同 (同样的默认词表), 只是写到临时目录
            subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.py"),
                            "--create_sample", "--out_dir", tmp], check=True, capture_output=True)
            train_path, tok_path = os.path.join(tmp, "sft_train.jsonl"), os.path.join(tmp, "tokenizer.json")
            note = f"{data_dir}/ 里没有示例数据, 临时生成了一份 (python data.py --create_sample 会生成到 data/)"
        tok = Tokenizer.load(tok_path)
        convs = data.load_conversations(train_path, quiet=True)
    ds = data.SFTDataset(convs, tok, max_length)
    # 与 trainer.train 相同: 第 0 个 epoch 的分组, 丢掉凑不满的零头
    batches = data.length_grouped_batches(ds.lengths, batch_size, seed=TRAINER_SEED, drop_last=True)
    text = "\n".join(m["content"] for c in convs for m in c)
    times = []
    for _ in range(repeats):
        fresh = Tokenizer.from_dict(tok.to_dict())  # 每次都从空的分词缓存开始, 不然第二次是在查表
        t0 = time.perf_counter()
        fresh.encode(text)
        times.append(time.perf_counter() - t0)
    mb = len(text.encode("utf-8")) / 1e6
    return data.padding_fraction(ds.lengths, batches), mb / statistics.median(times), note


def main():
    p = make_parser("性能基准: 训练 tokens/s 与 MFU、峰值内存、生成速度、padding 比例、分词速度")
    # 形状与设备
    p.add_argument("--device", default="auto", help="auto (依次尝试 cuda、mps、cpu) / cuda / mps / cpu")
    p.add_argument("--preset", default="default", help="训练速度用的模型预设 (见 python model.py)")
    p.add_argument("--batch_size", type=int, default=16, help="训练 batch 的样本数, 也是算 padding 比例时的 batch 大小")
    p.add_argument("--seq_len", type=int, default=256, help="训练 batch 每行的 token 数 (前一半 label=-100)")
    p.add_argument("--big_preset", default="gpu", help="比较峰值内存用的大模型预设 (约 1 亿参数)")
    p.add_argument("--big_batch_size", type=int, default=1, help="大模型的 batch 大小")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch 的 CPU 线程数 (默认全部核)")
    # 计时
    p.add_argument("--warmup", type=int, default=2, help="不计时的预热步数")
    p.add_argument("--steps", type=int, default=2, help="每次计时跑几个训练步")
    p.add_argument("--repeats", type=int, default=3, help="计时重复几次, 取中位数")
    p.add_argument("--gen_tokens", type=int, default=200, help="生成多少个新 token")
    p.add_argument("--prompt_len", type=int, default=32, help="生成时提示的 token 数")
    # LoRA (两边相同)
    p.add_argument("--lora_r", type=int, default=8, help="LoRA 的秩 r")
    p.add_argument("--lora_alpha", type=float, default=16, help="LoRA 的 alpha (旁路乘 alpha / r)")
    p.add_argument("--lora_dropout", type=float, default=0.05, help="LoRA 旁路输入上的 dropout")
    # 其他
    p.add_argument("--data_dir", default=data.DATA_DIR, help="示例数据目录 (sft_train.jsonl 与 tokenizer.json)")
    p.add_argument("--compile", action="store_true", help="另外量一遍 torch.compile 之后的训练速度 (报告含编译的预热用时); 和 --compare_hf 一起时 HF 也编译一份, 比两边都编译后的速度")
    p.add_argument("--profile", action="store_true", help="只剖析: 我们的训练步和生成的时间按算子归类 (矩阵乘/注意力/...), 不计时")
    p.add_argument("--compare_hf", action="store_true", help="同时测 transformers + PEFT 并打印比值 (需要 pip install -r requirements-bench.txt)")
    p.add_argument("--json", help="把结果写成 JSON 文件")
    p.add_argument("--quick", action="store_true", help="极小形状、只计时一次、不开子进程: 只检查脚本能跑通, 数字没有意义")
    p.add_argument("--_worker", help=argparse.SUPPRESS)  # 内部用: 子进程收到一项测量的设置 (JSON)
    args = p.parse_args()

    if args._worker:
        return worker_main(args._worker)
    bad = below_minimum(args, {"batch_size": 1, "seq_len": 2, "big_batch_size": 1, "threads": 1, "warmup": 0, "steps": 1,
                               "repeats": 1, "gen_tokens": 1, "prompt_len": 1})
    if args.threads > (os.cpu_count() or 1):  # 多出来的线程只会抢同一批核; 几万个线程时 OpenMP 建不出来, 进程直接崩掉
        bad.append(f"--threads {args.threads} 多于这台机器的 CPU 核数 {os.cpu_count()}")
    if bad:
        raise SystemExit("错误: " + "; ".join(bad))
    if args.json is not None:
        # 测量要几分钟; 先确认结果写得出去。已有的文件必须是 bench.py 写过的结果, 才可以覆盖
        check_output_path(args.json, "--json", ours=lambda obj: isinstance(obj, dict)
                          and {"train", "generate", "padding_fraction", "matmul_gflops"} <= obj.keys())
    if args.compare_hf:
        try:
            import peft  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise SystemExit("错误: --compare_hf 需要 transformers 和 peft。先运行 pip install -r requirements-bench.txt")
    if args.data_dir != data.DATA_DIR and not os.path.isdir(args.data_dir):
        what = "不是目录" if os.path.exists(args.data_dir) else "找不到"
        raise SystemExit(f"错误: 数据目录 {args.data_dir} (--data_dir) {what}: 这里要的是 data.py --create_sample 生成的那种目录。"
                         f"不给这个参数就用 {data.DATA_DIR}/ (没有时临时生成示例数据)")
    # padding 比例按课程的训练器组 batch: 在 --quick 缩小形状之前定下 batch 和长度 (256 = train_sft.py 的 --max_length 默认值),
    # 这样冒烟测试量出的也是真实的数; 所以 --quick 不拦 --batch_size (它仍决定 padding 比例的 batch), 只拦完全用不上的形状参数
    pad_batch, pad_len = args.batch_size, min(256, get_config(args.preset).max_seq_len)
    fixed = ["preset", "big_preset", "seq_len", "gen_tokens", "prompt_len", "warmup", "steps", "repeats"]
    ignored = [f"--{k}" for k in fixed if getattr(args, k) != p.get_default(k)]
    if args.quick and ignored:
        raise SystemExit(f"错误: --quick 固定用 tiny 形状、每项只跑一次, 会忽略 {', '.join(ignored)}。量真实的形状时去掉 --quick")
    if args.quick:  # 冒烟测试: tiny 模型, 每项只跑一次
        args.preset = args.big_preset = "tiny"
        args.batch_size, args.seq_len, args.gen_tokens, args.prompt_len = 2, 32, 8, 8
        args.warmup, args.steps, args.repeats = 1, 1, 1
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    use_tf32(device)  # 主进程 (--quick 时就在这里量) 和每个训练的子进程 (worker_main) 都设, 与 trainer 一致
    cfg, big_cfg = get_config(args.preset), get_config(args.big_preset)
    if max(args.seq_len, args.prompt_len + args.gen_tokens) > min(cfg.max_seq_len, big_cfg.max_seq_len):
        raise SystemExit(f"错误: --seq_len {args.seq_len} 或 提示+生成 {args.prompt_len + args.gen_tokens} 超过了预设的 "
                         f"max_seq_len ({args.preset}: {cfg.max_seq_len}, {args.big_preset}: {big_cfg.max_seq_len})。调小它们")
    base = dict(device=str(device), threads=args.threads, warmup=args.warmup, steps=args.steps, repeats=args.repeats,
                lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"机器: {machine} | torch {torch.__version__} | 线程 {torch.get_num_threads()} | 设备 {device}")
    print(f"形状 ({args.preset}): vocab {cfg.vocab_size}, 宽 {cfg.n_embd}, {cfg.n_layer} 层, {cfg.n_head} 头 "
          f"(kv {cfg.n_kv_head}), MLP {cfg.intermediate_size}; batch {args.batch_size} x {args.seq_len}, "
          f"每行前一半 label=-100; {'CUDA ' + precision(device) + ' autocast' if device.type == 'cuda' else 'fp32'}; "
          f"预热 {args.warmup} 步, {args.repeats} 次计时 x {args.steps} 步取中位数")
    print(f"LoRA: r={args.lora_r}, alpha={args.lora_alpha:g}, dropout={args.lora_dropout:g} (两边相同); 优化器: "
          f"两边都是 trainer.make_optimizer; 两边都有梯度裁剪 1.0\n")

    if args.profile:
        if device.type != "cpu":
            raise SystemExit("错误: --profile 只剖析 CPU (加 --device cpu); GPU 上请用 torch.profiler 的 CUDA 活动或 Nsight Systems")
        return profile_breakdown(dict(base, preset=args.preset, batch_size=args.batch_size, seq_len=args.seq_len),
                                 args.gen_tokens, args.prompt_len)

    # 矩阵乘峰值在开头量一次, 之后每轮计时后再量一次, 取最大值: 共享的机器忽快忽慢, 只在开头量一次的话,
    # 碰上别人正在跑, 峰值偏低, MFU 就会虚高 (甚至超过 100%)。取整场里最好的一次, MFU 只会偏保守。
    mm_size = 512 if args.quick else 8192 if device.type == "cuda" else 2048
    peaks = [matmul_gflops(device, mm_size, args.repeats + 2)]

    def probe():
        peaks.append(matmul_gflops(device, mm_size, 1))

    def start(kind, s):  # quick 模式为了快, 就在本进程里量 (峰值内存因此不分开)
        return Worker(kind, s) if not args.quick else (TrainRun if kind == "train" else GenerateRun)(s)

    impls = ["ours", "hf"] if args.compare_hf else ["ours"]
    train, hf_train, compiled, hf_compiled = {}, {}, {}, {}
    for mode in TARGETS:
        spec = dict(base, mode=mode, preset=args.preset, batch_size=args.batch_size, seq_len=args.seq_len)
        runs = {impl: start("train", dict(spec, impl=impl)) for impl in impls}
        if args.compile:  # 同一份权重和 batch, 只多一步 torch.compile; 和另外几个交替计时。
            # HF 也编译一份: 只拿我们编译后的和 HF 不编译的比, 不公平 (谁都可以 torch.compile)
            for impl in impls:
                runs[{"ours": "compiled", "hf": "hf_compiled"}[impl]] = start("train", dict(spec, impl=impl, compile=True))
        times, infos = measure(runs, [(name, None) for name in runs], args.repeats, probe)
        for name, out in (("ours", train), ("hf", hf_train), ("compiled", compiled), ("hf_compiled", hf_compiled)):
            if name in runs:
                out[mode] = dict(infos[name], tokens_per_s=infos[name]["tokens_per_run"] / times[name, None])
    big = {}
    for mode in ("full", "lora_qv"):  # 只看内存: 预热 1 步 (分配优化器状态) + 计时 1 步
        spec = dict(base, mode=mode, impl="ours", preset=args.big_preset, batch_size=args.big_batch_size,
                    seq_len=args.seq_len, warmup=1, steps=1)
        big[mode] = measure({"ours": start("train", spec)}, [("ours", None)], 1)[1]["ours"]
    spec = dict(base, preset=args.preset, gen_tokens=args.gen_tokens, prompt_len=args.prompt_len)
    runs = {impl: start("generate", dict(spec, impl=impl)) for impl in impls}
    times, infos = measure(runs, [(impl, True) for impl in impls] + [("ours", False)], args.repeats, probe)
    gen = {"cache_tokens_per_s": args.gen_tokens / times["ours", True],
           "nocache_tokens_per_s": args.gen_tokens / times["ours", False], "ids": infos["ours"]["ids"]}
    hf_gen = None if not args.compare_hf else {"cache_tokens_per_s": args.gen_tokens / times["hf", True],
                                               "ids": infos["hf"]["ids"], "logits_diff": infos["hf"]["logits_diff"]}
    pad, tok_mb_s, data_note = data_figures(args.data_dir, pad_batch, pad_len, args.repeats)

    res = dict(peak=max(peaks), peaks=peaks, mm_size=mm_size, train=train, hf_train=hf_train, compiled=compiled, hf_compiled=hf_compiled,
               big=big, gen=gen, hf_gen=hf_gen, pad=pad, pad_batch=pad_batch, tok_mb_s=tok_mb_s, data_note=data_note, device=device)
    report(args, res)
    if args.json is not None:
        save_results_json(args.json, summary(res, args.compare_hf))
        print(f"写入 {args.json}")


def mfu(r, peak):
    return r["flops_per_token"] * r["tokens_per_s"] / (peak * 1e9)


def report(args, res):
    """打印那张表, 以及对照 issue 里各项目标的结论。"""
    peak, train, hf_train, gen, hf_gen = res["peak"], res["train"], res["hf_train"], res["gen"], res["hf_gen"]
    ratio = lambda a, b: f"{a / b:.2f}x"
    print(f"矩阵乘峰值 ({precision(res['device'])} torch.mm {res['mm_size']}x{res['mm_size']}): "
          f"{peak:,.0f} GFLOP/s (整场 {len(res['peaks'])} 次里最好的; 最差 {min(res['peaks']):,.0f}, 差得多说明机器上还有别人在跑)")
    print(f"\n训练 ({train['full']['params'] / 1e6:.2f}M 参数)    tokens/s     MFU  峰值内存MB  可训练参数"
          + ("  |  HF tokens/s  HF MFU   我们/HF" if hf_train else ""))
    for mode, r in train.items():
        line = f"  {mode:10s} {r['tokens_per_s']:14,.0f} {mfu(r, peak):7.1%} {r['peak_mem_mb']:11,.0f} {r['trainable']:11,}"
        if hf_train:
            h = hf_train[mode]
            line += f"  |  {h['tokens_per_s']:11,.0f} {mfu(h, peak):7.1%} {ratio(r['tokens_per_s'], h['tokens_per_s']):>9}"
        print(line)
    for mode, c in res["compiled"].items():
        r = train[mode]
        print(f"  torch.compile {mode:10s} {c['tokens_per_s']:7,.0f} tok/s, MFU {mfu(c, peak):.1%} (编译前的 "
              f"{ratio(c['tokens_per_s'], r['tokens_per_s'])}); 预热 {args.warmup} 步 {c['warmup_s']:.1f} s, 不编译时 {r['warmup_s']:.1f} s")
        if mode in res["hf_compiled"]:
            h = res["hf_compiled"][mode]
            print(f"    HF 编译后 {h['tokens_per_s']:,.0f} tok/s (编译前的 {ratio(h['tokens_per_s'], hf_train[mode]['tokens_per_s'])}; "
                  f"预热 {h['warmup_s']:.1f} s), 两边都编译: 我们/HF {ratio(c['tokens_per_s'], h['tokens_per_s'])}")
    fb, qb = res["big"]["full"], res["big"]["lora_qv"]
    print(f"\n{args.big_preset} 预设 ({fb['params'] / 1e6:.1f}M 参数, batch {args.big_batch_size} x {args.seq_len}) 峰值内存: "
          f"全参 {fb['peak_mem_mb']:,.0f} MB, LoRA q,v {qb['peak_mem_mb']:,.0f} MB "
          f"(= 全参的 {qb['peak_mem_mb'] / fb['peak_mem_mb']:.0%}; 都含建模型之前的 {fb['base_mem_mb']:,.0f} MB 进程基线)")
    print(f"\n生成 (提示 {args.prompt_len}, 新 {args.gen_tokens} 个 token, batch 1, 贪心): "
          f"KV cache {gen['cache_tokens_per_s']:,.0f} tok/s, 无 cache {gen['nocache_tokens_per_s']:,.0f} tok/s "
          f"(cache 快 {ratio(gen['cache_tokens_per_s'], gen['nocache_tokens_per_s'])})")
    if hf_gen:
        same = next((i for i, (a, b) in enumerate(zip(gen["ids"], hf_gen["ids"])) if a != b), args.gen_tokens)
        diff = max(r["logits_diff"] for r in [hf_gen, *hf_train.values()])
        print(f"  HF generate() {hf_gen['cache_tokens_per_s']:,.0f} tok/s, 我们/HF "
              f"{ratio(gen['cache_tokens_per_s'], hf_gen['cache_tokens_per_s'])}; 两边贪心输出前 {same} 个 token 相同")
        print(f"  拷贝权重后 logits 和 loss 的最大差 {diff:.2e} (要求 < 1e-4)")
    print(f"\npadding 比例 {res['pad']:.1%} (batch {res['pad_batch']}, length_grouped_batches; 数据: {res['data_note']})")
    print(f"分词器编码 {res['tok_mb_s']:.2f} MB/s")

    checks = [("MFU >= 60% (全参)", mfu(train["full"], peak) >= 0.6),
              ("大模型 LoRA q,v 峰值内存 <= 全参的 50%", qb["peak_mem_mb"] <= 0.5 * fb["peak_mem_mb"]),
              ("KV cache >= 3x 无 cache", gen["cache_tokens_per_s"] >= 3 * gen["nocache_tokens_per_s"]),
              ("padding <= 10%", res["pad"] <= 0.10)]
    if hf_train:
        checks += [(f"训练 {m} >= 1.3x HF", train[m]["tokens_per_s"] >= 1.3 * hf_train[m]["tokens_per_s"])
                   for m in ("full", "lora_qv")]
        checks.append(("生成 >= 1.5x HF generate()", gen["cache_tokens_per_s"] >= 1.5 * hf_gen["cache_tokens_per_s"]))
    if args.quick:  # tiny 形状的数和 issue 的目标 (默认形状) 没有关系, 不去对照
        print("\n(--quick 只检查脚本能跑通, 不对照目标)")
    else:
        print("\n目标: " + "; ".join(f"{name} {'达标' if ok else '未达标'}" for name, ok in checks))


def summary(res, compare_hf):
    """--json 的内容, 键与 issue 里写的完全一致。"""
    out = {"train": {m: {"tokens_per_s": r["tokens_per_s"], "mfu": mfu(r, res["peak"]), "peak_mem_mb": r["peak_mem_mb"]}
                     for m, r in res["train"].items()},
           "train_100m": {m: {"peak_mem_mb": r["peak_mem_mb"]} for m, r in res["big"].items()},
           "generate": {k: res["gen"][k] for k in ("cache_tokens_per_s", "nocache_tokens_per_s")},
           "padding_fraction": res["pad"], "tokenizer_mb_per_s": res["tok_mb_s"], "matmul_gflops": res["peak"]}
    if res["compiled"]:
        out["compiled"] = {m: {"tokens_per_s": r["tokens_per_s"], "mfu": mfu(r, res["peak"]), "warmup_s": r["warmup_s"]}
                           for m, r in res["compiled"].items()}
    if compare_hf:
        out["hf"] = {"train": {m: {"tokens_per_s": r["tokens_per_s"]} for m, r in res["hf_train"].items()},
                     "generate": {"cache_tokens_per_s": res["hf_gen"]["cache_tokens_per_s"]}}
        if res["hf_compiled"]:
            out["hf"]["compiled"] = {m: {"tokens_per_s": r["tokens_per_s"], "warmup_s": r["warmup_s"]}
                                     for m, r in res["hf_compiled"].items()}
    return out


if __name__ == "__main__":
    run_main(main)
