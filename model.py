"""一个 LLaMA 风格的小 GPT: 课程里预训练、SFT、LoRA 和聊天共用的模型。

做什么:
  - RMSNorm、旋转位置编码 (RoPE)、SwiGLU MLP、因果注意力 (F.scaled_dot_product_attention)、
    可选的分组查询注意力 (GQA: n_kv_head < n_head)、输入/输出 embedding 共享权重。
  - 模块名与 Hugging Face 的 Llama 完全一致 (去掉 "model." 前缀): embed_tokens、
    layers.N.self_attn.q_proj ...、norm、lm_head。所以 LoRA 的 target_modules=["q_proj", "v_proj"]
    说的就是字面意思, 权重也能原样拷进 transformers 的 LlamaForCausalLM。
  - forward(input_ids, labels): labels 与 input_ids 等长, 错一位在模型内部完成; 只对 label 不是 -100
    的位置算 lm_head 和交叉熵。
  - generate(): 带 KV cache 的流式生成 (temperature / top_k / top_p, 遇到结束符停止)。
  - greedy_batch(): 评估用的批量贪心解码 (一批提示一样长, 不用 padding)。
  - pick_device(): 整个项目里唯一挑选设备的地方。

不做什么: 没有 bias; 没有 RoPE 外推 (上下文超过 max_seq_len 就从左边截断);
不做长短不一的 batch 生成 (那要 padding、attention mask 和每行各自的位置);
不做量化, 也不调用 torch.compile 或混合精度 (那是训练脚本的选择, 这里保持普通 fp32 eager 代码)。

运行: python model.py            # 打印每个预设的参数量
      python -m pytest tests/test_model.py -q
"""
import math
from dataclasses import dataclass, replace

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100  # label 为 -100 的位置不计 loss (PyTorch cross_entropy 默认忽略的值); data.py 用它标出不训练的位置


def n_targets(labels):
    """labels (B, T) 里被训练的 token 数。和 GPT.forward 一样错一位 (位置 t 预测 labels[t + 1]), 所以数的是 labels[:, 1:]。
    训练循环用它给 micro-batch 按 token 数加权。"""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    n_layer: int = 6
    n_head: int = 8
    n_kv_head: int = 8  # 小于 n_head 时就是 GQA: 几个 query 头共用一组 key/value
    n_embd: int = 256
    intermediate_size: int = 688  # SwiGLU 的隐藏宽度, 约 8/3 * n_embd
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0


PRESETS = {
    # 只给测试用: 小到几毫秒跑完一次 forward, 但仍然有 GQA (4 个 query 头共用 2 组 kv)
    "tiny": GPTConfig(vocab_size=320, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                      intermediate_size=64, max_seq_len=64),
    # 课程在笔记本 CPU 上跑的模型: 词表 1,536 (示例数据的分词器) 时约 5.1M 参数, 预设的词表 4096 时约 5.8M
    "default": GPTConfig(),
    # 有 GPU 时用, 约 1 亿参数
    "gpu": GPTConfig(n_layer=16, n_head=12, n_kv_head=4, n_embd=768, intermediate_size=2048,
                     max_seq_len=512),
}


def get_config(preset: str = "default", **overrides) -> GPTConfig:
    if preset not in PRESETS:
        raise SystemExit(f"错误: 未知的模型预设 {preset!r}。可选: {', '.join(PRESETS)}")
    cfg = replace(PRESETS[preset], **overrides)
    small = [f"{k}={getattr(cfg, k)}" for k in ("vocab_size", "intermediate_size", "max_seq_len") if not getattr(cfg, k) >= 1]
    if small:  # 否则建模型时才报 torch 的 "negative dimension"
        raise SystemExit(f"错误: 模型尺寸必须 >= 1, 收到 {', '.join(small)}。改用正数 (或去掉这个参数, 用预设里的值)")
    if not 0 <= cfg.dropout < 1:  # 否则到第一次 forward 才是 F.dropout 的 ValueError (eval 模式下也查)
        raise SystemExit(f"错误: dropout 要在 [0, 1) 内, 收到 {cfg.dropout}")
    head_dim = cfg.n_embd // cfg.n_head if cfg.n_head > 0 else 0
    if cfg.n_layer < 1 or cfg.n_kv_head < 1 or cfg.n_head % cfg.n_kv_head or head_dim < 2 or head_dim % 2 \
            or head_dim * cfg.n_head != cfg.n_embd:
        raise SystemExit(f"错误: 模型形状不合法 (n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, n_head={cfg.n_head}, "
                         f"n_kv_head={cfg.n_kv_head})。需要 n_layer >= 1, n_embd 是 n_head 的整数倍且每头维度是偶数 (RoPE 成对旋转), "
                         f"n_head 是 n_kv_head 的整数倍")
    return cfg


def pick_device(name: str = "auto") -> torch.device:
    """auto 依次尝试 cuda、mps、cpu; 明确要求的设备不存在时给一行能照着做的错误。"""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"错误: 这台机器上没有可用的 CUDA (--device {name})。请改用 --device auto 或 --device cpu, "
                         "或安装带 CUDA 的 PyTorch。")
    if kind == "mps" and not has_mps:
        raise SystemExit("错误: 这台机器上没有可用的 Apple MPS (--device mps)。请改用 --device auto 或 --device cpu。")
    choices = "可选: auto, cpu, cuda, cuda:N (N 是 GPU 编号, 从 0 开始), mps"
    if kind not in ("cpu", "cuda", "mps"):
        raise SystemExit(f"错误: 不认识的设备 {name!r} (--device)。{choices}")
    try:
        device = torch.device(name)
    except RuntimeError:  # cpu:abc、cuda:x 这类写法: torch 报 "Invalid device string"
        raise SystemExit(f"错误: 设备写法不对 {name!r} (--device)。{choices}") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SystemExit(f"错误: 没有编号 {device.index} 的 GPU (--device {name}), 这台机器只有 {torch.cuda.device_count()} 块。"
                         f"用 cuda:0 到 cuda:{torch.cuda.device_count() - 1}, 或 --device cuda")
    return device


class RMSNorm(nn.Module):
    """只按均方根缩放, 不减均值、没有 bias: 比 LayerNorm 少一步, 效果相当 (LLaMA 的选择)。"""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # 先把每个 token 的向量缩放到均方根为 1, 再按维度乘可学的 weight。直接写出公式而不调 F.rms_norm:
        # CPU 上它内部还要多做几次类型转换和拷贝, 逐 token 生成时 (开发时用一次性脚本交替计时) 明显更慢。
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cache(head_dim, max_seq_len, theta):
    """预先算好每个位置的旋转角的 cos/sin, 形状 (max_seq_len, head_dim)。

    第 0 对维度转得最快 (频率 1), 第 i 对越往后越慢 (频率 theta^(-2i/hd)): 快的分辨近处, 慢的分辨远处。
    第 i 维和第 i + hd/2 维组成一对 (与 HF Llama 相同, 权重可以互换), 同一对转同一个角度, 所以角度表左右各放一份;
    sin 的左半边带负号, 见 apply_rope。"""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (hd/2,)
    angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)  # (L, hd/2)
    return torch.cat([angles.cos(), angles.cos()], -1), torch.cat([-angles.sin(), angles.sin()], -1)  # 各 (L, hd)


def apply_rope(x, cos, sin):
    """x: (B, H, T, hd); cos/sin: (T, hd)。把每对 (x1, x2) 旋转一个与位置成正比的角度:
    (x1, x2) -> (x1·cos - x2·sin, x2·cos + x1·sin)。

    x.roll(hd/2) 把左右两半对调成 (x2, x1), 再乘上左半带负号的 sin, 一步算完两半 (不用切片再拼接:
    逐 token 生成时每个小操作都有固定开销, 少几个操作就快一截)。
    旋转之后两个位置的 q·k 只取决于它们的距离, 这就是"相对位置"。"""
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0 and cfg.n_head % cfg.n_kv_head == 0
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.dropout = cfg.dropout
        # q/k/v 故意是三个独立的 Linear (而不是一个合并的大矩阵): LoRA 按名字替换 q_proj、v_proj
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * self.head_dim, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache=None, start_pos=0):
        B, T, _ = x.shape  # (B, T, C)
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        # CUDA 的 bf16 autocast 下 q、k 是 bf16, 角度表是 fp32: 先转成 q 的类型, 否则 q、k 被提升成 fp32,
        # 多一倍的显存读写, SDPA 还得再转回来 (HF 按隐藏状态的类型转, 权重是 fp32 时它的 q、k 就被提升了)。
        # CPU 上都是 fp32, .to 原样返回, 什么也不做
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        if kv_cache is not None:
            # 缓存是预先分配好的 (B, nkv, max_seq_len, hd): 把新 k/v 写到 start_pos 处, 再取出全部历史。
            # 写进去而不是每步 torch.cat, 省掉每个 token 一次的整段拷贝和内存分配。
            k_cache, v_cache = kv_cache
            k_cache[:, :, start_pos:start_pos + T] = k
            v_cache[:, :, start_pos:start_pos + T] = v
            k, v = k_cache[:, :, :start_pos + T], v_cache[:, :, :start_pos + T]  # (B, nkv, S, hd)

        if self.n_kv_head != self.n_head:
            # GQA: 每组 k/v 复制给 n_head/n_kv_head 个 query 头 (与 HF 的 repeat_kv 顺序一致)
            rep = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # (B, nh, S, hd)

        dropout_p = self.dropout if self.training else 0.0
        if start_pos == 0:
            # 从头算的整段: 标准的下三角因果 mask, 交给 SDPA 内部处理
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        elif T == 1:
            # 带缓存逐个解码: 唯一的新 query 本来就该看见全部历史, 不需要 mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # 缓存之后再接一段: 第 i 个新 token 能看见前 start_pos + i 个位置 (右下角对齐的因果 mask)
            mask = torch.ones(T, start_pos + T, dtype=torch.bool, device=x.device).tril(start_pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))。门控让每个隐藏单元自己决定放行多少。"""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, kv_cache=None, start_pos=0):
        # pre-norm 残差: 主干 x 原样往下传, 每个子层只往上"加"一点, 深层也好训练
        a = self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, start_pos)
        x = x + F.dropout(a, self.dropout, self.training)
        return x + F.dropout(self.mlp(self.post_attention_layernorm(x)), self.dropout, self.training)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        try:  # 形状合法, 却可能大到内存放不下 (例如 --n_embd 1000000000): 一行说明, 而不是分配器的 traceback
            self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
            self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
            self.norm = RMSNorm(config.n_embd, config.norm_eps)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            # cos/sin 是算出来的, 不是学出来的
            cos, sin = rope_cache(config.n_embd // config.n_head, config.max_seq_len, config.rope_theta)
        except RuntimeError:
            raise SystemExit(f"错误: 模型太大, 内存放不下 (vocab_size={config.vocab_size}, n_layer={config.n_layer}, "
                             f"n_embd={config.n_embd}, intermediate_size={config.intermediate_size}, "
                             f"max_seq_len={config.max_seq_len})。"
                             "换小一些的 --preset 或调小 --n_embd / --n_layer") from None
        # 输入、输出共用一张表: 小模型里词表占参数的大头, 共享省一半, 也让两端的词向量一致
        self.lm_head.weight = self.embed_tokens.weight
        # persistent=False 让 cos/sin 不进 checkpoint, 但会跟着 .to(device)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
        # 写回残差主干的投影再缩小 sqrt(2 * n_layer) 倍: 2 * n_layer 个分支相加后, 主干的方差不随深度增长
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, exclude_embedding: bool = False) -> int:
        # parameters() 对共享的权重只数一次, 所以 embed_tokens/lm_head 只算一份
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.weight.numel() if exclude_embedding else n

    def init_kv_cache(self, batch_size: int = 1):
        """每层一对预先分配的 (k, v), 形状 (B, n_kv_head, max_seq_len, head_dim)。"""
        c, w = self.config, self.embed_tokens.weight
        shape = (batch_size, c.n_kv_head, c.max_seq_len, c.n_embd // c.n_head)
        return [(w.new_zeros(shape), w.new_zeros(shape)) for _ in range(c.n_layer)]

    def hidden_states(self, input_ids, kv_cache=None, start_pos=0):
        """最后一层 norm 之后的隐藏状态 (B, T, C), 还没乘 lm_head。"""
        B, T = input_ids.shape
        if start_pos + T > self.config.max_seq_len:
            raise SystemExit(f"错误: 序列长度 {start_pos + T} 超过了模型的 max_seq_len={self.config.max_seq_len}。"
                             f"训练时把 --max_length 设成不超过 {self.config.max_seq_len}; 生成时提示要短于它 (model.generate 会自己从左边截)。")
        cos = self.rope_cos[start_pos:start_pos + T]  # (T, hd), 这一段 token 的真实位置
        sin = self.rope_sin[start_pos:start_pos + T]
        x = self.embed_tokens(input_ids)  # (B, T, C)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if kv_cache is None else kv_cache[i], start_pos)
        return self.norm(x)

    def forward(self, input_ids, labels=None, kv_cache=None, start_pos=0):
        h = self.hidden_states(input_ids, kv_cache, start_pos)  # (B, T, C)
        if labels is None:
            return self.lm_head(h), None  # (B, T, V)
        # 错一位 (全项目只在这个文件里做: 这里和 n_targets): 位置 t 的输出去预测 labels[t + 1]。
        # 所以 labels 与 input_ids 等长, 调用方不用自己移位; 最后一个位置没有下一个 token, 不参与。
        targets = labels[:, 1:]  # (B, T-1)
        keep = targets != IGNORE_INDEX  # (B, T-1)
        # 只把要算 loss 的位置送进 lm_head: SFT 里 system/user 部分全是 -100, 常占一半以上;
        # 而 lm_head (C x V, V 是词表大小: 课程里 1,536, 预设 4,096) 是最大的一个矩阵乘, 跳过被 mask 的位置能省下可观的计算。
        logits = self.lm_head(h[:, :-1][keep])  # (N, V)
        # 用"总和 / max(N, 1)"而不是 mean: 全部是 -100 时 N=0, 空的总和恰好是 0, 梯度也全是 0;
        # 而 mean 会得到 0/0 = NaN。
        loss = F.cross_entropy(logits, targets[keep], reduction="sum") / max(logits.size(0), 1)
        return logits, loss

    def generate(self, input_ids, max_new_tokens=200, temperature=0.8, top_k=None, top_p=None,
                 eos_id=None, seed=None, use_cache=True):
        """逐个 yield 新生成的 token id (流式); yield 出 eos_id 之后停止。先调用 model.eval()。

        上下文窗口: 提示超过 max_seq_len 时只保留最后 max_seq_len 个 token; 生成中窗口满了就丢掉最旧的
        一半再继续 (带缓存时重新 prefill 这一半)。每个 token 都滑动一次会让缓存每步作废, 和不用缓存一样慢。
        use_cache=False 时每步把整个窗口重算一遍, 窗口规则相同, 所以两种方式得到同样的输出。
        """
        if len(input_ids) == 0:
            raise ValueError("generate 需要至少一个输入 token")
        if top_k is not None and top_k < 1:  # torch.topk 取 0 个会得到空表, 到抽样时才是看不懂的下标错误
            raise ValueError(f"top_k 要 >= 1 (不限制就传 None), 收到 {top_k}")
        L = self.config.max_seq_len
        device = self.embed_tokens.weight.device
        gen = torch.Generator(device=device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        ctx = list(input_ids)[-L:]  # 当前窗口里的 token
        cached = 0  # ctx 的前 cached 个 token 已经在 KV cache 里
        kv_cache = None
        for _ in range(max_new_tokens):
            # 只在算的时候进入 inference_mode; 不能跨过 yield, 否则调用方的代码也会跑在无梯度模式里
            with torch.inference_mode():
                if use_cache:
                    if kv_cache is None:
                        kv_cache = self.init_kv_cache(1)
                    x = torch.tensor([ctx[cached:]], device=device)  # (1, 新 token 数)
                    h = self.hidden_states(x, kv_cache, start_pos=cached)
                    cached = len(ctx)
                else:
                    h = self.hidden_states(torch.tensor([ctx], device=device))
                logits = self.lm_head(h[:, -1])  # (1, V): 只有最后一个位置需要预测
                next_id = sample_next(logits, temperature, top_k, top_p, gen).item()  # 每个 token 唯一的一次同步
            yield next_id
            if next_id == eos_id:
                return
            ctx.append(next_id)
            if len(ctx) > L:
                ctx, cached = ctx[-max(1, L // 2):], 0  # max: L=1 时 -(L // 2) 是 -0, 会留下整个列表

    @torch.inference_mode()
    def greedy_batch(self, prompts, max_new_tokens, stop_ids):
        """评估用的批量贪心解码: prompts 是几条 **一样长** 的 token 列表, 一起 prefill, 之后每步一起生成一个 token。
        先调用 model.eval()。

        一样长, 就不用 padding 和 attention mask: 每一行的位置、KV cache 都和单独用 generate(temperature=0) 时相同。
        但矩阵乘多了几行, 库会换一种算法, logits 的最后几位会不同 (CPU 上实测差 1e-7 到 1e-6); 只有两个候选几乎一样大时,
        贪心才会因此选得不同。课程的三个模型答 600 道评估题, 两种方式逐字一样。
        batch 1 的逐 token 解码大部分时间花在每个算子的固定开销上, 一次算几十行几乎不多花时间。
        某一行说出 stop_ids 里的 token, 这一行就结束 (那个 token 不算回答), 其余行接着生成, 全部结束或到 max_new_tokens 为止。
        不滑动窗口: 提示加回答必须放得下 (len + max_new_tokens - 1 <= max_seq_len)。
        返回每条的 (回答的 token 列表, 结束它的 token; 到了上限还没结束时是 None)。
        """
        if not prompts:
            return []
        T = len(prompts[0])
        if T == 0 or any(len(p) != T for p in prompts) or T + max_new_tokens - 1 > self.config.max_seq_len:
            raise ValueError("greedy_batch 的提示要一样长 (至少一个 token), 而且加上回答放得进窗口")
        kv_cache = self.init_kv_cache(len(prompts))
        x = torch.tensor(prompts, device=self.embed_tokens.weight.device)  # (B, T), 第一步是整段提示
        replies, stops, start_pos = [[] for _ in prompts], [None] * len(prompts), 0
        live = set(range(len(prompts)))  # 还没结束的行
        for _ in range(max_new_tokens):
            h = self.hidden_states(x, kv_cache, start_pos)
            start_pos += x.size(1)
            x = self.lm_head(h[:, -1]).argmax(dim=-1, keepdim=True)  # (B, 1): 每行下一个 token, 也是下一步的输入
            for i, t in enumerate(x[:, 0].tolist()):  # 每步唯一的一次同步
                if i not in live:  # 这一行早就结束了, 它后面生成的不要
                    continue
                if t in stop_ids:
                    stops[i] = t
                    live.discard(i)
                else:
                    replies[i].append(t)
            if not live:
                break
        return list(zip(replies, stops))


def sample_next(logits, temperature, top_k, top_p, gen):
    """logits (1, V) -> 下一个 token (1, 1)。temperature=0 是贪心。"""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    ids = None
    if top_k is not None or top_p is not None:
        # 候选按 logit 从大到小排好; top_k 只留前 k 个 (torch.topk 比把 4096 个全排序快得多)
        k = logits.size(-1) if top_k is None else min(top_k, logits.size(-1))
        logits, ids = torch.topk(logits, k)  # (1, k) 的值和它们在词表里的 id
    probs = logits.softmax(dim=-1)
    if top_p is not None and top_p < 1.0:
        # nucleus: 保留累计概率刚达到 top_p 的最短前缀 (在它之前的累计还没到 top_p)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # (1, k)
        drop[:, 0] = False  # 第一名总会保留 (直接调用时 top_p=0 也不会一个都不剩)
        probs = probs.masked_fill(drop, 0.0)
    # 按累积分布抽样: 在 [0, 总概率) 里均匀取一个 u, 选第一个累计概率超过 u 的位置。
    # 这正是"按概率抽一个"的定义; 比 torch.multinomial 少做 V 次指数运算, 逐 token 生成时能省下可观的时间。
    cdf = probs.cumsum(dim=-1)  # (1, k)
    u = torch.rand(1, 1, generator=gen, device=probs.device) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.size(-1) - 1)  # clamp: 防浮点舍入越界
    return choice if ids is None else ids.gather(-1, choice)


def main():
    parser = make_parser("打印每个模型预设的配置和参数量")
    parser.add_argument("--vocab_size", type=int, default=None, help="覆盖词表大小 (默认用预设里的值; 实际由分词器决定)")
    args = parser.parse_args()
    for name in PRESETS:
        cfg = get_config(name) if args.vocab_size is None else get_config(name, vocab_size=args.vocab_size)
        model = GPT(cfg)
        print(f"{name:8s} {model.num_params() / 1e6:8.2f}M 参数 (不含 embedding {model.num_params(True) / 1e6:.2f}M)  "
              f"n_layer={cfg.n_layer} n_embd={cfg.n_embd} n_head={cfg.n_head} n_kv_head={cfg.n_kv_head} "
              f"intermediate={cfg.intermediate_size} vocab={cfg.vocab_size} max_seq_len={cfg.max_seq_len}")


if __name__ == "__main__":
    run_main(main)
