"""checkpoint.py — 保存与加载 checkpoint, 全项目只有这一处读写 .pt 文件。

一个模型 checkpoint 是一个 dict, 自带聊天所需的一切:
    {"format": "sft-lesson/v1", "kind": "model", "model_config": {...}, "model_state": {...},
     "tokenizer": {...}, "args": {...}, "metrics": {...}}
LoRA 适配器 (kind="lora_adapter") 只存 lora_A/lora_B、它的配置、训练参数和指标, 外加底座的路径与指纹;
续训状态 (kind="resume") 由 trainer.py 写, 多了优化器状态、步数和 loss 历史 (随机数由步数推出, 不用存)。

两条安全规则:
  - 加载一律 torch.load(weights_only=True): pickle 能执行任意代码, 陌生人给的 .pt 不能让它跑代码。
    所以 checkpoint 里只放张量和 dict/list/str/int/float 这类基本类型。
  - 保存先写临时文件再 os.replace 改名 (原子操作): 中途崩溃不会留下半个文件, 也不会毁掉上一个好的 checkpoint。
"""
import errno
import json
import os
import pickle
import stat

import torch

from cli import elsewhere, write_atomically

FORMAT = "sft-lesson/v1"


def save_checkpoint(path, obj):
    """原子写入 (cli.write_atomically: 临时文件, 刷到磁盘, 再改名覆盖)。写不了时一行错误, path 原来的内容不动。"""
    try:
        write_atomically(path, lambda f: torch.save(obj, f), "wb")
    except RuntimeError:  # torch.save 把写文件的失败 (多半是磁盘满了) 包成 RuntimeError: "unexpected pos ..."
        raise SystemExit(f"错误: 写不了 {path} (torch.save 写到一半失败, 多半是磁盘满了)。检查磁盘空间; "
                         f"{path} 原来的内容没有动") from None


def save_results_json(path, obj):
    """evaluate.py / bench.py 的 --json 结果: 原子写入 (cli.write_atomically)。写不了 (例如磁盘满了) 时一行错误,
    原来的文件不动; 结果表这时已经打印在终端上了。"""
    write_atomically(path, lambda f: json.dump(obj, f, ensure_ascii=False, indent=2), hint="结果表在上面; 检查磁盘空间后重跑")


def checkpoint_kind(path):
    """path 是本课程的 checkpoint 时返回它的 kind ("model" / "lora_adapter" / "resume"), 否则 None。
    mmap=True: 张量不读进内存, 大模型也只要一瞬间。"""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # 不是 torch 的 zip 文件 (文本、JSON、截断的文件……)
        return None
    return obj.get("kind") if isinstance(obj, dict) and obj.get("format") == FORMAT else None


def check_output_path(path, flag="--out", inputs=(), kinds=None, ours=None, change=None):
    """开始花时间的工作之前先确认结果写得出去: path 不是目录, 所在目录建得出来、可写,
    也不是这次要读的某个输入 (inputs: [(参数名, 路径)]) —— 否则写结果时就把输入覆盖了。

    这个路径上已经有文件时, 只有 "同一种结果" 可以被覆盖 (重跑一次训练就换掉上次的模型, 这是预期的),
    别的文件 (分词器、数据、README、另一种 checkpoint) 一律拒绝:
      kinds: 要写的是 checkpoint, 路径要以 .pt 结尾, 已有的文件必须是这几种 kind 之一;
      ours:  要写的是 JSON 结果, 路径要以 .json 结尾, 已有的文件必须让 ours(它的内容) 为真 (就是这个脚本写过的结果)。
    change: 错误信息里叫用户换掉的参数, 默认就是 flag; 路径由别的参数推出来时 (如 --merge 的输出按 --out 起名) 是那个参数。"""
    change = change or flag
    example = 'runs/results.json' if ours else 'checkpoints/model.pt'
    if not path:
        raise SystemExit(f"错误: {flag} 是空的, 这里要一个文件路径 (例如 {example})")
    if not os.path.basename(path) or os.path.isdir(path):
        raise SystemExit(f"错误: {flag} {path!r} 是目录, 这里要一个文件路径 (例如 {example})")
    if os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode):  # 下面试写时的 open 会一直等读的一方; 改名还会把它换掉
        raise SystemExit(f"错误: {flag} {path} 是命名管道, 不是普通文件, 写结果会把它换掉。换一个文件路径 (例如 {example})")
    for in_flag, src in inputs:
        if src and os.path.isfile(src) and os.path.isfile(path) and os.path.samefile(src, path):
            raise SystemExit(f"错误: {flag} {path} 就是 {in_flag} 读的文件, 写结果会把它覆盖。换一个 {change}")
    suffix = ".pt" if kinds else ".json" if ours else None
    if suffix and not path.endswith(suffix):  # 日志、曲线、续训状态按 --out 去掉扩展名来起名, 扩展名不对就会和别的文件撞名
        raise SystemExit(f"错误: {flag} {path} 要以 {suffix} 结尾。例如 {os.path.splitext(path)[0] + suffix}")
    if kinds and path.endswith(".resume.pt"):  # 这是训练旁边的续训状态的名字, 下一次训练会把它当成没训练完的运行
        raise SystemExit(f"错误: {flag} {path}: 以 .resume.pt 结尾的名字留给续训状态。换一个名字, 例如 {path[:-10]}.pt")
    if os.path.isfile(path) and os.path.getsize(path) > 0 and (kinds or ours):  # 空文件 (比如 touch 出来的) 里没有可丢的东西
        if kinds:
            kind = checkpoint_kind(path)
            ok = kind in kinds
            what = f"是 {kind!r} 类型的 checkpoint (这里要写的是 {' 或 '.join(kinds)})" if kind else "不是本课程的 checkpoint"
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    ok = ours(json.load(f))
            except (OSError, ValueError, RecursionError):  # RecursionError: 嵌套几千层的 JSON
                ok = False
            what = "不是这个脚本写的结果"
        if not ok:
            raise SystemExit(f"错误: {flag} {path} 已经存在, 而且{what}, 写结果会把它覆盖。换一个 {change}, 或先把它移走")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"错误: {flag} {path}: 建不了目录 {folder} ({e.strerror})。换一个路径") from None
    existed = os.path.exists(path)
    try:  # 真的打开一次 (追加模式, 不改动已有内容) 才算数: 只读的文件系统、root 身份下 os.access 都靠不住
        with open(path, "ab"):
            pass
    except OSError as e:
        raise SystemExit(f"错误: {flag} {path} 写不进去 ({e.strerror})。换一个路径") from None
    if not existed:
        os.remove(path)


def load_checkpoint(path, kinds=None, map_location="cpu"):
    """加载并校验; 任何问题都变成一行能照着做的错误信息。kinds: 允许的 kind 列表。"""
    if os.path.isdir(path):  # 常见的手误: --checkpoint checkpoints
        raise SystemExit(f"错误: {path} 是目录, 不是 checkpoint 文件。写出文件名, 例如 {os.path.join(path, 'sft_model.pt')}")
    if not os.path.exists(path):
        raise SystemExit(f"错误: 找不到 checkpoint {path}。{elsewhere(path) or '先训练出它 (例如 python train_sft.py), 或检查路径'}")
    if not os.path.isfile(path):  # /dev/null、管道之类: 存在, 只是不是文件
        raise SystemExit(f"错误: {path} 不是普通文件, 不是 checkpoint。写出 checkpoint 文件的路径, 例如 checkpoints/sft_model.pt")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # 引用了张量和基本类型以外的对象 (函数、类……): 这正是 pickle 执行代码的方式
            raise SystemExit(f"错误: {path} 含有 weights_only=True 不允许的对象 (可能携带代码), 拒绝加载。只加载本课程脚本保存的 checkpoint")
        raise SystemExit(f"错误: {path} 不是完整的 checkpoint (文件损坏或被截断, 或者根本不是 .pt 文件)。请重新训练或重新下载")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):  # 没有读权限
            raise SystemExit(f"错误: 读不了 {path} ({e.strerror})。检查文件的权限")
        # 截断的 zip 文件也会让 torch 报 OSError (例如 "Invalid argument"): 那是文件坏了, 不是权限
        raise SystemExit(f"错误: {path} 不是完整的 checkpoint (文件损坏或被截断: {e.strerror or e})。请重新训练或重新下载")
    except Exception as e:  # 截断、损坏、根本不是 torch 文件
        raise SystemExit(f"错误: {path} 不是完整的 checkpoint (文件损坏或被截断, 或者根本不是 .pt 文件: {type(e).__name__})。"
                         "请重新训练或重新下载")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise SystemExit(f"错误: {path} 不是本课程的 checkpoint (缺少 format={FORMAT!r})。请用 pretrain.py / train_sft.py 生成的文件")
    if kinds and obj.get("kind") not in kinds:
        raise SystemExit(f"错误: {path} 是 {obj.get('kind')!r} 类型的 checkpoint, 这里需要 {' 或 '.join(kinds)}")
    if obj.get("kind") == "lora_adapter":
        check_adapter(obj, path)
    return obj


def check_adapter(adapter, path):
    """适配器里加载时要用到的几项 (见 save_adapter) 都在: 缺了就一行说明, 而不是用到时的 KeyError。"""
    need = {"base": ("path", "fingerprint"), "lora_config": ("r", "alpha", "dropout", "target_modules"), "lora_state": ()}
    missing = []
    for key, fields in need.items():
        part = adapter.get(key)
        missing += [key] if not isinstance(part, dict) else [f"{key}.{f}" for f in fields if f not in part]
    if missing:
        raise SystemExit(f"错误: {path} 不是完整的 LoRA 适配器 (缺少 {', '.join(missing)})。请用 train_lora.py 重新训练它")
    odd = [f"base.{f}" for f in ("path", "fingerprint") if not isinstance(adapter["base"][f], str)]
    if odd:  # 底座的路径和指纹要拿去找文件、做比较
        raise SystemExit(f"错误: {path} 的 LoRA 适配器内容不对 ({', '.join(odd)} 不是字符串)。请用 train_lora.py 重新训练它")


def save_model(path, model, tokenizer, args=None, metrics=None, state=None):
    """保存完整模型: 权重 + 配置 + 分词器 + 训练参数 + 最终指标。单凭这一个文件就能聊天。

    state: 要保存的权重 (默认 model.state_dict(); LoRA 合并后的模型传入 merged_state_dict)。
    """
    from dataclasses import asdict
    state = model.state_dict() if state is None else state
    # 拷到 CPU 时共享的张量 (embed_tokens 与 lm_head) 只拷一次: GPU 上各自 .cpu() 会变成两份, 文件里也就存两份
    cpu = {}
    for k, v in state.items():
        key = (v.data_ptr(), v.shape)
        if key not in cpu:
            cpu[key] = v.detach().cpu()
    save_checkpoint(path, {
        "format": FORMAT, "kind": "model",
        "model_config": asdict(model.config),
        "model_state": {k: cpu[v.data_ptr(), v.shape] for k, v in state.items()},
        "tokenizer": tokenizer.to_dict(),
        "args": dict(args or {}), "metrics": dict(metrics or {}),
    })


def save_adapter(path, model, lora_config, base_path, fingerprint, args=None, metrics=None):
    """保存 LoRA 适配器: 只有 lora_A/lora_B、LoRA 配置, 以及底座的路径和指纹 (加载时据此找底座、核对底座)。"""
    from lora import lora_state_dict
    save_checkpoint(path, {
        "format": FORMAT, "kind": "lora_adapter",
        "lora_state": lora_state_dict(model),
        "lora_config": dict(lora_config),  # {"r", "alpha", "dropout", "target_modules"}
        "base": {"path": base_path, "fingerprint": fingerprint},
        "args": dict(args or {}), "metrics": dict(metrics or {}),
    })


def build_model(ckpt, path, device="cpu"):
    """由模型 checkpoint (dict, 读自 path) 重建 (model, tokenizer)。

    文件是本课程的格式, 内容却可能不全或对不上 (缺了权重或分词器、配置里 n_head=0……): 每个脚本都经过这里,
    所以在这里把它们变成一行指名文件的错误, 而不是 KeyError、ZeroDivisionError 之类的 traceback。"""
    from model import GPT, get_config
    from tokenizer import Tokenizer
    try:
        # 经 get_config 建配置: 形状不合法的配置在这里就被拒绝 (预设 default 的字段就是 GPTConfig 的默认值)
        model = GPT(get_config("default", **ckpt["model_config"]))
        model.load_state_dict(ckpt["model_state"])
        tokenizer = Tokenizer.from_dict(ckpt["tokenizer"])
        if tokenizer.vocab_size != model.config.vocab_size:  # 特殊 token 的 id 就对不上了, 生成时还会越界
            raise SystemExit(f"错误: 分词器的词表有 {tokenizer.vocab_size} 个 token, 模型的 vocab_size 却是 "
                             f"{model.config.vocab_size}: 它们不是一起训练的。请用同一次训练保存的 checkpoint")
    except SystemExit as e:  # get_config、分词器已经给了一行说明, 补上是哪个文件
        raise SystemExit(f"错误: {path}: {str(e.code).removeprefix('错误: ')}") from None
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        what = f"缺少 {e}" if isinstance(e, KeyError) else type(e).__name__
        raise SystemExit(f"错误: {path} 的模型配置、权重或分词器不完整或对不上 ({what})。请重新训练或重新保存") from None
    return model.to(device), tokenizer


def resolve_base_path(adapter_path, base_path):
    """适配器记下的底座路径是训练时给的 (相对于当时的工作目录); 找不到时再到适配器旁边找同名文件。"""
    if os.path.isfile(base_path):
        return base_path
    beside = os.path.join(os.path.dirname(adapter_path), os.path.basename(base_path))
    return beside if os.path.isfile(beside) else base_path


def load_model(path, device="cpu", lora=None):
    """加载可以直接用来生成的模型: path 可以是完整模型, 也可以是 LoRA 适配器 (它知道自己的底座)。

    lora: 另给一个适配器路径, 套在 path 这个底座上。返回 (model, tokenizer, ckpt), model 处于 eval 模式。
    """
    ckpt = load_checkpoint(path, kinds=("model", "lora_adapter"))
    adapter = None
    if ckpt["kind"] == "lora_adapter":
        adapter, adapter_path = ckpt, path
        path = resolve_base_path(path, ckpt["base"]["path"])
        if not os.path.isfile(path):
            raise SystemExit(f"错误: 找不到适配器 {adapter_path} 的底座 {path} (训练时记下的路径)。把底座放回那里, "
                             f"或者直接指定底座: python chat.py --checkpoint 底座.pt --lora {adapter_path} "
                             f"(评估: python evaluate.py 底座.pt --lora {adapter_path})")
        ckpt = load_checkpoint(path, kinds=("model",))
    if lora:
        if adapter:
            raise SystemExit(f"错误: {adapter_path} 已经是适配器, 不能再用 --lora 叠加另一个")
        adapter, adapter_path = load_checkpoint(lora, kinds=("lora_adapter",)), lora
    model, tokenizer = build_model(ckpt, path, device)
    if adapter:
        apply_adapter(model, adapter, adapter_path, path)
    model.eval()
    return model, tokenizer, ckpt


def adapter_problem(adapter_path, e):
    """lora.py 的一行说明 (SystemExit e) 是对 "参数" 说的; 毛病在适配器文件里时, 补上是哪个文件。"""
    return SystemExit(f"错误: 适配器 {adapter_path} 的内容不对: {str(e.code).removeprefix('错误: ')}")


def apply_adapter(model, adapter, adapter_path, base_path):
    """把适配器套到模型上; 底座不对 (指纹不同) 时报错, 而不是悄悄输出乱码。"""
    from lora import apply_lora, base_fingerprint, load_lora_state_dict
    fp = base_fingerprint(model)
    if fp != adapter["base"]["fingerprint"]:
        recorded = resolve_base_path(adapter_path, adapter["base"]["path"])
        if os.path.abspath(base_path) == os.path.abspath(recorded):
            # 用的正是它记下的底座路径, 那里的模型却不是当时的: 叫人 "用它记下的底座" 就是原地打转
            raise SystemExit(f"错误: 适配器 {adapter_path} 记下的底座路径是 {base_path}, 但那里的模型不是训练它时的那个 (指纹当时 "
                             f"{adapter['base']['fingerprint']}, 现在 {fp}; 比如后来又跑了一次 pretrain.py, 或适配器是从别处拷来的)。"
                             "在现在的底座上重新训练适配器 (python train_lora.py), 或换回当时的底座")
        raise SystemExit(f"错误: 适配器 {adapter_path} 是在另一个底座上训练的 (指纹 {adapter['base']['fingerprint']}), "
                         f"而 {base_path} 的指纹是 {fp}。请用训练它时的底座 {adapter['base']['path']}")
    try:
        cfg = adapter["lora_config"]
        apply_lora(model, cfg["target_modules"], r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"])
        load_lora_state_dict(model, adapter["lora_state"])
    except SystemExit as e:
        raise adapter_problem(adapter_path, e) from None
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"错误: 适配器 {adapter_path} 的 LoRA 配置不完整或不对 ({type(e).__name__}: {e})。请重新训练") from None
