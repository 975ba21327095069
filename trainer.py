"""trainer.py — 唯一的训练循环, pretrain.py / train_sft.py / train_lora.py 共用。

三个训练脚本的区别只在 "数据是什么、哪些参数可训练、最后存什么"; 怎么训练完全相同, 所以写一次:
  - AdamW (2 维的权重做 weight decay; norm 和 embedding 不做), 先 warmup 再 cosine 衰减的学习率;
  - 梯度裁剪、梯度累积; CUDA 上 bf16 autocast (不支持 bf16 的卡用 fp16 + GradScaler), CPU 上 fp32;
  - 定期在验证集上算 loss; tqdm 进度条显示 loss、学习率、tokens/s; 每步写一行 CSV; 结束画 loss 曲线 PNG;
  - 定期保存续训状态 (模型、优化器、步数; 数据位置和随机数由步数推出), Ctrl-C 或 SIGTERM 时做完当前步也保存, --resume 接着训;
  - loss 变成 NaN/inf 时停下并指出是第几步; 每次保存前再查一遍权重是否有限: 已保存的 checkpoint 不会被坏模型覆盖;
  - 用 torchrun 启动时自动走 DistributedDataParallel: 每个进程取自己那份数据, 只有 rank 0 打日志和存文件。

loss 的归一化: 一个优化步里所有 micro-batch (以及所有进程) 的 "被训练 token" 一起求平均,
而不是每个 micro-batch 先各自平均再平均 —— 后者会让短回复的样本权重偏大, 梯度累积的结果也就不等于大 batch。

不在这里的: 模型结构 (model.py)、数据与掩码 (data.py)、LoRA (lora.py)、存最终模型 (checkpoint.py)。
"""
import atexit
import csv
import hashlib
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist

from checkpoint import FORMAT, check_output_path, checkpoint_kind, load_checkpoint, save_checkpoint
from data import length_grouped_batches
from model import n_targets


def add_train_args(p, **defaults):
    """所有训练脚本共用的参数; 每个脚本用 defaults 给出适合自己的默认值 (例如 LoRA 的学习率更大)。"""
    d = dict(device="auto", epochs=3, max_steps=None, batch_size=16, grad_accum=1, lr=3e-4, min_lr_ratio=0.1,
             warmup_steps=30, weight_decay=0.1, grad_clip=1.0, eval_interval=200, eval_batches=20,
             save_interval=200, seed=1337, out="checkpoints/model.pt")
    # eval_interval: 2 核 CPU 上验证一次要 1–2 秒; 每 200 步一次 (课程的每段训练 5 次), loss 曲线够看,
    # 整节课比每 100 步一次省下约 20 秒。验证不消耗随机数, 训练出的权重和它多久验证一次无关
    d.update(defaults)
    g = p.add_argument_group("训练 (各脚本共用)")
    g.add_argument("--device", default=d["device"], help="auto (依次尝试 cuda、mps、cpu) / cuda / mps / cpu")
    g.add_argument("--epochs", type=float, default=d["epochs"], help="训练几遍数据 (可以是小数)")
    g.add_argument("--max_steps", type=int, default=d["max_steps"], help="最多训练多少个优化步 (设置后优先于 --epochs)")
    g.add_argument("--batch_size", type=int, default=d["batch_size"], help="每个进程每个 micro-batch 的样本数")
    g.add_argument("--grad_accum", type=int, default=d["grad_accum"], help="梯度累积步数: 有效 batch = batch_size × grad_accum × 进程数")
    g.add_argument("--lr", type=float, default=d["lr"], help="峰值学习率")
    g.add_argument("--min_lr_ratio", type=float, default=d["min_lr_ratio"], help="cosine 衰减结束时的学习率 = lr × 这个比例")
    g.add_argument("--warmup_steps", type=int, default=d["warmup_steps"], help="学习率从 lr/warmup_steps 线性升到 lr 的步数")
    g.add_argument("--weight_decay", type=float, default=d["weight_decay"], help="AdamW 的 weight decay (不作用于 norm 和 embedding)")
    g.add_argument("--grad_clip", type=float, default=d["grad_clip"], help="梯度范数裁剪阈值 (0 表示不裁剪)")
    g.add_argument("--eval_interval", type=int, default=d["eval_interval"], help="每隔多少步在验证集上算一次 loss")
    g.add_argument("--eval_batches", type=int, default=d["eval_batches"], help="每次验证最多用多少个 batch")
    g.add_argument("--save_interval", type=int, default=d["save_interval"], help="每隔多少步保存一次续训状态")
    g.add_argument("--seed", type=int, default=d["seed"], help="随机种子 (数据顺序、初始化、dropout)")
    g.add_argument("--out", default=d["out"], help="输出的 checkpoint 路径 (日志、曲线、续训状态放在它旁边)")
    g.add_argument("--resume", action="store_true", help="从 --out 旁边的续训状态 (*.resume.pt) 接着训练")
    g.add_argument("--compile", action="store_true", help="用 torch.compile 编译模型 (GPU 上常常更快, CPU 上编译要几十秒)")
    return g


def below_minimum(args, lows):
    """{参数名: 最小值} 里不达标的参数, 每个一句说明 (NaN 也算不达标)。"""
    return [f"--{k} 必须 >= {low}, 收到 {getattr(args, k)}" for k, low in lows.items() if not getattr(args, k) >= low]


def check_train_args(args):
    """训练参数的范围: 不合法时开训之前一行说明, 而不是训练中途的 ZeroDivisionError 或 torch 的内部报错。"""
    bad = below_minimum(args, {"batch_size": 1, "grad_accum": 1, "eval_interval": 1, "eval_batches": 1, "save_interval": 1,
                               "warmup_steps": 0, "grad_clip": 0})
    if getattr(args, "max_length", 1) < 1:  # SFT/LoRA 的 --max_length (预训练没有): 否则要读完数据才说 "调大 --max_length"
        bad.append(f"--max_length 必须 >= 1, 收到 {args.max_length}")
    if args.max_steps is not None and args.max_steps < 1:
        bad.append(f"--max_steps 必须 >= 1, 收到 {args.max_steps}")
    if not 0 < args.epochs < math.inf:
        bad.append(f"--epochs 必须是有限的正数, 收到 {args.epochs}")
    # AdamW 每步把参数挪动约 lr: 大于 1 只会发散 (大到 1e38 时 torch 还会在 optimizer.step 里溢出报错)
    if not 0 < args.lr <= 1:
        bad.append(f"--lr 必须在 0 到 1 之间 (不含 0), 收到 {args.lr}")
    if not 0 <= args.weight_decay < math.inf:
        bad.append(f"--weight_decay 必须是有限的非负数, 收到 {args.weight_decay}")
    if not 0 <= args.min_lr_ratio <= 1:
        bad.append(f"--min_lr_ratio 必须在 0 到 1 之间, 收到 {args.min_lr_ratio}")
    if not 0 <= args.seed < 2**63:  # torch.manual_seed 只收 64 位整数
        bad.append(f"--seed 必须在 0 到 2^63-1 之间, 收到 {args.seed}")
    if bad:
        raise SystemExit("错误: " + "; ".join(bad))
    from model import pick_device
    pick_device(args.device)  # 没有 CUDA 却写了 --device cuda: 读数据、建模型之前就说


def side_path(out, suffix):
    """checkpoints/sft_model.pt -> checkpoints/sft_model<suffix>"""
    return os.path.splitext(out)[0] + suffix


def setup_distributed(device_name):
    """torchrun 会设置 RANK/WORLD_SIZE 环境变量; 没有就是单进程。返回 (rank, world_size, device)。"""
    from model import pick_device
    if "RANK" not in os.environ:
        return 0, 1, pick_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = pick_device(device_name)
    if device.type == "cuda":  # 每个进程一张卡
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # 退出时拆掉进程组 (不论正常结束还是报错退出): 否则 NCCL 退出时会警告, 偶尔还会让别的进程等着
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return rank, world, device


def make_optimizer(model, lr, weight_decay, device):
    """只优化 requires_grad 的参数 (LoRA 时只有 lora_A/lora_B)。2 维以上的矩阵做 decay, norm 的增益和 embedding 不做。"""
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and id(p) not in emb]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in emb]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused AdamW 把所有参数的更新合成少数几个 CUDA kernel
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def lr_at(step, total, args):
    """warmup 线性上升, 然后 cosine 从 lr 降到 lr × min_lr_ratio。

    step 从 0 数到 total - 1; 余弦在第 total 步 (训练结束的那一刻) 才恰好落到 lr × min_lr_ratio, 所以最后一步的学习率
    略高于它 (和 nanoGPT 的写法一样; 课程的几百、上千步里差别可以忽略, 只有十来步的试跑才看得出来)。"""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, total - args.warmup_steps))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def use_tf32(device):
    """CUDA 上 fp32 的矩阵乘和卷积也用 TF32 张量核 (autocast 之外剩下的 fp32 运算; bench.py 也用它, 两边设置一致)。"""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def amp_dtype(device):
    """CUDA 上混合精度用的类型: 计算能力 8.0 (Ampere) 及以后的卡和 AMD 的 ROCm 用 bf16, 更老的卡 (T4、V100) 用 fp16;
    其他设备不用混合精度 (None)。不用 torch.cuda.is_bf16_supported(): 它默认把 "能模拟 bf16" 也算作支持, 老卡上就选了
    bf16, 而这些卡的张量核只做 fp16; 它查的也是当前卡, 不是 device 这块。"""
    if device.type != "cuda":
        return None
    native_bf16 = torch.version.hip or torch.cuda.get_device_capability(device)[0] >= 8
    return torch.bfloat16 if native_bf16 else torch.float16


def autocast_for(device):
    """CUDA: bf16 (老卡 fp16 + GradScaler); 其他设备: fp32。返回 (autocast 上下文工厂, GradScaler 或 None)。"""
    dtype = amp_dtype(device)
    if dtype is None:
        return nullcontext, None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


@torch.no_grad()
def mean_loss(model, batches, device, autocast=nullcontext):
    """一组已经 collate 好的 batch 上按被训练 token 加权的平均 loss (验证 loss 和 evaluate.py 的困惑度共用)。"""
    total, count = 0.0, 0
    for batch in batches:
        labels = batch["labels"].to(device)
        with autocast():
            _, loss = model(batch["input_ids"].to(device), labels)
        n = n_targets(labels).item()
        total, count = total + loss.item() * n, count + n
    return total / max(count, 1)


def evaluate_loss(model, dataset, collate_fn, args, device, autocast):
    """验证集上按 token 加权的平均 loss。"""
    if dataset is None or len(dataset) == 0:
        return None
    model.eval()
    batches = length_grouped_batches(dataset.lengths, args.batch_size, shuffle=False)
    # 最多 eval_batches 个, 在整个列表上均匀取样: 列表按长度排过序, 只取前几个就只看到最短的那些
    n, k = len(batches), min(len(batches), args.eval_batches)
    batches = [batches[i * n // k] for i in range(k)]
    loss = mean_loss(model, (collate_fn([dataset[i] for i in b]) for b in batches), device, autocast)
    model.train()
    return loss


class StopSignal:
    """第一次 Ctrl-C (SIGINT) 或 kill (SIGTERM, 集群调度器抢占、`timeout` 到时也是它) 只记下 "要停", 训练做完当前这一步、
    存好续训状态再退出; 隔一秒以上再来一次则立即中断。

    为什么不直接接住 KeyboardInterrupt: 它会落在任意一行 —— optimizer.step() 中途 (参数只更新了一部分, 步数却没加),
    或 torch.save 中途 (zip 文件写了一半, torch 随后报 "unexpected pos" 之类的错) —— 这时存下的续训状态就不一致。
    SIGTERM 默认什么也不存就结束进程: 跑了二十分钟的训练, 只剩上一次定期保存的状态。
    信号被忽略 (例如 nohup 之类的后台运行对 SIGINT)、已有别的处理函数, 或不在主线程时不接管, 保持原样。
    """
    SIGNALS = {signal.SIGINT: ("Ctrl-C", signal.default_int_handler), signal.SIGTERM: ("SIGTERM", signal.SIG_DFL)}

    def __init__(self):
        self.flag, self.first, self.name, self.code = False, None, None, None  # first: 第一个信号的时刻
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for signum, (_, default) in self.SIGNALS.items():
                if signal.getsignal(signum) is default:
                    self.old[signum] = signal.signal(signum, self._handler)

    def _handler(self, signum, frame):  # 这里不 print: 信号可能正好打断 tqdm 往同一个流里写
        now = time.monotonic()
        if not self.flag:
            self.flag, self.first = True, now
            self.name, self.code = self.SIGNALS[signum][0], 128 + signum  # shell 里的退出码: Ctrl-C 130, SIGTERM 143
        elif now - self.first > 1.0:  # 过了一秒再来: 不等了, 立即中断
            raise KeyboardInterrupt
        # 一秒之内的第二个信号算同一次: torchrun 收到 Ctrl-C 后会把它再转发给每个进程

    def requested(self, device, world):
        """多进程 (torchrun) 时任何一个进程收到信号, 所有进程都在同一步停下, 否则没停的会卡在 all_reduce 里。
        传的是退出码 (没收到是 0): 没收到信号的进程也用那个信号的退出码退出 (SIGTERM 143, 而不是一律 130)。"""
        if world == 1:
            return self.flag
        code = torch.tensor([float(self.code or 0)], device=device)
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        if code.item() > 0 and not self.flag:  # 信号落在别的进程上: 照它的信号说、照它的退出码退出
            self.code = int(code.item())
            self.name = f"{self.SIGNALS[signal.Signals(self.code - 128)][0]}, 另一个进程收到的"
        return code.item() > 0

    def close(self):
        for signum, old in self.old.items():
            signal.signal(signum, old)
        self.old = {}


def train(model, train_set, eval_set, collate_fn, args, run_info=None, out_kind="model"):
    """训练 model (原地修改), 返回最终指标 dict。train_set 需要 .lengths 和 __getitem__ -> {input_ids, labels}。
    out_kind: 调用者训练完要往 --out 存什么 ("model" 或 "lora_adapter"): --out 上已有别的文件时, 开训之前就拒绝。

    run_info: 写进续训状态的这次运行的起点 (例如模型配置、LoRA 底座的指纹)。--resume 时逐项核对:
    续训会把整个模型换成续训状态里的权重, 起点变了 (例如 --init 换成了重新训练过的底座) 还接着训,
    训练的就是旧起点, 存下来的却记着新起点。决定数据顺序的几项 (--seed、步 batch 的切法、训练数据本身) 和存在
    优化器状态里的 --weight_decay 也一并核对: 换了它们, 续训的就不是同一次训练 (weight_decay 还会被旧值悄悄盖掉)。
    --lr 和总步数可以换 (续训时调低学习率、提前收尾都是常见的需要); 总步数变了, 余弦学习率跟着变, 会提示一行。
    """
    check_train_args(args)
    rank, world, device = setup_distributed(args.device)
    main = rank == 0
    # 这次运行的续训状态、CSV 日志和 loss 曲线。日志和曲线先写在 *.part 里, 最终模型存好后 finish_run 才换到正式位置:
    # 一次失败的运行 (NaN、Ctrl-C、崩溃) 不会覆盖上一个模型的日志
    resume_path, log_path, png_path = run_files(args.out)
    log_part, png_part = log_path + ".part", png_path + ".part"
    if not args.resume and os.path.exists(resume_path):  # 从头训练会在第一次保存时把它盖掉: 那次被中断的训练就丢了
        if checkpoint_kind(resume_path) != "resume":
            raise SystemExit(f"错误: {resume_path} 已经存在, 而且不是续训状态; 训练会在那里写续训状态, 把它覆盖。"
                             "换一个 --out, 或先把它移走")
        raise SystemExit(f"错误: {resume_path} 里有一次没训练完的运行 (被中断或出错停下)。接着训练加 --resume "
                         f"(可以换 --lr); 要从头训练, 先删掉它: rm {resume_path}")
    if main:  # 训练之前就确认结果存得下, 而不是训练完才发现 (只由 rank 0 试写, 免得几个进程同时建、删同一个文件)
        check_output_path(args.out, "--out", [(f"--{k}", getattr(args, k, None)) for k in ("data_path", "eval_path", "init", "tokenizer")],
                          kinds=(out_kind,))
        for path in (resume_path, log_path, png_path, log_part, png_part):
            check_output_path(path, "--out 旁边的文件")
        # 日志和曲线按 --out 起名, 重跑时换掉上一次的; 碰巧同名的别的文件 (用户自己的) 不能在训练结束时被悄悄盖掉
        for path, what, ours in ((log_path, "训练日志", is_training_log), (png_path, "loss 曲线 (PNG)", is_png)):
            if os.path.isfile(path) and os.path.getsize(path) > 0 and not ours(path):
                raise SystemExit(f"错误: {path} 已经存在, 而且不是{what}; 训练结束时会在那里写{what}, 把它覆盖。"
                                 "换一个 --out, 或先把它移走")
    use_tf32(device)
    model.to(device).train()
    raw_model = model
    optimizer = make_optimizer(raw_model, args.lr, args.weight_decay, device)
    autocast, scaler = autocast_for(device)
    if args.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # 一个优化步用 batch_size × grad_accum × 进程数 条样本 (一个 "步 batch"), 再切成各进程的 micro-batch。
    # 这样梯度累积、多进程与一次大 batch 看到的是同一批样本。每个 epoch 的顺序只由 (seed, epoch) 决定:
    # 续训时按步数就能找回数据位置。不满一个步 batch 的零头 (每个 epoch 随机的几条) 丢弃: 多进程时每个进程都必须有活干。
    step_bs = args.batch_size * args.grad_accum * world
    steps_per_epoch = len(train_set) // step_bs
    if steps_per_epoch == 0:
        raise SystemExit(f"错误: 训练数据只有 {len(train_set)} 条, 不够一个优化步 ({step_bs} 条)。调小 --batch_size 或 --grad_accum")
    total_steps = args.max_steps or max(1, int(args.epochs * steps_per_epoch))
    if main and args.warmup_steps >= total_steps > 1:  # 多半是 --max_steps 很小的试跑
        print(f"注意: --warmup_steps {args.warmup_steps} 不少于总步数 {total_steps}: 学习率一路上升, 升不到 --lr, "
              f"也没有余弦下降。想看完整的学习率曲线, 就把 --warmup_steps 调到总步数的十分之一左右")

    step, history = 0, []
    run_info = {**(run_info or {}), "seed": args.seed, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                "processes": world, "weight_decay": args.weight_decay, "data": data_fingerprint(train_set)}
    if args.resume:
        if not os.path.isfile(resume_path):
            raise SystemExit(f"错误: 找不到续训状态 {resume_path}。去掉 --resume 从头训练, 或检查 --out")
        state = load_checkpoint(resume_path, kinds=("resume",))
        # 新运行不许盖掉没训练完的续训状态 (见上), 所以 "从头训练" 要先删掉它
        fresh = f"删掉它 (rm {resume_path}) 再去掉 --resume 从头训练"
        if not isinstance(state.get("step"), int) or not isinstance(state.get("history"), list):  # 手改过或别的程序写的
            raise SystemExit(f"错误: {resume_path} 不是完整的续训状态 (缺少步数或训练历史)。" + fresh)
        saved = state.get("run_info") or {}  # 旧版本写的续训状态没记的项不查
        changed = [describe_change(k, saved[k], v) for k, v in run_info.items() if k in saved and saved[k] != v]
        if changed:  # 先查这个: 别的脚本 (task 不同) 留下的续训状态, 步数多半也对不上, 但真正的原因是这里
            raise SystemExit(f"错误: {resume_path} 和这次的设置对不上 ({'; '.join(changed)})。用当初的参数续训 "
                             f"(同一个 --init、--seed、--batch_size、--grad_accum、进程数、--weight_decay、"
                             f"训练数据 (--data_path、--max_length、--no_mask); 预训练还有模型大小和 --tokenizer, LoRA 还有 --lora_r 等), 或"
                             + fresh)
        if state["step"] > total_steps:  # 否则一步不训, 直接把续训状态里的权重存成最终模型 (盖掉 --out 原有的文件)
            raise SystemExit(f"错误: {resume_path} 已经训练到第 {state['step']} 步, 超过了这次的总步数 {total_steps}。"
                             "用当初的 --epochs / --max_steps 续训, 或" + fresh)
        try:
            raw_model.load_state_dict(state["model_state"])
            # load_state_dict 会把存档里每组的 fused 也抄过来: GPU 上存的状态拿到 CPU 上续训就还是 fused (旧版 torch 的 CPU
            # 不支持), 反过来则悄悄不 fused。这个选项跟着这次的设备走
            for group in state["optimizer"].get("param_groups", []):
                group["fused"] = optimizer.defaults["fused"]
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise SystemExit(f"错误: {resume_path} 与现在的模型对不上 (是另一个脚本或另一种模型形状留下的: {type(e).__name__})。"
                             "用训练它时的命令续训, 或" + fresh) from None
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, history = state["step"], state["history"]
        if main:
            print(f"从 {resume_path} 第 {step} 步继续")
            if state.get("total_steps", total_steps) != total_steps:  # 数据位置不受影响, 学习率曲线会变: 说一声, 不拦
                print(f"注意: 总步数从当初的 {state['total_steps']} 变成了 {total_steps} (--epochs / --max_steps), "
                      "余弦学习率按新的总步数算, 和不中断的那次训练不再相同")
            # 同理: 学习率曲线的形状和梯度裁剪换了也能接着训, 但和不中断的那次不再相同
            old_args = state.get("args") or {}
            moved = [f"--{k} {old_args[k]} -> {getattr(args, k)}" for k in ("warmup_steps", "min_lr_ratio", "grad_clip")
                     if k in old_args and old_args[k] != getattr(args, k)]
            if moved:
                print(f"注意: {', '.join(moved)}: 接下来按新的设置训练, 和不中断的那次训练不再相同")

    def still_saved():  # 训练因 NaN/inf 停下时的后半句: 上一次好的续训状态还在 (两处报错共用)
        tries = ["降低 --lr"] + (["调小 --lora_alpha (旁路乘 alpha/r)"] if hasattr(args, "lora_alpha") else []) \
            + (["打开梯度裁剪 (--grad_clip 1)"] if args.grad_clip == 0 else [])
        return f"上次保存的 {resume_path if os.path.exists(resume_path) else '(尚无)'} 保持不变; 试试{'、'.join(tries)}"

    def check_weights():
        """loss 的检查 (见下面) 看的是更新之前的模型: 管不到最后一步的更新, 也管不到 "loss 还有限、梯度却溢出" 的那一步。
        所以每次保存之前再看一眼参数: 坏了就停下, 不拿 NaN 覆盖上一次好的续训状态或模型。各进程的参数相同, 一起停下。"""
        if not all(torch.isfinite(p).all() for p in raw_model.parameters() if p.requires_grad):
            raise SystemExit(f"错误: 第 {step} 步更新之后参数里出现了 NaN 或 inf, 训练停止, 什么都不保存。"
                             + still_saved())

    def save_resume():
        check_weights()
        if main:
            save_checkpoint(resume_path, {
                "format": FORMAT, "kind": "resume", "step": step, "total_steps": total_steps, "history": history,
                "model_state": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "args": vars(args), "run_info": run_info})
        if world > 1:  # 其余进程等 rank 0 写完: Ctrl-C 时它们先退出的话, torchrun 会把还在写的 rank 0 一起杀掉
            dist.barrier()

    epoch_order = {}  # epoch -> 这个 epoch 的步 batch 顺序; 每个 epoch 只排一次, 不在每一步重新洗牌排序

    def micro_batches(step):
        """第 step 个优化步里, 本进程的 micro-batch 列表。"""
        epoch, k = divmod(step, steps_per_epoch)
        if epoch not in epoch_order:
            epoch_order.clear()
            epoch_order[epoch] = length_grouped_batches(train_set.lengths, step_bs, seed=args.seed + epoch, drop_last=True)
        group = epoch_order[epoch][k]  # 组内按长度排过序, 切出的 micro-batch 长度接近, padding 少
        micro = [group[j:j + args.batch_size] for j in range(0, step_bs, args.batch_size)]
        batches = [collate_fn([train_set[i] for i in b]) for b in micro[rank::world]]
        if device.type == "cuda":  # 锁页内存: 拷到 GPU 时可以和计算重叠 (配合下面的 non_blocking=True)
            batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
        return batches

    kept = []  # 续训时保留旧日志里前 step 步的行; 崩溃前、最后一次保存之后写下的几行作废 (续训会重算那几步)
    if main and args.resume and os.path.exists(log_part):
        with open(log_part, newline="") as f:
            kept = [r for r in list(csv.reader(f))[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    log_file = open(log_part, "w", newline="") if main else None
    log = csv.writer(log_file) if main else None

    def write_log(rows, at_step):
        """写几行日志并立刻刷到文件 (训练中也能 tail -f 看)。写不了 (多半是磁盘满了) 时一行说明, 上次的续训状态还在。"""
        try:
            log.writerows(rows)
            log_file.flush()
        except OSError as e:
            then = f"加 --resume 从 {resume_path} 接着训练" if os.path.exists(resume_path) else "重新训练"
            raise SystemExit(f"错误: 第 {at_step} 步写不了训练日志 {log_part} ({e.strerror}), 训练停止。"
                             f"腾出磁盘空间后{then}") from None
    from tqdm import tqdm
    bar = tqdm(total=total_steps, initial=step, disable=not main, dynamic_ncols=True, desc=os.path.basename(args.out))
    start = time.time()
    saved_step = step if args.resume else None  # 续训状态文件里现在是第几步
    stop = StopSignal()
    try:
        if main:  # 表头和续训时保留的行。旧日志刚被 "w" 清空: 立刻写回, 第一步里就被 kill -9 也不丢
            write_log([LOG_HEADER] + kept, step + 1)
        while step < total_steps:
            t0 = time.time()
            # 这一步的随机数 (dropout) 只由 (seed, 进程号, 步数) 决定: 续训时不用存取随机数状态 (CPU、CUDA、
            # 每个进程都一样简单), 各进程的 dropout 也互不相同。Python 对整数元组的 hash 是确定的
            torch.manual_seed(hash((args.seed, rank, step)) % 2**63)
            lr = lr_at(step, total_steps, args)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batches = micro_batches(step)
            # 整个优化步 (所有 micro-batch, 所有进程) 的被训练 token 总数, 用来做正确的平均
            n_total = sum(n_targets(b["labels"]) for b in batches).to(device).float()
            if world > 1:
                dist.all_reduce(n_total)
            n_total = n_total.clamp(min=1)
            loss_sum, n_tokens = torch.zeros((), device=device), 0
            for i, b in enumerate(batches):
                input_ids = b["input_ids"].to(device, non_blocking=True)
                labels = b["labels"].to(device, non_blocking=True)
                n_tokens += input_ids.numel()
                sync = world == 1 or i == len(batches) - 1  # DDP: 只在最后一个 micro-batch 同步梯度
                with (nullcontext() if sync else model.no_sync()), autocast():
                    _, loss = model(input_ids, labels)
                    # 模型返回的是本 micro-batch 的平均; 乘回 token 数再除以全局总数。DDP 会对梯度取进程平均, 所以再乘 world
                    weighted = loss * n_targets(labels) / n_total * world
                (scaler.scale(weighted) if scaler else weighted).backward()
                loss_sum += weighted.detach() / world
            if world > 1:  # 同一次通信带上各进程算过的 token 数: 显示的 tokens/s 是所有进程的实数 (各进程的 padding 不一样多)
                stats = torch.stack([loss_sum, torch.tensor(float(n_tokens), device=device)])
                dist.all_reduce(stats)
                loss_sum, n_tokens = stats[0], int(stats[1].item())
            train_loss = loss_sum.item()
            if not math.isfinite(train_loss):
                raise SystemExit(f"错误: 第 {step + 1} 步的 loss 是 {train_loss}, 训练停止。"
                                 + still_saved())
            if scaler:
                scaler.unscale_(optimizer)
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), args.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            step_s = time.time() - t0
            # 算过的 token 数 (所有进程的, 含 padding, 课程数据上约 2%; 和 bench.py 一样, 被 -100 掩掉的也算: 前向都算了它们)
            tok_s = n_tokens / step_s
            eval_loss = None
            if step % args.eval_interval == 0 or step == total_steps:
                eval_loss = evaluate_loss(raw_model, eval_set, collate_fn, args, device, autocast) if main else None
            history.append([step, train_loss, eval_loss, step_s])
            if main:
                write_log([[step, f"{step / steps_per_epoch:.3f}", f"{train_loss:.4f}", f"{lr:.2e}", f"{tok_s:.0f}",
                            "" if eval_loss is None else f"{eval_loss:.4f}"]], step)
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.1e}", tok_s=f"{tok_s:.0f}",
                                **({} if eval_loss is None else {"eval": f"{eval_loss:.3f}"}))
                bar.update(1)
            if step % args.save_interval == 0 and step < total_steps:
                save_resume()
                saved_step = step
            if step < total_steps and stop.requested(device, world):  # 在步与步之间停下: 状态是完整的
                bar.close()
                if saved_step != step:
                    save_resume()
                if main:
                    print(f"\n已中断 ({stop.name}): 第 {step} 步的状态存到 {resume_path}, "
                          "加 --resume 可以接着训练")
                raise SystemExit(stop.code)
    except KeyboardInterrupt:  # 隔一秒以上的第二个信号: 不等这一步做完, 也不再保存
        bar.close()
        if main:
            kept = f"{resume_path} 里仍是第 {saved_step} 步的状态, 加 --resume 可以从那里接着训练" \
                if saved_step is not None else "还没有保存过续训状态"
            print(f"\n已立即中断 (未保存当前步); {kept}")
        raise SystemExit(130)
    finally:
        stop.close()
        bar.close()
        if log_file:
            try:
                log_file.close()
            except OSError:  # 磁盘满时缓冲区里的几行写不出去: 上面已经报过一行
                pass

    check_weights()  # 调用者接着就要保存最终模型
    if main:
        plot_loss(history, png_part)
    # 续训状态留着, 等调用者存好最终模型再删 (finish_run): 最后那次保存途中被打断, 还能 --resume
    evals = [h[2] for h in history if h[2] is not None]
    times = sorted(h[3] for h in history[-100:]) or [0.0]
    return {"steps": step, "train_loss": history[-1][1] if history else None,
            "eval_loss": evals[-1] if evals else None, "log": log_path, "loss_png": png_path,
            # 给 experiments.py 的对比表: 可训练参数、AdamW 状态实际占的字节、峰值内存、每步时间 (最近 100 步的中位数)
            "trainable_params": sum(p.numel() for p in raw_model.parameters() if p.requires_grad),
            "optimizer_state_bytes": sum(t.numel() * t.element_size() for st in optimizer.state.values()
                                         for t in st.values() if torch.is_tensor(t) and t.dim() > 0),
            "peak_mem_mb": peak_memory_mb(device), "step_s": times[len(times) // 2],
            "train_s": time.time() - start}  # 这次运行的训练用时 (含定期验证; 续训时只算续上的这段)


def data_fingerprint(train_set):
    """训练样本 (每条的 input_ids 和 labels) 的哈希, 16 个十六进制字符。续训按步数找回数据位置, 数据变了
    (换了 --data_path、--max_length 截断得不一样、--no_mask 换了 labels), 找回的就不是当初那一批了。"""
    h = hashlib.sha256()
    for i in range(len(train_set)):
        example = train_set[i]
        h.update(example["input_ids"].numpy().tobytes())
        h.update(example["labels"].numpy().tobytes())
    return h.hexdigest()[:16]


def describe_change(key, old, new):
    """续训核对时一项对不上的说明。模型配置这类 dict 只列出变了的字段, 不把两份配置整个打印出来。"""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
        return f"{key}: " + ", ".join(f"{k} 当时 {old.get(k)}, 现在 {new.get(k)}" for k in keys)
    return f"{key}: 当时 {old}, 现在 {new}"


def run_files(out):
    """一次训练运行在 out 旁边的文件: (续训状态, CSV 日志, loss 曲线)。后两个在运行中叫 *.part。"""
    return side_path(out, ".resume.pt"), side_path(out, ".log.csv"), side_path(out, ".loss.png")


LOG_HEADER = ["step", "epoch", "loss", "lr", "tokens_per_s", "eval_loss"]  # *.log.csv 的第一行


def is_training_log(path):
    """path 是 train() 写的 CSV 日志 (第一行是 LOG_HEADER)。"""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: 在 Excel 里打开、存回 "CSV UTF-8" 的会多一个 BOM
            return next(csv.reader(f), None) == LOG_HEADER
    except (OSError, ValueError, csv.Error):  # ValueError: 不是 UTF-8 的文件 (UnicodeDecodeError)
        return False


def is_png(path):
    """path 是 PNG 图片 (看文件开头的 8 字节签名): 名字又是 *.loss.png, 就是上一次训练画的 loss 曲线。"""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def finish_run(out):
    """最终模型已经存好: 这次运行的日志和曲线换到正式位置 (*.log.csv、*.loss.png), 续训状态不再需要。"""
    resume_path, log_path, png_path = run_files(out)
    for path in (log_path, png_path):
        if os.path.exists(path + ".part"):
            os.replace(path + ".part", path)
    if os.path.exists(resume_path):
        os.remove(resume_path)


def peak_memory_mb(device):
    """训练期间的峰值内存: CUDA 上是显存 (max_memory_allocated), 其他设备是进程的 RSS 最高水位。

    Linux 上读 /proc/self/status 的 VmHWM, 不用 getrusage 的 ru_maxrss: 子进程的 ru_maxrss 从父进程那里继承,
    exec 之后也不清零, bench.py 的每个子进程就都报不出比主进程的最高水位更低的数。
    Windows 上两样都没有 (没有 /proc, 也没有 resource 模块): 返回 nan (表里印成 nan), 训练照常结束、保存。"""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # 单位是 kB
    except (OSError, StopIteration, ValueError):  # 不是 Linux (macOS、Windows 上没有 /proc)
        pass
    try:
        import resource
    except ImportError:  # Windows: 这个数只是记录用的, 不能让它在保存最终模型之前把训练弄崩
        return math.nan
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # macOS 上单位是字节, Linux 上是 KB


def plot_loss(history, path):
    """训练 loss 与验证 loss 曲线, 存在 checkpoint 旁边。"""
    import matplotlib
    matplotlib.use("Agg")  # 不需要屏幕
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h[0] for h in history], [h[1] for h in history], label="train", lw=1)
    ev = [(h[0], h[2]) for h in history if h[2] is not None]
    if ev:
        ax.plot(*zip(*ev), "o-", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100, format="png")  # 文件名以 .part 结尾, 格式要明说
    except OSError as e:  # 例如磁盘满了。模型还没存; 上次保存的续训状态 (如果有) 还在
        raise SystemExit(f"错误: 写不了 loss 曲线 {path} ({e.strerror or e})。检查磁盘空间后重跑") from None
    finally:
        plt.close(fig)


def is_main_process():
    """rank 0 (单进程时就是它自己)。进程组建好之前 (训练开始前的检查) 看 torchrun 设置的 RANK 环境变量。"""
    return dist.get_rank() == 0 if dist.is_initialized() else os.environ.get("RANK", "0") == "0"
