"""evaluate.py — 用数字说话: 让模型贪心回答评估集里的每个问题, 和参考答案比对打分。

做什么:
  - 对 data/sft_eval.jsonl 的每条记录, 把最后一条 assistant 回复之前的对话按 chat 模板拼好
    (与训练、chat.py 同一个 data.render_chat), 以 <|assistant|> 结尾, 让模型贪心生成 (temperature=0);
    回复里包含记录的 answer 就算对 (answer 也可以是几个字符串的列表, 每个都要包含)。贪心没有随机性, 同一个模型每次得分都一样。
  - 报告: 每个类别和总体的准确率; 停止率 (回复以 <|endoftext|> 结束、没被 --max_new_tokens 截断的比例。本课的底座
    也几乎都停: 预训练的每段文字以 <|endoftext|> 结尾, 它续写完一段就停 —— 所以这里它查的是 SFT 之后的模型还停不停得下来,
    分不出底座和 SFT); 留出的预训练文本上的困惑度 (SFT 之后它涨了多少, 就是忘了多少);
    以及几条回答样例。给几个 checkpoint 就并排成一张表; --json 把数字写给脚本和 README 用。
  - checkpoint 可以是完整模型, 也可以是 LoRA 适配器 (它记得自己的底座), 一律经 checkpoint.load_model 加载。

不做什么:
  - 不请另一个大模型当裁判, 也不算 BLEU/ROUGE: 示例世界里每个问题都有一个确定的关键答案, "包含即对"
    就够了, 而且谁都看得懂为什么对、为什么错。代价是把一串数字全说一遍的回复也可能蒙对, 所以要同时看样例。
  - 不做长短不一的批量生成: 只把提示一样长的题凑成一批 (model.greedy_batch, 不用 padding 和 attention mask)。
    logits 的最后几位和一题一题解码时不同, 贪心选的 token 在我们量过的模型上都一样 (见 greedy_batch)。CPU 上解码只用一个核, 所以给了几个 checkpoint 时, 开几个进程同时评估 (最多每个 CPU 核一个)。
  - 不同分词器下的困惑度不能直接比较 (每个 token 的含义不同); 本课所有模型共用 data/tokenizer.json。

用法:
    python evaluate.py checkpoints/base_model.pt checkpoints/sft_model.pt     # 并排比较
    python evaluate.py checkpoints/lora_adapter.pt --json runs/eval.json      # 适配器也能直接评估
    python evaluate.py checkpoints/base_model.pt --lora checkpoints/lora_adapter.pt --limit 50
"""
import math
import multiprocessing
import os
import re
import signal
import stat
import sys
import threading
import time
import unicodedata
from collections import Counter
from itertools import zip_longest

from cli import elsewhere, make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch
from tqdm import tqdm

import data
from checkpoint import check_output_path, load_model, save_results_json
from model import pick_device
from trainer import mean_loss

PPL_PATH = os.path.join(data.DATA_DIR, "pretrain_eval.txt")
DEFAULT_CHECKPOINTS = ["checkpoints/base_model.pt", "checkpoints/sft_model.pt", "checkpoints/lora_adapter.pt"]


def score(reply, answer):
    """回复里包含 answer 就算对; answer 是几个字符串的列表时, 每一个都要包含 (例如 ["朱欣霞", "昆明"]:
    说对了城市还不够, 还得说的是这个人。示例评估集目前每条只有一个关键串, 这个规则是宽松的, 见 README 7.2)。

    两处细节: answer 首尾是数字时, 那一侧不能紧挨着别的数字, 也不能是小数的一部分 ("82" 不算 "182"、"820"、
    "0.82" 里的匹配, "等于4" 不算 "等于4.5" 里的, 否则随口报一串数字也能得分; 句末的 "。" 或 "." 不算小数点);
    英文字母不分大小写 (re.ASCII 让 IGNORECASE 只作用于 ASCII 字母)。
    """
    if isinstance(answer, list):
        return bool(answer) and all(score(reply, a) for a in answer)
    answer = answer.strip()
    if not answer:
        return False
    pattern = re.escape(answer)
    if answer[0].isascii() and answer[0].isdigit():
        pattern = r"(?<![0-9])(?<![0-9]\.)" + pattern
    if answer[-1].isascii() and answer[-1].isdigit():
        pattern += r"(?![0-9]|\.[0-9])"
    return re.search(pattern, reply, re.IGNORECASE | re.ASCII) is not None


def require_answer(rec):
    answer = rec.get("answer")
    keys = answer if isinstance(answer, list) and answer else [answer]
    what = "正确回复必须包含的关键字符串, 或几个关键字符串的列表"
    if answer == []:
        raise ValueError(f"answer 是空列表 (要的是{what})")
    for key in keys:
        if key is None and answer is None:
            raise ValueError(f"缺少 answer ({what})")
        if key is None:  # 列表里的 null
            raise ValueError(f"answer 列表里有一项是 null (要的是{what})")
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise ValueError(f"answer 的类型不对, 收到 {type(key).__name__} (要的是{what})")
        if not str(key).strip():  # 空串包含在任何回复里: 不拦的话这道题永远算对
            raise ValueError(f"answer 是空的 (要的是{what}; 空串在任何回复里都 \"包含\", 这道题就永远算对)")
        data.require_utf8(str(key), "answer")  # 评估结果里要打印它们
    data.require_utf8(str(rec.get("category", "default")), "category")


def load_eval_records(path, limit=None):
    """读评估集 -> [{"conversations": [{role, content}, ...], "category": str, "answer": str 或 [str, ...]}]。

    与训练数据同一个读取函数 (data.load_records): 坏记录 (格式不对、没有 answer) 按 file:line 报告后跳过;
    文件不存在或没有一条可用记录时给出一行提示。
    limit: 只取 limit 条, 从头到尾均匀地隔几条取一条 (评估集按类别排好, 只取开头的话全是前一两类)。
    """
    pairs = data.load_records(path, check=require_answer)[0]
    if limit and limit < len(pairs):
        pairs = [pairs[i * len(pairs) // limit] for i in range(limit)]
    return [{"conversations": messages, "category": str(rec.get("category", "default")),
             "answer": [str(a) for a in rec["answer"]] if isinstance(rec["answer"], list) else str(rec["answer"])}
            for rec, messages in pairs]


def evaluate_model(model, tokenizer, records, max_new_tokens=64, desc=None, progress=True, position=None,
                   batch_size=64):
    """贪心回答每一条并打分。

    records: load_eval_records 的输出 (最后一条 assistant 消息是参考回复, 不会给模型看)。
    提示一样长的记录凑成一批, 用 model.greedy_batch 一起解码 (最多 batch_size 条一批), 比一条一条用 model.generate
    快好几倍, 课程的模型上回答逐字相同 (浮点的细节见 greedy_batch)。提示加回答放不进窗口的, 一条一条用 generate (它会滑动窗口)。
    返回 {"overall", "categories": {类别: 准确率}, "stop_rate", "n", "too_long", "max_seq_len", "results": [每条的明细, 与 records 同序]}。
    """
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()  # 关掉 dropout: 评估必须是确定的
    if all(p.device.type == "cpu" for p in model.parameters()):
        # 逐 token 解码时每个矩阵乘只有几行 (batch 1 时 1×256 乘 256×688), 多线程同步的开销比省下的计算还多;
        # 在 2 核、还有别的进程在跑的机器上实测, 一条一条解码时 2 个线程比 1 个慢 5 倍以上, 凑成一批时也只快一成。
        torch.set_num_threads(1)
    specials = {i: name for name, i in tokenizer.special_ids.items()}
    L, too_long = model.config.max_seq_len, 0
    prompts, questions, groups = [], [], {}  # groups: 提示长度 -> 这么长的记录的下标; None 收放不进窗口的
    for i, rec in enumerate(records):
        messages = rec["conversations"]
        history = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        prompts.append(data.render_chat(history, tokenizer, add_generation_prompt=True)[0])
        questions.append(next((m["content"] for m in reversed(history) if m["role"] == "user"), ""))
        # 提示加上回答超出窗口时, generate 会从左边丢掉一半 (见 model.generate): 模型就看不到提示的开头了。记下来, 最后提醒
        # (-1: 最后一个 token 生成出来就结束了, 不会再拿它去算下一步, 所以恰好多出一个时窗口还不用动)
        fits = len(prompts[-1]) + max_new_tokens - 1 <= L
        too_long += not fits
        groups.setdefault(len(prompts[-1]) if fits else None, []).append(i)
    batches = [idx[j:j + batch_size] for length, idx in groups.items() if length is not None
               for j in range(0, len(idx), batch_size)]
    answers = {}  # 记录的下标 -> (回答的 token, 结束它的特殊 token 或 None)
    bar = tqdm(total=len(records), desc=desc, disable=not progress, leave=False, position=position)
    # inference_mode 不记录计算图, 比 no_grad 更省; 整个循环只进入一次
    # 和 chat.py 一样, 任何特殊 token 都结束回答: 生成 <|user|> 是开始替用户说话了
    try:
        with torch.inference_mode():
            for idx in batches:
                answers.update(zip(idx, model.greedy_batch([prompts[i] for i in idx], max_new_tokens, specials)))
                bar.update(len(idx))
            for i in groups.get(None, []):
                ids, stop = [], None
                for t in model.generate(prompts[i], max_new_tokens=max_new_tokens, temperature=0, eos_id=tokenizer.eot_id):
                    if t in specials:
                        stop = t
                        break
                    ids.append(t)
                answers[i] = ids, stop
                bar.update(1)
    finally:  # 出错或 Ctrl-C 时也还原: 调用方手里的模型和线程数不受影响
        bar.close()
        model.train(was_training)
        torch.set_num_threads(threads)
    results = []
    for i, rec in enumerate(records):
        reply, stop = tokenizer.decode(answers[i][0]), specials.get(answers[i][1])  # stop 是 None: 到了上限还没说完
        results.append({"category": rec["category"], "question": questions[i], "answer": rec["answer"],
                        "reply": reply, "stop": stop, "stopped": stop == "<|endoftext|>",  # 自己说了结束符才算停下
                        "correct": score(reply, rec["answer"])})

    by_cat = {}
    for r in results:
        by_cat.setdefault(r["category"], []).append(r["correct"])
    n = len(results)
    return {"overall": sum(r["correct"] for r in results) / n,
            "categories": {c: sum(v) / len(v) for c, v in by_cat.items()},
            "stop_rate": sum(r["stopped"] for r in results) / n,
            "n": n, "too_long": too_long, "max_seq_len": L, "results": results}


def perplexity(model, tokenizer, path, max_blocks=50, batch_size=16):
    """留出的预训练文本上的困惑度 = exp(按 token 加权的平均交叉熵)。

    样本切分与 pretrain.py 训练时完全相同 (同一个 PretrainDataset: 一段一个样本, 超过窗口长度的段切成几个),
    只取前 max_blocks 个样本以节省时间。
    直觉: 困惑度 ≈ 模型在每个位置平均 "犹豫" 于多少个候选 token; 随机初始化的模型约等于词表大小。
    """
    from pretrain import PretrainDataset
    ds = PretrainDataset(path, tokenizer, model.config.max_seq_len)
    items = [ds[i] for i in range(min(max_blocks, len(ds)))]
    if not items:
        raise SystemExit(f"错误: {path} 里没有文字。换一份文本, 或用 --ppl_blocks 0 跳过困惑度")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = (data.collate(items[i:i + batch_size], tokenizer.pad_id) for i in range(0, len(items), batch_size))
    with torch.inference_mode():
        loss = mean_loss(model, batches, device)  # 与训练时的验证 loss 同一个函数
    model.train(was_training)
    return math.exp(loss)


def text_width(s):
    """终端里的显示宽度: 汉字占两格, 用 len() 对齐中文表格会歪。"""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def format_table(summaries):
    """{checkpoint 名: evaluate_model 的结果 (+ pretrain_ppl)} -> 并排的一张表: 行是指标, 列是 checkpoint。"""
    cols = list(summaries.values())
    counts = Counter(r["category"] for r in cols[0]["results"])  # 所有模型答的是同一批题
    rows = [("", list(summaries))]
    rows += [(f"{c} (n={k})", [f"{s['categories'][c]:.1%}" for s in cols]) for c, k in counts.items()]
    rows.append((f"总体 (n={cols[0]['n']})", [f"{s['overall']:.1%}" for s in cols]))
    rows.append(("停止率", [f"{s['stop_rate']:.1%}" for s in cols]))
    rows.append(("预训练困惑度", ["-" if s.get("pretrain_ppl") is None else f"{s['pretrain_ppl']:.2f}" for s in cols]))
    w0 = max(text_width(label) for label, _ in rows)
    widths = [max(text_width(cells[j]) for _, cells in rows) for j in range(len(cols))]
    lines = []
    for label, cells in rows:  # 第一列左对齐, 数字列右对齐
        line = label + " " * (w0 - text_width(label))
        line += "".join("  " + " " * (w - text_width(c)) + c for c, w in zip(cells, widths))
        lines.append(line)
    return "\n".join(lines)


def print_samples(results, n, max_new_tokens):
    """打印 n 条样例; 各类别轮流取, 让几条样例覆盖不同的类别。"""
    by_cat = {}
    for r in results:
        by_cat.setdefault(r["category"], []).append(r)
    picked = [r for group in zip_longest(*by_cat.values()) for r in group if r is not None][:n]
    for r in picked:
        mark = "对" if r["correct"] else "错"
        cut = ("" if r["stopped"] else f" (没有停下, 在 {max_new_tokens} token 处截断)" if r["stop"] is None
               else f" (没有说 <|endoftext|>, 而是说了特殊 token {r['stop']}, 回答到这里就结束了)")
        print(f"  [{r['category']}] 问: {r['question']}")
        want = " + ".join(r["answer"]) if isinstance(r["answer"], list) else r["answer"]
        print(f"      期望包含: {want}  回答({mark}): {r['reply']!r}{cut}")


def _init_worker():
    """并行评估的子进程: 忽略 Ctrl-C (由父进程收到后立即终止子进程); tqdm 换成线程锁, 被终止时不会留下进程间信号量。"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def evaluate_checkpoint(name, path, lora, records, args, device, position=None):
    """评估一个 checkpoint: 加载、答完评估集、算困惑度。返回 evaluate_model 的结果加上 pretrain_ppl 和用时 (秒)。

    position 不是 None 时, 这是并行评估的一个子进程: 只用一个线程 (一个进程一个核), 进度条画在第 position 行;
    出错时返回那一行错误信息而不是抛出 SystemExit (进程池里的 SystemExit 会让父进程一直等下去)。
    """
    if position is not None:
        torch.set_num_threads(1)
    t0 = time.time()
    try:
        model, tokenizer = load_model(path, torch.device(device), lora=lora)[:2]
        s = evaluate_model(model, tokenizer, records, args.max_new_tokens, desc=name, position=position,
                           batch_size=args.batch_size)
        s["pretrain_ppl"] = perplexity(model, tokenizer, args.ppl_path, args.ppl_blocks) if args.ppl_blocks else None
    except SystemExit as e:
        if position is None:
            raise
        return str(e)
    s["seconds"] = time.time() - t0
    return s


def is_results_json(obj):
    """--json 指向已有的文件时, 它必须是 evaluate.py 写过的结果 ({checkpoint: {"overall": ...}}), 才可以覆盖。"""
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, dict) and {"overall", "categories", "stop_rate", "n"} <= v.keys() for v in obj.values())


def main():
    p = make_parser("评估模型: 评估集准确率 (分类别)、停止率、预训练文本困惑度, 多个 checkpoint 并排比较")
    p.add_argument("checkpoints", nargs="*", help="完整模型或 LoRA 适配器的路径, 可以给多个 (默认: checkpoints/ 下已有的 base_model.pt、sft_model.pt、lora_adapter.pt)")
    p.add_argument("--lora", help="把这个 LoRA 适配器套在 (唯一的) checkpoint 上再评估; 结果里的名字是 \"底座+适配器\"")
    # 数据
    p.add_argument("--data_path", default=data.EVAL_PATH, help="评估集 .jsonl: 每条含 conversations (最后一条 assistant 是参考回复)、category、answer (回复必须包含的字符串, 或几个字符串的列表)")
    p.add_argument("--limit", type=int, help="只评估 N 条 (快速试跑, 再加 --ppl_blocks 0 连困惑度也不算; "
                   "从整个评估集里均匀地隔几条取一条, 各类按比例都取到一些, N 太小时小的类可能一条也没有)")
    p.add_argument("--ppl_path", default=PPL_PATH, help="算困惑度用的留出预训练文本, 一行一段")
    p.add_argument("--ppl_blocks", type=int, default=300, help="困惑度最多用多少个样本 (一段文字一个, 比窗口长的段切成几个; 0 表示不算)")
    # 生成与输出
    p.add_argument("--max_new_tokens", type=int, default=64, help="每个回答最多生成多少 token; 到了还没说完就算 \"没有停下\"")
    p.add_argument("--batch_size", type=int, default=64, help="提示一样长的题最多几条凑一批一起解码 (1 就是一题一题答; 课程的模型上回答逐字相同, 只差速度)")
    p.add_argument("--device", default="auto", help="auto (依次尝试 cuda、mps、cpu) / cuda / mps / cpu")
    p.add_argument("--samples", type=int, default=3, help="每个模型打印几条回答样例")
    p.add_argument("--json", help="把结果写成 JSON 文件 (准确率是 0~1 的小数)")
    args = p.parse_args()

    for flag in ("limit", "max_new_tokens", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"错误: --{flag} 必须是正整数, 收到 {getattr(args, flag)}")
    if args.samples < 0 or args.ppl_blocks < 0:
        raise SystemExit("错误: --samples 和 --ppl_blocks 不能是负数")
    if args.lora and not args.checkpoints:  # 不然就会拿 checkpoints/ 里默认的那几个来配, 说 "收到 3 个"
        raise SystemExit(f"错误: --lora 要配一个底座, 写在它前面: python evaluate.py {DEFAULT_CHECKPOINTS[0]} --lora {args.lora}")
    paths = args.checkpoints or [c for c in DEFAULT_CHECKPOINTS if os.path.exists(c)]
    if args.json is not None:  # 评估要几分钟 (--json "" 也要报错, 不能悄悄不写); 先确认结果写得出去, 而且不会盖掉要读的文件
        inputs = [("--data_path", args.data_path), ("--ppl_path", args.ppl_path), *(("checkpoint", c) for c in paths),
                  *([("--lora", args.lora)] if args.lora else [])]
        check_output_path(args.json, "--json", inputs, ours=is_results_json)
    if not paths:
        raise SystemExit("错误: 没有给出 checkpoint, checkpoints/ 下也没有。"
                         + (elsewhere(DEFAULT_CHECKPOINTS[0]) or "先运行 python pretrain.py 和 python train_sft.py"))
    twice = sorted({c for c in paths if paths.count(c) > 1})
    if twice:  # 结果按路径存: 同一个路径给两次, 表里只剩一列
        raise SystemExit(f"错误: checkpoint {twice[0]} 给了两次。每个 checkpoint 写一次就够了")
    if args.lora and len(paths) != 1:
        raise SystemExit(f"错误: --lora 只能配一个底座 checkpoint, 收到 {len(paths)} 个。要比较多个适配器, 直接把适配器路径列出来")

    # 先检查数据、加载全部模型: 任何一个出错立刻报告, 而不是评估了十分钟后才发现第三个文件是坏的
    records = load_eval_records(args.data_path, args.limit)
    if args.ppl_blocks:
        if not os.path.exists(args.ppl_path):
            raise SystemExit(f"错误: 找不到 {args.ppl_path}。先运行 python data.py --create_sample, 或用 --ppl_blocks 0 跳过困惑度")
        if stat.S_ISFIFO(os.stat(args.ppl_path).st_mode):  # 如 <(cat f): 这里查一遍、每个评估进程再各读一遍, 管道只读得出一次
            raise SystemExit(f"错误: --ppl_path {args.ppl_path} 是管道, 只能读一次, 而每个 checkpoint 都要读它。先存成文件再用")
        if not data.read_text(args.ppl_path).strip():  # 目录、不是 UTF-8、空文件: 现在就说, 不等准确率评完
            raise SystemExit(f"错误: {args.ppl_path} 里没有文字, 算不了困惑度。换一个 --ppl_path, 或用 --ppl_blocks 0 跳过")
        data.note_if_json(args.ppl_path, "--ppl_path", "困惑度", "留出的预训练文本是 data/pretrain_eval.txt")
    device = pick_device(args.device)
    for path in paths:
        load_model(path, device, lora=args.lora)
    jobs = [(f"{path}+{args.lora}" if args.lora else path, path) for path in paths]
    # CPU 上逐 token 解码只用得上一个核 (见 evaluate_model), 所以几个 checkpoint 分到几个进程里同时评估 (最多每个核一个):
    # 2 核机器上, 整节课评估三个模型的时间差不多减半。GPU 上一个进程就能把卡用满, 照旧一个接一个。
    workers = min(len(jobs), os.cpu_count() or 1) if device.type == "cpu" else 1
    print(f"评估集 {args.data_path}: {len(records)} 条; 设备 {device}"
          + (f", {workers} 个进程并行" if workers > 1 else "") + f"; 贪心生成, 每条最多 {args.max_new_tokens} token")
    tasks = [(name, path, args.lora, records, args, str(device), i if workers > 1 else None)
             for i, (name, path) in enumerate(jobs)]
    if workers > 1:
        # spawn: 子进程从头导入 torch, 不继承父进程的线程池 (fork 一个已经开过 OpenMP 线程的进程可能卡死)。
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        try:
            outputs = pool.starmap(evaluate_checkpoint, tasks)
            pool.close()
        except KeyboardInterrupt:
            pool.terminate()
            print("\n已中断 (Ctrl-C), 没有写任何结果", file=sys.stderr)  # 先换行: 进度条还停在这一行上
            raise SystemExit(130) from None  # 和 cli.run_main 一样的退出码
        pool.join()
    else:
        outputs = [evaluate_checkpoint(*task) for task in tasks]
    summaries = {}
    for (name, _), s in zip(jobs, outputs):
        if isinstance(s, str):  # 子进程里的一行错误信息
            raise SystemExit(s)
        summaries[name] = s
        print(f"\n{name}: 准确率 {s['overall']:.1%}, 停止率 {s['stop_rate']:.1%} ({s['seconds']:.1f}s)")
        if s["too_long"]:
            window = s["max_seq_len"]
            fix = (f"--max_new_tokens 本身就不小于窗口, 什么提示都放不下: 调小它 (默认 64)" if args.max_new_tokens >= window
                   else "调小 --max_new_tokens, 或换提示短一些的评估集")
            print(f"注意: {s['too_long']} 条的提示加上 --max_new_tokens {args.max_new_tokens} 超过了模型的窗口 "
                  f"(max_seq_len={window}): 回答写长了, 模型就看不到提示的开头, 这几条的分数会偏低。{fix}")
        print_samples(s["results"], args.samples, args.max_new_tokens)

    print("\n" + format_table(summaries))
    if args.json is not None:
        out = {name: {"overall": s["overall"], "categories": s["categories"], "stop_rate": s["stop_rate"],
                      "pretrain_ppl": s["pretrain_ppl"], "n": s["n"]} for name, s in summaries.items()}
        save_results_json(args.json, out)
        print(f"结果已写入 {args.json}")


if __name__ == "__main__":
    run_main(main)
