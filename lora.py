"""从零实现 LoRA: 冻结原来的 W, 只训练一条低秩旁路 y = Wx + (alpha/r)·B(A(x))。

W 的形状是 (m, n); A 是 (r, n), B 是 (m, r), r ≪ n, m。
要训练的参数从 n·m 降到 (n+m)·r, 例如 n = m = 256, r = 8 时从 65536 降到 4096。

本文件做的事:
  - LoRALinear: 用组合 (composition) 包住一个 nn.Linear, 不去改写它的 forward;
  - apply_lora: 按名字后缀 (q_proj, v_proj, ...) 或 "all-linear" 把模型里的 Linear 换成 LoRALinear, 冻结其余一切;
  - 适配器的保存/加载 (只含 lora_A/lora_B), merge/unmerge, 参数计数, 底座权重指纹 base_fingerprint。
刻意省略: PEFT 的多适配器字典和 adapter 名字 (这里换适配器 = 往同一个模型里加载另一份 state dict),
DoRA / rsLoRA 等变体, Embedding/Conv 层上的 LoRA, 量化底座 (QLoRA)。

运行: python lora.py 在一个 256x256 的层上演示参数算术和 merge;
      python -m pytest -q tests/test_lora.py 检查课程里的几个结论。
"""
import hashlib
import math

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch
import torch.nn as nn


class LoRALinear(nn.Module):
    def __init__(self, base_layer: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.05):
        super().__init__()
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)  # 底座冻结: 只学旁路
        w = base_layer.weight
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False, device=w.device, dtype=w.dtype)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False, device=w.device, dtype=w.dtype)
        # A 随机 (用 PEFT 默认的 kaiming-uniform; 论文用高斯, 要紧的只是 A 不为零), B 全零: BA = 0, 所以第 0 步的模型和底座一模一样,
        # 训练从底座出发; 而 A 不为零, B 的梯度 (依赖 A x) 就不为零, 训练能动起来。两个都为零则永远学不动。
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        # 除以 r: 换一个 r 时旁路输出的量级大致不变, 学习率和 alpha 通常不用跟着重调 (经验做法, 不严格; rsLoRA 改用 alpha/√r)
        self.scaling = alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self._weight_before_merge = None

    def delta_weight(self) -> torch.Tensor:
        # (m, r) @ (r, n) = (m, n), 与 W 同形
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x):
        y = self.base_layer(x)  # (B, T, m)
        if self.merged:  # 旁路已经折进 W
            return y
        # 乘 scaling 放在窄的 r 维上 (而不是 m 维的输出上): 数学上一样, 逐元素乘法少 m/r 倍
        h = self.lora_A(self.lora_dropout(x)) * self.scaling  # (B, T, n) -> (B, T, r)
        return y + self.lora_B(h)  # (B, T, r) -> (B, T, m)

    @torch.no_grad()
    def merge(self):
        # Wx + s·B(Ax) = (W + s·BA)x 是线性代数恒等式, 所以合并后推理少一条旁路, 输出只差浮点舍入。
        # 浮点的 (W + d) - d 不逐位等于 W, 所以存一份原 W (只占被套层的大小):
        # unmerge 逐位还原, base_fingerprint 在合并状态下也算原 W 的指纹。
        if self.merged:
            return
        self._weight_before_merge = self.base_layer.weight.detach().clone()
        self.base_layer.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        self.base_layer.weight.copy_(self._weight_before_merge)
        self._weight_before_merge = None
        self.merged = False


def _lora_layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def _base_name(name: str) -> str:
    # "layers.0.self_attn.q_proj.base_layer.weight" -> "layers.0.self_attn.q_proj.weight" (套 LoRA 之前的名字)
    return name.replace(".base_layer.", ".")


def apply_lora(model, target_modules, r=8, alpha=16, dropout=0.05) -> list[str]:
    if isinstance(target_modules, str):
        target_modules = [t.strip() for t in target_modules.split(",") if t.strip()]
    if _lora_layers(model):
        raise SystemExit("错误: 这个模型已经套过 LoRA (apply_lora)。请从没套 LoRA 的底座重新开始")
    if r < 1 or not 0 < alpha < math.inf or not 0 <= dropout < 1 or not target_modules:  # nan 的比较都是 False
        raise SystemExit(f"错误: LoRA 设置不合法 (r={r}, alpha={alpha}, dropout={dropout}, target_modules={target_modules})。"
                         "r 要 >= 1, alpha 是正数, dropout 在 [0, 1) 内, target_modules 不能为空")
    # lm_head 与 embed_tokens 共享权重: merge 会连带改掉输入 embedding, 所以和 PEFT 一样不套在输出层上
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] != "lm_head"]
    if "all-linear" in target_modules and len(target_modules) > 1:
        raise SystemExit(f"错误: target_modules={','.join(target_modules)}: all-linear 已经包含所有线性层, 要单独写, "
                         "不能和具体的层名并列。例如 --target_modules all-linear 或 --target_modules q_proj,v_proj")
    if target_modules == ["all-linear"]:
        names = linears
    else:
        names = []
        for t in target_modules:
            hits = [n for n in linears if n == t or n.endswith("." + t)]
            if not hits:
                kinds = ", ".join(dict.fromkeys(n.split(".")[-1] for n in linears))
                raise SystemExit(f"错误: target_modules 里的 '{t}' 没有匹配到任何 Linear 层。可选: {kinds}, 或 all-linear")
            names += [n for n in hits if n not in names]
    # BA 的秩不会超过 W 的行数和列数: r 再大只是白花参数 (大到离谱时分配 A、B 就会耗尽内存)
    limit, narrowest = min((min(model.get_submodule(n).in_features, model.get_submodule(n).out_features), n) for n in names)
    if r > limit:
        raise SystemExit(f"错误: LoRA 的秩 r={r} 超过了目标层 {narrowest} 的输入、输出维度中较小的 {limit}。"
                         f"r 最多 {limit} (通常取 4~64)")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        # 新模块默认是 train 模式; 跟随被替换的层, 否则 eval 中的模型会突然开启旁路上的 dropout
        setattr(parent, child, LoRALinear(old, r, alpha, dropout).train(old.training))
    # 整个模型冻结 (包括 norm 和 embedding), 只有 lora_A / lora_B 可训练
    model.requires_grad_(False)
    for _, m in _lora_layers(model):
        m.lora_A.requires_grad_(True)
        m.lora_B.requires_grad_(True)
    return names


def lora_state_dict(model) -> dict:
    # 复制到 CPU: 存下来的适配器不随之后的训练变化, 换适配器时旧的那份也还在
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if ".lora_" in n}


def load_lora_state_dict(model, sd: dict):
    params = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    if not params:
        raise SystemExit("错误: 模型里没有 LoRA 层, 无法加载适配器。请先 apply_lora (用适配器保存时的 target_modules 和 r)")
    missing, unexpected = sorted(set(params) - set(sd)), sorted(set(sd) - set(params))
    if missing or unexpected:
        raise SystemExit(f"错误: 适配器与模型的 LoRA 层对不上 (缺少 {missing[:3]}, 多出 {unexpected[:3]})。"
                         "请检查 target_modules 是否与训练时一致")
    for n, p in params.items():
        if not isinstance(sd[n], torch.Tensor):  # 手改过的文件: 否则下面取 .shape 是 AttributeError
            raise SystemExit(f"错误: 适配器里的 {n} 不是张量 (是 {type(sd[n]).__name__})。请用 train_lora.py 重新训练它")
        if sd[n].shape != p.shape:
            raise SystemExit(f"错误: 适配器张量 {n} 的形状 {tuple(sd[n].shape)} 与模型的 {tuple(p.shape)} 不符。"
                             "请检查 r 和底座模型是否与训练时一致")
    # 已合并的层先还原, 换上新的 A/B 后再合并, 否则 W 里会残留旧适配器
    merged = [m for _, m in _lora_layers(model) if m.merged]
    for m in merged:
        m.unmerge()
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(sd[n])
    for m in merged:
        m.merge()


def merge_lora(model):
    for _, m in _lora_layers(model):
        m.merge()


def unmerge_lora(model):
    for _, m in _lora_layers(model):
        m.unmerge()


@torch.no_grad()
def merged_state_dict(model) -> dict:
    """不改动 model, 返回折叠了 LoRA 的普通 state_dict (原始名字), 可直接 load 进没套 LoRA 的同配置模型。

    只有套了 LoRA 的层得到新张量 W + s·BA (已经 merge 过的层也从原 W 算起, 之后 unmerge 不会改到它);
    其余张量原样引用, 不复制: 共享的 embed_tokens / lm_head 仍是同一个张量, 存盘时也只占一份
    (各自 clone 一份的话, 合并后的文件会比底座大出一整张词表)。"""
    sd = {_base_name(n): t for n, t in model.state_dict().items() if ".lora_" not in n}
    for name, m in _lora_layers(model):
        w = m._weight_before_merge if m.merged else sd[name + ".weight"]
        sd[name + ".weight"] = w + m.delta_weight()  # 新张量: model 里的 W 不变
    return sd


def count_parameters(model) -> tuple[int, int]:
    params = list(model.parameters())  # parameters() 对共享的 lm_head/embed_tokens 只算一次
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_param_arithmetic(layer, r: int) -> tuple[int, int]:
    """一层的课程算术: 全量微调要训练 n·m 个数, LoRA 只要 (n+m)·r 个。"""
    layer = layer.base_layer if isinstance(layer, LoRALinear) else layer
    n, m = layer.in_features, layer.out_features
    return n * m, (n + m) * r


def base_fingerprint(model) -> str:
    """底座 (非 LoRA) 参数的 sha256 前 16 位, 用于检查适配器是否套在训练时的同一个底座上。

    按套 LoRA 之前的名字排序计算, 所以 apply_lora 前后结果一样; 已合并的层用合并前的原 W,
    所以 merge / unmerge 也不改变它。按 float32 取值, 与 dtype 的存储方式无关。
    """
    originals = {name + ".base_layer.weight": m._weight_before_merge for name, m in _lora_layers(model) if m.merged}
    tensors = {_base_name(n): originals.get(n, p) for n, p in model.named_parameters() if ".lora_" not in n}
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def demo():
    """python lora.py: 在一个 256x256 的层上看课程的三个结论 (参数算术、第 0 步等于底座、merge 前后一样)。"""
    make_parser("在一个 256x256 的层上演示 LoRA 的参数算术、第 0 步等于底座、merge 前后输出相同").parse_args()
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(256, 256), r=8, alpha=16, dropout=0.0)
    full, lora = lora_param_arithmetic(layer, r=8)
    print(f"256x256 的层: 全量 n·m = {full}, LoRA (n+m)·r = {lora} ({100 * lora / full:.2f}%)")
    x = torch.randn(4, 256)
    print("第 0 步 (B = 0) 与底座的最大差:", (layer(x) - layer.base_layer(x)).abs().max().item())
    nn.init.normal_(layer.lora_B.weight, std=0.02)  # 假装训练过
    y = layer(x)
    layer.merge()
    print("merge 前后输出的最大差:", (layer(x) - y).abs().max().item())


if __name__ == "__main__":
    run_main(demo)
