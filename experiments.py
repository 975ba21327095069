"""experiments.py — 重现 README 第 7 节和 EXPERIMENTS.md 里的对比实验, 每张表一条命令。

默认用同一份数据 (data/)、同一个底座 (checkpoints/base_model.pt); 例外是各实验要比的那一项:
unseen、drills、copy、words、tokenizer 改了预训练文本、重新训练底座, roles 改过底座, arithmetic、topic、adapters、facts
用自己的 SFT 数据。训练产物放在 runs/ 下, 不会碰 checkpoints/ 里课程主线的模型。每个训练都是调用课程自己的脚本 (子进程), 没有另写一套训练代码;
评估调用 evaluate.py。表格以 Markdown 打印, 同时写进 runs/<实验>.json。

    python experiments.py lora       # 全参数 SFT vs LoRA (q_proj,v_proj) vs LoRA (all-linear)
    python experiments.py rank       # LoRA 的秩 r ∈ {1, 2, 4, 8, 16, 64}: 准确率 vs 可训练参数
    python experiments.py lr         # 学习率与遗忘: 全参数 vs LoRA 在几个学习率下的 knowledge_unlock 与预训练困惑度
    python experiments.py ablation   # SFT 从零开始 (--init scratch) 与不做掩码 (--no_mask)
    python experiments.py adapters   # 同一个底座上的两个适配器 (普通 / 猫咪口吻), 在 chat.py 里切换
    python experiments.py probe      # knowledge_unlock 和算术失败在哪: 直接问 vs 强制给出答案开头; 错题里几成是算术
    python experiments.py arithmetic # 只练算术要多少训练才学得会 (200、1,000、3,000、6,000 步, 2 核 CPU 上约半小时)
    python experiments.py drills     # 在预训练文本里加几千道算式, 底座能学会算术吗
    python experiments.py topic      # 训练数据里没有 "先聊别的再问正事" 的对话时, 模型会怎样
    python experiments.py tokenizer  # 一个 token 最多几个汉字: 分词器怎样决定底座的知识能不能被问出来
    python experiments.py unseen     # SFT 用到、预训练没见过的 token: 为什么 LoRA 很难学会它们
    python experiments.py copy       # 预训练里加些 "抄写" 段落, SFT 之后抄名字、抄数是否更准
    python experiments.py words      # 翻译题: SFT 里的词多一些, 模型会不会从 "挑一个见过的词" 变成 "抄出问题里的词"
    python experiments.py phrasing   # knowledge 按问法分开数: 为什么这一类的分数随底座大起大落
    python experiments.py roles      # chat 模板的角色标签底座没见过: embedding 挤成一团吗, 分开它们有没有用
    python experiments.py strict     # evaluate.py 的打分有多宽: 同一批回答, 再查算式、人名、system prompt 的标记和内容
    python experiments.py facts      # 底座知道的常识 (首都、城市), SFT 没问过这类问题时问得出来吗; 教一半, 另一半呢
    python experiments.py all        # 以上全部

已经训练过的 runs/*.pt 在配方 (脚本、参数、读的文件的内容) 相同时会被复用 (加 --fresh 重新训练)。不包含: 多个随机种子的误差棒 (2 核 CPU 上太慢)。
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
from checkpoint import load_checkpoint
from sample_data import arith_pairs, equations, inverses

RUNS = "runs"
BASE = "checkpoints/base_model.pt"
PRETRAIN_TEXT = "data/pretrain.txt"


FRESHLY_TRAINED = set()  # 这次运行里已经重新训练过的模型: all --fresh 时几个实验共用的模型 (如 sft_full) 只重训一次


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def recipe(script, flags):
    """一个模型的 "配方": 训练脚本、参数, 以及它读的每个文件的内容指纹 (数据、分词器、--init 的底座)。
    runs/ 里已有的模型只在配方相同时复用: 重新生成过数据、重跑过课程 (底座变了) 或改了参数, 就重新训练,
    不会把旧数据、旧底座上训出来的模型和新的放进同一张表。"""
    sft = script != "pretrain.py"
    inputs = ["data/tokenizer.json"] + (["data/sft_train.jsonl", "data/sft_eval.jsonl"] if sft else
                                        ["data/pretrain.txt", "data/pretrain_eval.txt"])
    if sft and "--init" not in flags:
        inputs.append(BASE)
    inputs += [f for f in flags if os.path.isfile(f)]  # --init、--data_path 等指向的文件
    return {"script": script, "flags": list(flags), "inputs": {f: file_digest(f) for f in inputs if os.path.isfile(f)}}


def recorded(path):
    """做 path 时记下的配方 (mark 写的); 没有记下 (更早的版本做的) 或读不了时是 None。"""
    try:
        with open(path + ".recipe.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stale(path, key):
    """runs/ 里一个不是训练出来的产物 (分词器、改过的底座) 要不要重新做: 文件不在, 或记下的 key (做它时的输入指纹) 变了。"""
    return not os.path.exists(path) or recorded(path) != key


def mark(path, key):
    with open(path + ".recipe.json", "w", encoding="utf-8") as f:
        json.dump(key, f)


def train(name, script, *flags, fresh=False):
    """用课程脚本训练一个模型到 runs/<name>.pt, 返回它的指标 (trainer.train 记录在 checkpoint 里)。"""
    out, resume = os.path.join(RUNS, name + ".pt"), os.path.join(RUNS, name + ".resume.pt")
    fresh = fresh and name not in FRESHLY_TRAINED
    wanted = recipe(script, flags)
    if not fresh and os.path.exists(out):
        had = recorded(out)
        if had != wanted:
            if had is None:
                changed = "没有记下配方 (更早的版本训练的)"
            else:  # 变了的项: 脚本、参数, 或者内容变了的输入文件
                old_inputs = had.get("inputs", {})
                changed = ", ".join([k for k in ("script", "flags") if had.get(k) != wanted[k]]
                                    + [f for f in sorted(set(old_inputs) | set(wanted["inputs"]))
                                       if old_inputs.get(f) != wanted["inputs"].get(f)])
            print(f"== {out} 和这次要的不一样 ({changed}): 重新训练", flush=True)
            fresh = True
    if fresh and os.path.exists(resume):  # --fresh 或配方变了: 从头训练, 上次没训练完的那次也不要了
        os.remove(resume)
    if fresh or not os.path.exists(out):
        # 上次被中断 (Ctrl-C) 的训练留下了续训状态: 接着训 (训练脚本不许新运行盖掉它)
        flags = (*flags, "--resume") if os.path.exists(resume) else flags
        print(f"== 训练 {name}: python {script} {' '.join(flags)}", flush=True)
        log_path = os.path.join(RUNS, name + ".out")
        with open(log_path, "w") as log:
            r = subprocess.run([sys.executable, script, *flags, "--out", out], stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            with open(log_path, errors="replace") as log:  # 训练脚本的错误只有一行, 在日志的最后
                last = ([line.strip() for line in log.read().replace("\r", "\n").splitlines() if line.strip()] or [""])[-1]
            raise SystemExit(f"错误: {script} 训练 {name} 失败 (退出码 {r.returncode}): {last.removeprefix('错误: ')} "
                             f"(日志 {log_path})")
        FRESHLY_TRAINED.add(name)
        mark(out, wanted)
    try:
        ckpt = load_checkpoint(out)
    except SystemExit as e:  # 坏了的 runs/*.pt (如训练完写盘时断电): 配方没变, 不加 --fresh 重跑还会读到它
        if name in FRESHLY_TRAINED:  # 刚训练出来就读不了: --fresh 也帮不上, 原样报告
            raise
        raise SystemExit(f"{e} (它是 experiments.py 的产物: 加 --fresh 重新训练, 或删掉 {out})") from None
    return {**ckpt["metrics"], "path": out, "file_mb": os.path.getsize(out) / 2**20}


def read_pretrain_text():
    with open(PRETRAIN_TEXT, encoding="utf-8") as f:
        return f.read()


def pretrain_variant(name, text, fresh):
    """改过的预训练文本写到 runs/pretrain_<name>.txt, 用默认设置预训练出 runs/base_<name>.pt。返回 (文本路径, 底座的指标)。"""
    path = os.path.join(RUNS, f"pretrain_{name}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path, train(f"base_{name}", "pretrain.py", "--data_path", path, fresh=fresh)


def evaluate(paths, name, *flags):
    """evaluate.py 评估一组模型 (flags: 其他参数, 如 --data_path), 返回 {路径: 结果}。"""
    out = os.path.join(RUNS, f"eval_{name}.json")
    print(f"== 评估: python evaluate.py {' '.join([*paths, *flags])}", flush=True)
    with open(os.path.join(RUNS, f"eval_{name}.out"), "w") as log:  # 进度条和报告放进日志, 终端只留表格
        r = subprocess.run([sys.executable, "evaluate.py", *paths, *flags, "--samples", "0", "--json", out],
                           stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit(f"错误: evaluate.py 失败 (退出码 {r.returncode}), 详见 {RUNS}/eval_{name}.out")
    with open(out, encoding="utf-8") as f:  # evaluate.py 写的是 UTF-8 (save_results_json), 不随系统的默认编码
        return json.load(f)


def answers(path, records):
    """在这个进程里让 path 的模型贪心回答 records (load_eval_records 的输出), 返回每题的明细 (和 records 同序)。
    要看每道题的回答时用它; 只要分数时用上面的 evaluate (子进程, 和 README 里的命令一样)。打分是 evaluate.py 的同一个函数。"""
    from checkpoint import load_model
    from evaluate import evaluate_model
    model, tok, _ = load_model(path)
    return evaluate_model(model, tok, records, progress=False)["results"]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x):
    return f"{100 * x:.1f}%"


def exp_lora(fresh):
    runs = {
        "全参数 SFT": train("sft_full", "train_sft.py", fresh=fresh),
        "LoRA r=8 q_proj,v_proj": train("lora_qv_r8", "train_lora.py", "--lora_r", "8", fresh=fresh),
        "LoRA r=8 all-linear": train("lora_all_r8", "train_lora.py", "--lora_r", "8", "--target_modules", "all-linear", fresh=fresh),
        # 可训练参数是 q,v 的 4.8 倍, 默认学习率 1e-2 对它太大 (loss 在 1 到 2 之间来回跳); 同一行再用小一些的学习率跑一次
        "LoRA r=8 all-linear, --lr 3e-3": train("lora_all_r8_lr3e-3", "train_lora.py", "--lora_r", "8", "--target_modules",
                                                "all-linear", "--lr", "3e-3", fresh=fresh),
    }
    ev = evaluate([m["path"] for m in runs.values()], "lora")
    full = runs["全参数 SFT"]
    rows = []
    for name, m in runs.items():
        e = ev[m["path"]]
        rows.append([name, f"{m['trainable_params']:,}", f"{m['optimizer_state_bytes'] / 2**20:.2f} MB",
                     f"{m['peak_mem_mb']:.0f} MB ({m['peak_mem_mb'] / full['peak_mem_mb']:.2f}×)",
                     f"{1000 * m['step_s']:.0f} ms", f"{m['file_mb']:.3f} MB ({100 * m['file_mb'] / full['file_mb']:.1f}%)",
                     pct(e["overall"]), pct(e["categories"].get("knowledge_unlock", 0))])
    return table(["方法", "可训练参数", "优化器状态", "峰值内存 (相对全参数)", "每步时间", "checkpoint 大小", "评估准确率", "knowledge_unlock"], rows), {"runs": runs, "eval": ev}


def exp_rank(fresh):
    runs = {r: train(f"lora_qv_r{r}", "train_lora.py", "--lora_r", str(r), fresh=fresh) for r in (1, 2, 4, 8, 16, 64)}
    ev = evaluate([m["path"] for m in runs.values()], "rank")
    rows = [[r, f"{m['trainable_params']:,}", pct(ev[m["path"]]["overall"]),
             pct(ev[m["path"]]["categories"].get("arithmetic", 0)), pct(ev[m["path"]]["categories"].get("knowledge_unlock", 0))]
            for r, m in runs.items()]
    return table(["r", "可训练参数", "评估准确率", "arithmetic", "knowledge_unlock"], rows), {"runs": runs, "eval": ev}


def exp_lr(fresh):
    runs = {}
    for lr in ("1e-4", "2e-4", "3e-4", "1e-3"):
        runs[("全参数 SFT", lr)] = train(f"sft_full_lr{lr}" if lr != "1e-4" else "sft_full", "train_sft.py", "--lr", lr, fresh=fresh)
    for lr in ("1e-3", "3e-3", "1e-2", "3e-2"):
        runs[("LoRA r=8 q,v", lr)] = train(f"lora_qv_r8_lr{lr}" if lr != "1e-2" else "lora_qv_r8", "train_lora.py", "--lr", lr, fresh=fresh)
    ev = evaluate([BASE] + [m["path"] for m in runs.values()], "lr")
    rows = [["底座 (未微调)", "-", pct(ev[BASE]["overall"]), pct(ev[BASE]["categories"]["knowledge_unlock"]), f"{ev[BASE]['pretrain_ppl']:.2f}"]]
    rows += [[name, lr, pct(ev[m["path"]]["overall"]), pct(ev[m["path"]]["categories"]["knowledge_unlock"]),
              f"{ev[m['path']]['pretrain_ppl']:.2f}"] for (name, lr), m in runs.items()]
    return table(["方法", "学习率", "评估准确率", "knowledge_unlock", "预训练文本困惑度"], rows), {"eval": ev}


def exp_ablation(fresh):
    runs = {
        "SFT (从底座, 默认)": train("sft_full", "train_sft.py", fresh=fresh),
        "SFT 从零 (--init scratch)": train("sft_scratch", "train_sft.py", "--init", "scratch", fresh=fresh),
        "SFT 不做掩码 (--no_mask)": train("sft_no_mask", "train_sft.py", "--no_mask", fresh=fresh),
    }
    ev = evaluate([m["path"] for m in runs.values()], "ablation")
    speaks = {m["path"]: speaks_for_user(m["path"]) for m in runs.values()}  # {路径: (比例, 前几条例子)}
    cats = list(next(iter(ev.values()))["categories"])
    rows = [[name, pct(ev[m["path"]]["overall"])] + [pct(ev[m["path"]]["categories"][c]) for c in cats]
            + [pct(ev[m["path"]]["stop_rate"]), pct(speaks[m["path"]][0])] for name, m in runs.items()]
    return table(["模型", "总体"] + cats + ["停止率", "不停时自己写下一轮"], rows), {"runs": runs, "eval": ev, "speaks": speaks}


def speaks_for_user(path, n=100, max_new_tokens=48, n_examples=5):
    """不在 <|endoftext|> 处停下、让模型一直写下去时, 有多少回答在自己的结束符之后又写出一个角色标签, 开始下一轮对话。
    返回 (比例, 前 n_examples 条这样的输出全文): 例子存进 runs/ablation.json, README 引用的就是它们。

    不只数 <|user|>: 底座从没见过这几个角色标签, 它们的 embedding 几乎一样, 不做掩码的模型有时用 <|assistant|> 开头。
    做了掩码的模型在结束符之后只会像底座那样续写一段普通文字。"""
    import torch
    from checkpoint import load_model
    from data import load_conversations, render_chat
    model, tok, _ = load_model(path)
    roles = {tok.user_id, tok.assistant_id, tok.system_id}
    hits, examples = 0, []
    for messages in load_conversations("data/sft_eval.jsonl", quiet=True)[:n]:
        ids, _ = render_chat(messages[:-1], tok, add_generation_prompt=True)
        with torch.inference_mode():
            out = list(model.generate(ids, max_new_tokens=max_new_tokens, temperature=0, eos_id=None))
        after = out[out.index(tok.eot_id) + 1:] if tok.eot_id in out else []
        if roles & set(after):
            hits += 1
            if len(examples) < n_examples:
                examples.append(messages[-2]["content"] + " -> " + tok.decode(out))
    return hits / n, examples


def exp_adapters(fresh):
    """同一个底座上的两个适配器: 普通的小智, 和每句话都以 "喵～" 结尾的猫咪小智; chat.py 里用 /adapter 切换。"""
    cat_path = os.path.join(RUNS, "sft_train_cat.jsonl")
    with open("data/sft_train.jsonl", encoding="utf-8") as src, open(cat_path, "w", encoding="utf-8") as dst:
        for line in src:
            rec = json.loads(line)
            for m in rec["conversations"]:
                if m["role"] == "assistant":
                    m["content"] = m["content"].rstrip("。.!！") + "，喵～"
            dst.write(json.dumps(rec, ensure_ascii=False) + "\n")
    plain = train("lora_qv_r8", "train_lora.py", "--lora_r", "8", fresh=fresh)
    cat = train("lora_cat", "train_lora.py", "--lora_r", "8", "--data_path", cat_path, "--eval_path", "", fresh=fresh)
    # 换适配器不清空对话历史; 先 /clear, 每个适配器都从一段新对话开始 (否则它会接着上一个适配器的对话往下说)
    script = "你是谁？\n23加45等于多少？\n/clear\n/adapter lora_cat\n你是谁？\n23加45等于多少？\n/clear\n/adapter base\n你是谁？\n"
    cmd = [sys.executable, "chat.py", "--checkpoint", BASE, "--lora", plain["path"], cat["path"], "--temperature", "0",
           "--max_new_tokens", "40"]
    print(f"== printf '{script}' | python {' '.join(cmd[1:])}", flush=True)
    r = subprocess.run(cmd, input=script, capture_output=True, text=True)
    questions = [q for q in script.split("\n") if q and not q.startswith("/")]
    adapters = ["lora_qv_r8", "lora_qv_r8", "lora_cat", "lora_cat", "base (无适配器)"]
    rows = [[a, q, ans] for a, q, ans in zip(adapters, questions, r.stdout.splitlines())]
    return table(["当前适配器", "问题", "回答"], rows), {"stdout": r.stdout}


def continuations(path, probes):
    """底座接得出来吗: 把每个开头 (前面先放 <|endoftext|>, 像一段新文字的开头) 喂给底座, 贪心接几个 token,
    看接出的是不是以期望的值开头。probes: [(组, 开头, 值)]; 返回 {组: [对/错, ...]}。"""
    import torch
    from checkpoint import load_model
    base, tok, _ = load_model(path)
    recall = {}
    with torch.inference_mode():
        for group, prefix, value in probes:
            n = max(6, len(tok.encode(value)) + 2)  # 至少 6 个; 长的值 ("四季如春的天气") 也要接得完
            out = tok.decode(list(base.generate([tok.eot_id] + tok.encode(prefix), n, temperature=0, eos_id=tok.eot_id)))
            recall.setdefault(group, []).append(out.startswith(value))
    return recall


def base_recall(path):
    """底座记住了多少: 对 200 个人的每个属性, 把回答句式的开头 (如 "姚伟芳最喜欢的颜色是") 喂给底座, 贪心接出的
    是不是正确的属性值。返回 {(组, 属性): [对/错, ...]}, 组分 SFT 见过的人和只在预训练里的人 (knowledge_unlock)。"""
    from sample_data import ATTRS, make_people
    return continuations(path, [(("SFT 见过的人" if p["seen"] else "只在预训练里的人", attr),
                                 spec["answer"].split("{v}")[0].format(n=p["name"]), p[attr])
                                for p in make_people() for attr, spec in ATTRS.items()])


def exp_probe(fresh):
    """知识在哪里、卡在哪一步。

    1. 底座记住了多少: 对每个人、每个属性, 把回答句式的开头 (如 "姚伟芳最喜欢的颜色是") 喂给底座, 看它接出的是不是
       正确的属性值。SFT 见过的人和只在预训练里出现的人 (knowledge_unlock) 分开统计。
    2. SFT 模型的 knowledge_unlock 和 arithmetic: 直接问 vs 强制给出参考答案的开头 (人名 / 算式, 如 "73减32")。
       两者相差越多, 失败越是在 "读懂问题、把名字或数抄对", 而不在记忆或计算; 再数一数直接问答错的题里有几题
       连问题里的人名或两个数都抄错了 (回答总以人名或题目里的算式开头)。
    3. 整个评估集的错题里, 有多少是要说出算式结论的题 (见 error_sources)。
    """
    import torch
    from checkpoint import load_model
    from data import render_chat
    from evaluate import evaluate_model, load_eval_records, score
    from sample_data import ARITH_RE, ATTRS, make_people
    recall = base_recall(BASE)
    groups = list(dict.fromkeys(g for g, _ in recall))
    rows = [[g] + [pct(sum(recall[g, a]) / len(recall[g, a])) for a in ATTRS] for g in groups]
    md = table(["底座接对属性值 (每组 100 人)"] + list(ATTRS), rows)

    sft = train("sft_full", "train_sft.py", fresh=fresh)
    model, tok, _ = load_model(sft["path"])
    names = [p["name"] for p in make_people()]
    copied = {  # 回答有没有把问题里的人名 / 两个数原样抄出来 (回答总以它们开头)
        "knowledge_unlock": ("人名", lambda question, reply: reply.startswith(next(n for n in names if n in question))),
        "arithmetic": ("算式", lambda question, reply: ARITH_RE.findall(reply)[:1] == ARITH_RE.findall(question)[:1])}
    records = load_eval_records("data/sft_eval.jsonl")
    raw = {"base_recall": {f"{g}/{a}": sum(v) / len(v) for (g, a), v in recall.items()}}
    for cat, (what, copied_right) in copied.items():
        recs = [r for r in records if r["category"] == cat]
        direct = forced = miscopied = 0
        for r in recs:
            history, ref = r["conversations"][:-1], r["conversations"][-1]["content"]
            ids, _ = render_chat(history, tok, add_generation_prompt=True)
            # 参考答案里答案之前的部分; 去掉末尾的空格: 英文的 " equals" 是一个带前导空格的 token
            prefix = ref[:ref.index(r["answer"])].rstrip()
            with torch.inference_mode():
                a = tok.decode([t for t in model.generate(ids, 32, temperature=0, eos_id=tok.eot_id) if t != tok.eot_id])
                b = tok.decode([t for t in model.generate(ids + tok.encode(prefix), 16, temperature=0, eos_id=tok.eot_id)
                                if t != tok.eot_id])
            direct += score(a, r["answer"])
            forced += score(prefix + b, r["answer"])
            miscopied += not score(a, r["answer"]) and not copied_right(history[-1]["content"], a)
        rows = [["直接提问", pct(direct / len(recs))], ["强制给出参考答案的开头", pct(forced / len(recs))],
                [f"直接提问答错, 而且{what}就抄错了", pct(miscopied / len(recs))]]
        md += "\n\n" + table([f"全参数 SFT, {cat} ({len(recs)} 题)", "答对"], rows)
        raw[cat] = {"direct": direct, "forced": forced, "miscopied": miscopied, "n": len(recs)}
    md += "\n\n" + error_sources(evaluate_model(model, tok, records, progress=False)["results"], raw)
    return md, raw


def error_sources(results, raw):
    """3. 错题从哪来: 要说出算式结论 ("等于…"/"equals …") 的题不只在 arithmetic 类里 ——
    multi_turn 的 "结果再加上4是多少？"、system_prompt 的 "请用英文回答" 加一道算术题也是。分开数, 就知道
    算术之外还差多少: 就算这些题全对, 总体最多能到多少。"""
    def is_arith(r):
        return r["answer"].startswith(("等于", "equals "))
    rows, tot = [], {"n": 0, "arith": 0, "arith_ok": 0, "rest_ok": 0}
    for cat in dict.fromkeys(r["category"] for r in results):
        rs = [r for r in results if r["category"] == cat]
        a = [r for r in rs if is_arith(r)]
        c = {"n": len(rs), "arith": len(a), "arith_ok": sum(r["correct"] for r in a),
             "rest_ok": sum(r["correct"] for r in rs if not is_arith(r))}
        tot = {k: tot[k] + c[k] for k in tot}
        rest = c["n"] - c["arith"]
        rows.append([cat, c["n"], c["arith"], f"{c['arith_ok']} / {c['arith']}" if c["arith"] else "-",
                     f"{c['rest_ok']} / {rest} ({pct(c['rest_ok'] / rest)})" if rest else "-"])
    rest = tot["n"] - tot["arith"]
    rows.append(["**总体**", tot["n"], tot["arith"], f"{tot['arith_ok']} / {tot['arith']}",
                 f"{tot['rest_ok']} / {rest} ({pct(tot['rest_ok'] / rest)})"])
    ceiling = (tot["rest_ok"] + tot["arith"]) / tot["n"]
    raw["error_sources"] = dict(tot, ceiling_if_arith_right=ceiling)
    return (table(["全参数 SFT 的评估集", "题数", "要说出算式结论的", "其中答对", "其余答对"], rows)
            + f"\n\n要算术的题全对、其余不变时, 总体是 {pct(ceiling)}。")


def arithmetic_only_records(evals, n):
    """只练算术的 n 道训练题 (样例世界 seed 0 的训练那一半, 已避开评估的算式对), 再避开评估算式 (evals: 评估记录) 的逆运算。"""
    import random
    from sample_data import World
    banned = set().union(*(inverses(eq) for r in evals for eq in equations(r["conversations"][-1]["content"])))
    world, rng, records = World(0), random.Random("arithmetic-only"), []
    while len(records) < n:
        conversation = world.make_arithmetic(rng, "train")[0]
        if not banned & set(equations(conversation[-1]["content"])):
            records.append({"conversations": conversation, "category": "arithmetic"})
    return records


def exp_arithmetic(fresh, n_train=20000, steps=(200, 1000, 3000, 6000)):
    """算术学得会吗, 要练多少? 只练两位数加减法: 20,000 道训练题 (同一个样例世界), 每步 32 条, 学习率 1e-3,
    分别练 steps 里的步数 (各自独立训练)。200 步 (6,400 道题次) 约等于课程 SFT 里的算术题次 (含算式的回答约 2,300 条 × 3 个 epoch);
    3,000 步约是它的 14 倍。只在 arithmetic 这 120 道评估题上打分。
    训练题避开评估的算式对, 也避开它们的逆运算: 问 "45减37", 训练里有 "45减8等于37" 的话, 答案就等于练过了
    (和课程的 SFT 数据同一条规则, 见 sample_data.inverses)。"""
    train_path, eval_path = os.path.join(RUNS, "sft_train_arith.jsonl"), os.path.join(RUNS, "sft_eval_arith.jsonl")
    with open("data/sft_eval.jsonl", encoding="utf-8") as src:
        evals = [line for line in src if json.loads(line).get("category") == "arithmetic"]
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in arithmetic_only_records([json.loads(x) for x in evals], n_train)]
    with open(train_path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    with open(eval_path, "w", encoding="utf-8") as f:
        f.writelines(evals)
    if arith_pairs("".join(lines)) & arith_pairs("".join(evals)):  # data/ 不是 seed 0 生成的: 留出算式对不上
        raise SystemExit("错误: 算术训练题和 data/sft_eval.jsonl 的留出算式重叠。请用默认 seed 重新生成: python data.py --create_sample")
    sft = train("sft_full", "train_sft.py", fresh=fresh)
    # 同样的数据和设置, 练不同的步数 (几个独立的训练, 各自的余弦学习率都走完一整轮, 所以不是同一条曲线上的几个点)
    ariths = [train(f"arith_noinv_{n}", "train_sft.py", "--data_path", train_path, "--eval_path", eval_path,
                    "--max_steps", str(n), "--batch_size", "32", "--lr", "1e-3", fresh=fresh)
              # 名字带 "noinv": f5b858a 之前的 runs/sft_arith_*.pt 是在没避开逆运算的题上训练的, 不能被当成已训练过的拿来复用
              for n in steps]
    ev = evaluate([sft["path"]] + [a["path"] for a in ariths], "arithmetic", "--data_path", eval_path, "--ppl_blocks", "0")

    def minutes(m):  # 旧版本训练出的 runs/*.pt 没有记录用时
        return f"{m['train_s'] / 60:.1f} 分钟" if "train_s" in m else "-"
    rows = [["全参数 SFT (课程默认: 混合数据 3 个 epoch, lr 1e-4)", f"{sft['steps']:,}", "16", minutes(sft),
             pct(ev[sft["path"]]["overall"])],
            *[[f"只练算术 ({n_train:,} 道题, lr 1e-3)", f"{a['steps']:,}", "32", minutes(a), pct(ev[a["path"]]["overall"])]
              for a in ariths]]
    header = ["模型", "训练步数", "batch", "训练用时", f"arithmetic ({len(evals)} 道留出算式)"]
    return table(header, rows), {"runs": {"sft": sft, "arith": ariths}, "eval": ev}


def exp_topic(fresh):
    """先聊别的再问正事。课程的训练数据里约 1/5 的对话 (系统提示那一类和本身就是问候的身份问答除外) 先有一轮问候、约 15% 先有一道不相干的问答
    (sample_data 的开场轮); 对照组用同一份数据, 只是不加开场轮 (其余对话逐字节相同)。两个模型在三份评估集上各评一次:
    原评估集; 每道题前面先打个招呼; 每道题前面先有一道不相干的问答 (都是训练那一半里的问法, 回答是正确的)。
    后两份不含 system_prompt 类 (理由同 sample_data.World.opening), 各 540 题。"""
    import random
    from sample_data import GREETINGS, World, build_sft, prepend_turn
    world = World(0)
    with open("data/sft_train.jsonl", encoding="utf-8") as f:
        if [json.loads(line) for line in f] != build_sft(world):
            raise SystemExit("错误: data/sft_train.jsonl 不是默认 seed 生成的示例数据。请重新生成: python data.py --create_sample")
    plain_path = os.path.join(RUNS, "sft_train_no_openings.jsonl")
    with open(plain_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in build_sft(world, openings=False))

    def hello(rng, lang):
        words, punct, reply, _ = GREETINGS[1 if lang == "en" else 0]
        return [{"role": "user", "content": rng.choice(words) + rng.choice([""] + list(punct))},
                {"role": "assistant", "content": reply}]

    def other_question(rng, lang, key):
        while True:  # 开场那道题的问答里不能含本题的答案, 否则抄上一轮也能得分
            first = world.unrelated_qa(rng, lang)
            if key not in json.dumps(first, ensure_ascii=False):
                return first

    variants = {}
    for name, make_first in (("greeting", lambda rng, lang, key: hello(rng, lang)), ("topic", other_question)):
        rng, path = random.Random(f"{name}-first"), os.path.join(RUNS, f"sft_eval_{name}_first.jsonl")
        with open("data/sft_eval.jsonl", encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
            for line in src:  # 题目和答案不变, 只在最前面 (system 之后) 加一轮, 语言跟着题目
                rec = json.loads(line)
                if rec["category"] == "system_prompt":  # 开场那一轮的回答不遵守系统提示 (没说 "喵"), 题目就自相矛盾了
                    continue
                rec["conversations"] = prepend_turn(rec["conversations"], lambda lang: make_first(rng, lang, rec["answer"]))
                dst.write(json.dumps(rec, ensure_ascii=False) + "\n")
        variants[name] = path
    runs = {"SFT, 训练数据里没有开场轮 (对照)": train("sft_no_openings", "train_sft.py", "--data_path", plain_path, fresh=fresh),
            "SFT (课程默认: 有开场轮)": train("sft_full", "train_sft.py", fresh=fresh)}
    paths = [m["path"] for m in runs.values()]
    ev = {"plain": evaluate(paths, "topic_plain", "--ppl_blocks", "0")}
    for name, path in variants.items():
        ev[name] = evaluate(paths, f"topic_{name}_first", "--data_path", path, "--ppl_blocks", "0")
    cats = list(ev["topic"][paths[0]]["categories"])
    # 先打招呼之后的身份问答单列一栏: "你好" 之后问 "你叫什么名字？" 是聊天最常见的开头 (sample_data.World.opening)
    rows = [[name] + [pct(ev[v][m["path"]]["overall"]) for v in ("plain", "greeting")]
            + [pct(ev["greeting"][m["path"]]["categories"]["identity"]), pct(ev["topic"][m["path"]]["overall"])]
            + [pct(ev["topic"][m["path"]]["categories"][c]) for c in cats] for name, m in runs.items()]
    return (table(["模型", "原评估集 (600 题)", "每题先打招呼 (540 题)", "先打招呼: identity", "每题先问一道别的 (540 题)"]
                  + [f"先问别的: {c}" for c in cats], rows),
            {"runs": runs, "eval": ev})


# facts 实验: 预训练文本里有几句真实世界的常识 (sample_data 的 COUNTRIES、WORLD_CITIES), 课程的 SFT 数据一句也没问过。
# 每种事实: (表, 字段, 三种问法, 回答)。回答就是预训练里的一种句式 (和人物问答一样), 它在 "{字段}" 前面的部分是底座续写用的开头。
FACT_KINDS = {
    "首都": ("country", "capital", ("{country}的首都是哪里？", "{country}的首都是哪座城市？", "请问{country}的首都在哪儿？"),
             "{country}的首都是{capital}。"),
    "语言": ("country", "language", ("{country}的人们说什么语言？", "{country}的人们主要说哪种语言？", "请问{country}人说什么话？"),
             "{country}的人们主要说{language}。"),
    "国家的英文名": ("country", "en", ("{country}的英文名字是什么？", "{country}的英文名是什么？", "请问{country}的英文名字叫什么？"),
                   "{country}的英文名字是{en}。"),
    "城市以什么闻名": ("city", "famous", ("{city}以什么闻名？", "{city}有什么出名的？", "请问{city}以什么出名？"),
                      "{city}以{famous}闻名。"),
    "城市的英文名": ("city", "en", ("{city}的英文名字是什么？", "{city}的英文名是什么？", "请问{city}的英文名字叫什么？"),
                   "{city}的英文名字是{en}。"),
}
FACT_HALVES = ("练过", "留出")  # SFT 里问过的那一半事实, 和只在评估里问的那一半
# 留出的一半: 国家、城市各一半 (中国、北京都在这一半)。答案的值不跨两半: 英国和澳大利亚的语言都是 "英语", 所以都在练过的那一半,
# 否则问英国时照抄练过的值也算答对
FACTS_HELD_OUT = {"中国", "法国", "意大利", "韩国", "埃及", "加拿大", "北京", "杭州", "西安", "武汉", "青岛", "苏州", "哈尔滨", "拉萨"}


def world_facts():
    """[(一半, 种类, 这一行的字段)]: 12 个国家、16 座城市的每种事实, 一半练过、一半留出 (FACTS_HELD_OUT)。"""
    from sample_data import CITY_FIELDS, COUNTRIES, COUNTRY_FIELDS, WORLD_CITIES
    rows = {"country": [dict(zip(COUNTRY_FIELDS, c)) for c in COUNTRIES], "city": [dict(zip(CITY_FIELDS, c)) for c in WORLD_CITIES]}
    return [("留出" if row[where] in FACTS_HELD_OUT else "练过", kind, row)
            for kind, (where, *_) in FACT_KINDS.items() for row in rows[where]]


def facts_records():
    """facts 实验的数据: (训练题, 评估题, 底座续写的探针)。训练题只问 "练过" 那一半的事实, 每个事实问 KNOWLEDGE_REPEATS 次,
    每次随机一种问法 (和课程里人物问答的做法一样); 评估题两半的每个事实、每种问法各一道, 类别是 "一半/种类",
    答案关键串是字段的值; 探针是 (类别, 回答里值前面的部分, 值连同它后面的一个字), 给 continuations:
    只看值会把 "开罗马" 算成接对了 "开罗"。"""
    import random
    from sample_data import KNOWLEDGE_REPEATS, _qa
    rng, train_records, eval_records, probes = random.Random("facts"), [], [], []
    for half, kind, row in world_facts():
        _, field, asks, answer = FACT_KINDS[kind]
        reply = answer.format(**row)
        before, after = answer.split("{" + field + "}")
        probes.append((f"{half}/{kind}", before.format(**row), row[field] + after[:1]))  # "中国的首都是", "北京。"
        if half == "练过":
            train_records += [{"conversations": _qa(rng.choice(asks).format(**row), reply), "category": "facts"}
                              for _ in range(KNOWLEDGE_REPEATS)]
        eval_records += [{"conversations": _qa(q.format(**row), reply), "category": f"{half}/{kind}", "answer": row[field]}
                         for q in asks]
    return train_records, eval_records, probes


def exp_facts(fresh):
    """底座存着的常识, SFT 没问过这类问题时问得出来吗? 底座接 "北京是" 接得出 "中国的首都", 课程的 SFT 数据却一句也没问过
    国家和城市 (README 第 8 节: 问了也答不出)。对照: 课程的 SFT 数据再加上一半国家和城市的常识问答 (facts_records, 136 条),
    用默认设置训练; 两个模型都在两半事实上评估 (同样的三种问法)。留出的那一半要是也答得出, 就说明 SFT 教的是 "这类问题怎么答",
    答案还是底座自己存的 (和 knowledge_unlock 同一个道理)。打分和 evaluate.py 一样宽松 (回答里有答案就算对), 合计另给一行严格的:
    回答和参考回复一字不差 (回答的句式就是预训练里的句子, 所以这一条并不苛刻)。"""
    from evaluate import load_eval_records
    train_records, eval_records, probes = facts_records()
    train_path, eval_path = os.path.join(RUNS, "sft_train_facts.jsonl"), os.path.join(RUNS, "sft_eval_facts.jsonl")
    with open("data/sft_train.jsonl", encoding="utf-8") as src, open(train_path, "w", encoding="utf-8") as dst:
        dst.writelines(list(src) + [json.dumps(r, ensure_ascii=False) + "\n" for r in train_records])
    with open(eval_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in eval_records)
    # 每个事实底座接不接得出 (和 probes 同序); 评估题每个事实三道, 也按同样的顺序排, 第 i 题是第 i // 3 个事实
    recalled = continuations(BASE, [(j, prefix, value) for j, (_, prefix, value) in enumerate(probes)])
    base_ok = [recalled[j][0] for j in range(len(probes))]
    runs = {"课程的 SFT": train("sft_full", "train_sft.py", fresh=fresh),
            "SFT + 一半事实的问答": train("sft_facts", "train_sft.py", "--data_path", train_path, fresh=fresh)}
    records = load_eval_records(eval_path)
    # 模型 -> 每道题的明细; 要看回答, 所以在这个进程里评估
    results = {label: answers(path, records) for label, path in {"底座": BASE, **{name: m["path"] for name, m in runs.items()}}.items()}
    ev_main = evaluate([m["path"] for m in runs.values()], "facts_main", "--ppl_blocks", "0")  # 原评估集: 别的题变了没有

    question_cats, fact_cats = [r["category"] for r in records], [c for c, _, _ in probes]

    def rate(marks, cats, of=question_cats):  # of (每题或每个事实的类别) 里属于 cats 的那些, marks 里对了几成
        picked = [ok for ok, c in zip(marks, of) if c in cats]
        return pct(sum(picked) / len(picked))
    lenient = {label: [r["correct"] for r in res] for label, res in results.items()}
    exact = {label: [r["reply"].strip() == rec["conversations"][-1]["content"] for r, rec in zip(res, records)]
             for label, res in results.items()}
    rows = []
    for label, kinds in [*((k, [k]) for k in FACT_KINDS), ("**合计**", list(FACT_KINDS))]:
        halves = [[f"{h}/{k}" for k in kinds] for h in FACT_HALVES]
        rows.append([label, " / ".join(str(sum(c in cats for c in question_cats)) for cats in halves),
                     " / ".join(rate(base_ok, cats, fact_cats) for cats in halves)]
                    + [" / ".join(rate(marks, cats) for cats in halves) for marks in lenient.values()])
    every_kind = [[f"{h}/{k}" for k in FACT_KINDS] for h in FACT_HALVES]
    rows.append(["合计, 严格 (回答和参考回复一字不差)", "", "-"]
                + [" / ".join(rate(marks, cats) for cats in every_kind) for marks in exact.values()])
    md = table(["事实 (练过的一半 / 留出的一半)", "题数", "底座续写 (每个事实一次)", "底座问答", *runs], rows)

    # SFT + 一半事实的问答, 在留出的那一半上: 每个事实三种问法答对几种; 答错的回答里有没有练过那一半的同类的值;
    # 底座接得出的事实问出来多少
    got, replies = lenient["SFT + 一半事实的问答"], [r["reply"] for r in results["SFT + 一半事实的问答"]]
    held = [i for i, r in enumerate(records) if r["category"].startswith("留出/")]
    per_fact = Counter(sum(got[i] for i in held[j:j + 3]) for j in range(0, len(held), 3))
    taught = {kind: [row[FACT_KINDS[kind][1]] for half, k, row in world_facts() if half == "练过" and k == kind]
              for kind in FACT_KINDS}
    wrong = [i for i in held if not got[i]]
    says_taught = sum(any(v in replies[i] for v in taught[records[i]["category"].split("/")[1]]) for i in wrong)
    known = [i for i in held if base_ok[i // 3]]
    trained = {tuple(m["content"] for m in r["conversations"]) for r in train_records}
    verbatim = sum(tuple(m["content"] for m in r["conversations"]) in trained for r in records if r["category"].startswith("练过/"))
    md += (f"\n\nSFT + 一半事实的问答, 留出的 {len(held) // 3} 个事实: 三种问法都答对 {per_fact[3]} 个、两种 {per_fact[2]} 个、"
           f"一种 {per_fact[1]} 个、都不对 {per_fact[0]} 个。答错的 {len(wrong)} 题里, {says_taught} 题说出了练过那一半同一种事实的值, "
           f"{sum(not replies[i].strip() for i in wrong)} 题什么也没说。只数底座续写接得出的留出事实 ({len(known)} 题), "
           f"答对 {pct(sum(got[i] for i in known) / len(known))}。练过的那一半的 {len(records) - len(held)} 题里, "
           f"{verbatim} 题连问带答原样在训练数据里。")
    cats = list(next(iter(ev_main.values()))["categories"])
    md += "\n\n" + table(["原评估集 (600 题)", "总体", *cats],
                          [[name, pct(ev_main[m["path"]]["overall"]), *(pct(ev_main[m["path"]]["categories"][c]) for c in cats)]
                           for name, m in runs.items()])
    return md, {"runs": runs, "eval_main": ev_main, "base_continues": base_ok, "lenient": lenient, "exact": exact,
                "replies": {label: [r["reply"] for r in res] for label, res in results.items()}}


def heldout_probes(world):
    """drills 实验里底座要接的留出算式: 每个留出对一道加法、一道大减小, [(a, "+" 或 "-", b, c), ...]。"""
    return [eq for x, y in world.heldout for eq in ((x, "+", y, x + y), (max(x, y), "-", min(x, y), abs(x - y)))]


def drill_paragraphs(world, evals, n_paragraphs):
    """drills 实验加进预训练文本的 n_paragraphs 段纯算式 (每段 6–10 道, 如 "47+19=66，52减29等于23")。
    操作数只用训练那一半; 评估集 (evals: 评估记录) 里出现过的算式对一道也不加 (含多轮追问),
    底座要接的留出算式 (heldout_probes) 和评估集里的算式, 它们的逆运算也一道不加。"""
    import random
    rng = random.Random("drills")
    banned = arith_pairs(json.dumps(evals, ensure_ascii=False))
    asked = heldout_probes(world) + [eq for r in evals for m in r["conversations"] for eq in equations(m["content"])]
    banned_eqs = set().union(*(inverses(eq) for eq in asked))
    forms = {"+": ["{a}+{b}={c}", "{a}加{b}等于{c}"], "-": ["{a}-{b}={c}", "{a}减{b}等于{c}"]}
    drills = []
    for _ in range(n_paragraphs):
        eqs = []
        for _ in range(rng.randint(6, 10)):
            op = "+" if rng.random() < 0.6 else "-"
            a, b, c = world.operands(rng, "train", op)
            if tuple(sorted((a, b))) not in banned and (a, op, b, c) not in banned_eqs:
                eqs.append(rng.choice(forms[op]).format(a=a, b=b, c=c))
        drills.append("，".join(eqs) + "。")
    return "\n".join(drills)


def exp_drills(fresh, n_paragraphs=600):
    """算术能不能在预训练里学会? 在 data/pretrain.txt 后面加 600 段纯算式 (每段 6–10 道, 如 "47+19=66，52减29等于23",
    操作数只用训练那一半, 共约 4,500 道), 用默认设置重新预训练, 再做默认的 SFT。看两处: 底座能不能接出留出算式的结果
    ("47加19等于" -> "66"), 以及 SFT 之后的 arithmetic。要重新预训练, 是最慢的一个实验。
    加的算式也避开底座要接的 600 道留出算式和评估集里算式的逆运算: 文本里说过 "45减8等于37", 接 "45减37等于" 就等于见过答案
    (sample_data.inverses)。课程自己的预训练文本只为评估集避开了逆运算, 所以底座接留出算式只数两份文本里都没说过逆运算的那些。"""
    import torch
    from checkpoint import load_model
    from pretrain import PretrainDataset
    from data import load_tokenizer
    from sample_data import World
    world = World(0)
    with open("data/sft_eval.jsonl", encoding="utf-8") as f:
        evals = [json.loads(line) for line in f if line.strip()]
    asked = arith_pairs(json.dumps([r for r in evals if r.get("category") == "arithmetic"], ensure_ascii=False))
    if not asked <= world.heldout_set:
        raise SystemExit("错误: data/sft_eval.jsonl 的算术题不是默认 seed 的留出算式。请重新生成: python data.py --create_sample")
    probed = heldout_probes(world)
    drill_text = drill_paragraphs(world, evals, n_paragraphs)
    # 名字带 "noinv": 之前的 runs/*drills.pt 是在没避开逆运算的算式上训练的, 不能被当成已训练过的拿来复用
    lesson_text = read_pretrain_text()
    path, base_d = pretrain_variant("drills_noinv", lesson_text + drill_text + "\n", fresh)
    sft_d = train("sft_drills_noinv", "train_sft.py", "--init", base_d["path"], fresh=fresh)
    sft = train("sft_full", "train_sft.py", fresh=fresh)
    ev = evaluate([sft["path"], sft_d["path"]], "drills")

    said = set(equations(lesson_text + drill_text))
    clean = [eq for eq in probed if not inverses(eq) & said]  # 两份预训练文本里都没说过逆运算的

    def completes(ckpt):
        """底座接留出算式: 喂 "a加b等于" (减法 "a减b等于"), 贪心接出的开头是不是正确结果 (clean 里的加法、减法各算一个比例)。"""
        model, tok, _ = load_model(ckpt)
        hits = {}
        with torch.inference_mode():
            for a, op, b, c in clean:
                prompt = [tok.eot_id] + tok.encode(f"{a}{'加' if op == '+' else '减'}{b}等于")
                out = tok.decode(list(model.generate(prompt, 5, temperature=0, eos_id=tok.eot_id)))
                hits.setdefault(op, []).append(out.startswith(str(c)) and not out[len(str(c)):][:1].isdigit())
        return {op: sum(v) / len(v) for op, v in hits.items()}

    tok = load_tokenizer()
    rows, raw = [], {}
    for label, text, base, run in (("课程默认", PRETRAIN_TEXT, BASE, sft),
                                   (f"加 {n_paragraphs} 段算式", path, base_d["path"], sft_d)):
        c, e = completes(base), ev[run["path"]]
        n_tok = PretrainDataset(text, tok, 256).n_tokens
        rows.append([label, f"{n_tok:,}", f"{pct(c['+'])} / {pct(c['-'])}", pct(e["categories"]["arithmetic"]),
                     pct(e["overall"]), pct(e["categories"]["knowledge_unlock"])])
        raw[label] = {"pretrain_tokens": n_tok, "base_completes": c, "sft_eval": e}
    n_op = {op: sum(eq[1] == op for eq in clean) for op in "+-"}
    md = table(["预训练文本", "每个 epoch 的 token", f"底座接留出算式 (加 {n_op['+']} 道 / 减 {n_op['-']} 道)", "SFT 后 arithmetic",
                "SFT 后总体", "SFT 后 knowledge_unlock"], rows)
    md += (f"\n\n加的算式: {len(equations(drill_text)):,} 道 (避开了评估集的算式、底座要接的 600 道留出算式和它们的逆运算); "
           f"底座要接的 600 道里, 逆运算在课程的预训练文本里说过的 {len(probed) - len(clean)} 道不算")
    raw["drill_equations"], raw["probed_clean"] = len(equations(drill_text)), len(clean)
    return md, raw


def exp_tokenizer(fresh):
    """分词器决定预训练存下的知识能不能被 "问出来" (README 第 3 节)。同一份预训练文本、同样大小的词表,
    只改一个 token 最多含几个汉字: 不设上限 / 2 / 1 (课程默认)。前两种各训练一个分词器 (runs/tokenizer_cjk*.json)
    和一个底座 (默认设置), 看底座能不能接出四种属性 (同 probe 的第一张表)。要预训练两次, 2 核 CPU 上约 10 分钟。"""
    from data import TOKENIZER_PATH, load_tokenizer
    from pretrain import PretrainDataset
    from sample_data import ATTRS, make_people
    from tokenizer import Tokenizer
    text = read_pretrain_text()
    lesson = load_tokenizer()
    person = make_people()[0]
    sample = ATTRS["color"]["answer"].format(n=person["name"], v=person["color"])  # 一句回答, 看它被切成什么
    rows, raw = [], {}
    for cap in (None, 2, 1):
        if cap == 1:  # 课程默认: data/ 里的分词器和 checkpoints/ 里的底座
            tok_path, base = TOKENIZER_PATH, BASE
        else:
            tok_path = os.path.join(RUNS, f"tokenizer_cjk{cap or 'all'}.json")
            key = {"text": file_digest(PRETRAIN_TEXT), "vocab_size": lesson.vocab_size, "max_cjk": cap}
            if fresh or stale(tok_path, key):
                Tokenizer.train(text, lesson.vocab_size, max_cjk=cap).save(tok_path)
                mark(tok_path, key)
            base = train(f"base_cjk{cap or 'all'}", "pretrain.py", "--tokenizer", tok_path, fresh=fresh)["path"]
        tok = load_tokenizer(tok_path)
        recall = base_recall(base)
        hits = {a: [ok for (_, b), v in recall.items() if b == a for ok in v] for a in ATTRS}  # 两组人合起来, 每种属性 200 个
        per_attr = {a: sum(v) / len(v) for a, v in hits.items()}
        n_tok = PretrainDataset(PRETRAIN_TEXT, tok, 256).n_tokens
        pieces = " / ".join(tok.decode([i]) for i in tok.encode(sample))
        label = {None: "不设上限", 2: "2", 1: "1 (课程默认)"}[cap]
        rows.append([label, f"{n_tok:,}", pieces] + [pct(per_attr[a]) for a in ATTRS])
        raw[label] = {"tokenizer": tok_path, "base": base, "pretrain_tokens": n_tok, "pieces": pieces, "recall": per_attr}
    md = table(["一个 token 最多几个汉字", "预训练每个 epoch 的 token", "一句回答的切法"]
               + [f"底座接对 {a} (200 人)" for a in ATTRS], rows)
    return md, raw


def is_talk(line):
    """预训练里的 "日常用语" 段落 (sample_data.TALK / TALK_EN 的句子, 或 "我家的猫叫阿星" 这种宠物名字)。"""
    from sample_data import PERSONA_NAMES, TALK, TALK_EN
    return any(t in line for t in TALK + TALK_EN) or ("家的" in line and any(m in line for m in PERSONA_NAMES))


def exp_unseen(fresh):
    """SFT 用到、预训练却从没见过的 token 会怎样 (README 7.1, EXPERIMENTS.md 的 unseen)。把 data/pretrain.txt 里的 "日常用语" 段落删掉 (问句、
    "小智"、"星火实验室"、"喵" 这些字大多只在那里出现), 分词器不变, 用默认设置重新预训练, 再做默认的全参数 SFT 和
    LoRA。看三处: SFT 数据里有多少种 token 变成了没见过的; 新底座里这些 token 的 embedding 是不是挤成了一团
    (两两余弦相似度); SFT 之后各类别的准确率, 尤其是 LoRA (embedding 冻结, 没法现学)。"""
    from data import TRAIN_PATH, load_conversations, load_tokenizer
    tok = load_tokenizer()
    lines = read_pretrain_text().splitlines()
    kept = [line for line in lines if not is_talk(line)]
    seen = {i for line in kept for i in tok.encode(line)}
    sft_ids = [i for conv in load_conversations(TRAIN_PATH, quiet=True) for m in conv for i in tok.encode(m["content"])]
    unseen = sorted(set(sft_ids) - seen)  # SFT 里有、删减后的预训练文本里没有的 token
    _, base_nt = pretrain_variant("no_talk", "\n".join(kept) + "\n", fresh)
    runs = {"课程默认": (BASE, train("sft_full", "train_sft.py", fresh=fresh), train("lora_qv_r8", "train_lora.py", fresh=fresh)),
            "删掉日常用语": (base_nt["path"],
                        train("sft_no_talk", "train_sft.py", "--init", base_nt["path"], fresh=fresh),
                        train("lora_no_talk", "train_lora.py", "--init", base_nt["path"], fresh=fresh))}
    ev = evaluate([m["path"] for _, sft, lora in runs.values() for m in (sft, lora)], "unseen")
    cats = ["identity", "system_prompt", "text_task"]
    rows, raw = [], {"unseen_tokens": [tok.decode([i]) for i in unseen], "pretrain_lines": [len(lines), len(kept)]}
    for label, (base, sft, lora) in runs.items():
        cos = mean_cosine(embeddings(base), unseen)
        for method, m in (("全参数 SFT", sft), ("LoRA r=8 q,v", lora)):
            e = ev[m["path"]]
            rows.append([label, method, f"{cos:.2f}"] + [pct(e["categories"][c]) for c in cats] + [pct(e["overall"])])
        raw[label] = {"base": base, "embedding_cosine": cos, "eval": {m["path"]: ev[m["path"]] for m in (sft, lora)}}
    unseen_set = set(unseen)
    n_occ = sum(i in unseen_set for i in sft_ids)
    whole = [repr(t) for t in raw["unseen_tokens"] if "\ufffd" not in t]  # 不列半个汉字的字节 token
    md = (f"删掉 {len(lines) - len(kept)} / {len(lines)} 段日常用语后, SFT 数据里有 {len(unseen)} 种 token 预训练没见过 "
          f"(占 SFT 文字 token 的 {pct(n_occ / len(sft_ids))}), 例如 {' '.join(whole[:40])}\n\n")
    md += table(["预训练文本", "微调", "这些 token 的 embedding 两两余弦 (底座)"] + cats + ["总体"], rows)
    return md, raw


def copy_paragraphs(world, rng, n):
    """n 段 "抄写" 文字: 随机的数字串、随机拼出的新名字、随机挑的几个词, 每段里说两遍。内容是随机的, 背不下来,
    要接对第二遍只能回头去抄第一遍 —— 这正是 SFT 里抄名字、抄数、抄词要用的本事。只用预训练文本里已有的字。"""
    from sample_data import ANTONYMS, WORDS
    words = sorted({w for a, b in ANTONYMS for w in (a, b)} | {zh for zh, _ in WORDS})
    paragraphs = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.randrange(3)
            if kind == 0:
                d = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 5)))
                parts.append(rng.choice(["电话是{d}，重复一遍：{d}。", "他的电话是{d}。{d}很好记。"]).format(d=d))
            elif kind == 1:
                name = world.new_name(rng, given_chars=(1, 2))
                parts.append(rng.choice(["新同学叫{n}。大家好，我是{n}。", "我叫{n}。你好，{n}！"]).format(n=name))
            else:
                parts.append("老师说：“请重复{w}。”小明说：“{w}。”".format(w="、".join(rng.sample(words, rng.randint(2, 3)))))
        paragraphs.append("".join(parts))
    return paragraphs


def copy_models(fresh, n_paragraphs=300):
    """exp_copy 的模型: 加了 300 段抄写的预训练文本上重新预训练, 两种底座各用两个 --seed 做默认的 SFT。
    返回 (抄写段落, {(预训练文本, seed): 模型的指标})。"""
    import random
    from sample_data import World
    text = read_pretrain_text()
    extra = copy_paragraphs(World(0), random.Random("copy"), n_paragraphs)
    missing = set("".join(extra)) - set(text)
    if missing:
        raise SystemExit(f"错误: 抄写段落用到了预训练文本里没有的字 {''.join(sorted(missing))}。data/ 不是默认 seed 生成的?"
                         " 先运行 python data.py --create_sample")
    _, base_c = pretrain_variant("copy", text + "\n".join(extra) + "\n", fresh)
    # 每种底座做两次 SFT: 默认的 --seed 1337 和 --seed 1 (数据顺序不同), 看差别是不是大过种子带来的起伏
    runs = {("课程默认", 1337): train("sft_full", "train_sft.py", fresh=fresh),
            (f"加 {n_paragraphs} 段抄写", 1337): train("sft_copy", "train_sft.py", "--init", base_c["path"], fresh=fresh),
            ("课程默认", 1): train("sft_full_seed1", "train_sft.py", "--seed", "1", fresh=fresh),
            (f"加 {n_paragraphs} 段抄写", 1): train("sft_copy_seed1", "train_sft.py", "--init", base_c["path"], "--seed", "1",
                                                 fresh=fresh)}
    return extra, runs


def exp_copy(fresh, n_paragraphs=300):
    """预训练里多一些 "抄写" 段落 (copy_paragraphs), SFT 之后抄得更准吗? 在 data/pretrain.txt 后面加 300 段, 用默认设置
    重新预训练, 再做默认的 SFT, 与课程的 SFT 比各类别的准确率和预训练文本的困惑度。"""
    extra, runs = copy_models(fresh, n_paragraphs)
    ev = evaluate([m["path"] for m in runs.values()], "copy")
    cats = list(ev[runs["课程默认", 1337]["path"]]["categories"])
    rows = [[label, seed, pct(ev[m["path"]]["overall"])] + [pct(ev[m["path"]]["categories"][c]) for c in cats]
            + [f"{ev[m['path']]['pretrain_ppl']:.2f}"] for (label, seed), m in sorted(runs.items(), key=lambda kv: kv[0][0] != "课程默认")]
    md = f"例: {extra[0]}\n\n" + table(["预训练文本", "SFT 的 --seed", "SFT 后总体"] + cats + ["预训练文本困惑度"], rows)
    return md, {"example": extra[:5], "eval": ev}


# exp_words 的新词: 课程的 30 个中英词对 (sample_data.WORDS) 之外的 44 个, 每个汉字在课程的分词器里都是一个 token
NEW_WORDS = [tuple(p.split("/")) for p in (
    "天空/sky 雨/rain 雪/snow 风/wind 星星/star 树/tree 草/grass 石头/stone 海/sea 湖/lake 桥/bridge 城市/city 笔/pen "
    "衣服/clothes 糖/sugar 西瓜/watermelon 马/horse 鸡/chicken 熊/bear 兔子/rabbit 医生/doctor 警察/police 农民/farmer "
    "妈妈/mother 爸爸/father 孩子/child 头/head 春天/spring 夏天/summer 冬天/winter 早上/morning 明天/tomorrow 球/ball "
    "名字/name 问题/question 歌/song 画/picture 朋友们/friends 国家/country 城/town 家/home 火/fire 冰/ice 云/cloud").split()]


def words_models(fresh, n_paragraphs=90):
    """exp_words 的模型: 加了新词词典句的预训练文本上重新预训练, 再做课程的 SFT 和多了新词翻译题的 SFT。
    返回 (词典段落, 新词翻译题的条数, {说明: 模型的指标})。"""
    import random
    from data import load_tokenizer, TOKENIZER_PATH, TRAIN_PATH
    from sample_data import TEXT_TEMPLATES, WORD_SENTENCES, WORDS
    tok = load_tokenizer(TOKENIZER_PATH)
    odd = [zh for zh, _ in NEW_WORDS if any(len(tok.encode(c)) != 1 for c in zh)]
    if odd or {en for _, en in NEW_WORDS} & {en for _, en in WORDS}:
        raise SystemExit(f"错误: 新词 {odd} 的字不是分词器里的单个 token (data/ 不是默认 seed 生成的?)。先运行 python data.py --create_sample")
    rng = random.Random("words")
    extra = ["".join(rng.choice(WORD_SENTENCES["dict"]).format(zh=zh, en=en) for zh, en in rng.sample(NEW_WORDS, 3))
             for _ in range(n_paragraphs)]
    _, base_w = pretrain_variant("words", read_pretrain_text() + "\n".join(extra) + "\n", fresh)
    sft_path = os.path.join(RUNS, "sft_train_words.jsonl")
    convs = [{"conversations": [{"role": "user", "content": q.format(zh=zh, en=en)},
                                {"role": "assistant", "content": r.format(zh=zh, en=en)}], "category": "text_task"}
             for task, q, r in TEXT_TEMPLATES if task in ("to_en", "to_zh") for zh, en in NEW_WORDS]
    with open(TRAIN_PATH, encoding="utf-8") as src, open(sft_path, "w", encoding="utf-8") as dst:
        dst.write(src.read() + "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in convs))
    runs = {"课程默认的底座和 SFT 数据": train("sft_full", "train_sft.py", fresh=fresh),
            "加新词的底座, 课程的 SFT 数据": train("sft_words_base", "train_sft.py", "--init", base_w["path"], fresh=fresh),
            f"加新词的底座, SFT 多 {len(convs)} 条新词翻译题": train("sft_words", "train_sft.py", "--init", base_w["path"],
                                                                "--data_path", sft_path, fresh=fresh)}
    return extra, len(convs), runs


def exp_words(fresh, n_paragraphs=90):
    """翻译题答错, 是因为 SFT 里只有 30 个词? 课程的 SFT 模型在留出的翻译问法上常常换了一个词 (问 "apple", 答 "moon"):
    像 7.2 里 "抄名字" 那样, 它可能把 "抄出问题里的词再翻译" 学成了 "从见过的 30 个词里挑一个"。
    这里给预训练文本加 90 段新词的词典句 (44 个新词, 每个约 6 句, 和原来 30 个词差不多), 重新预训练; 在新底座上做两次 SFT:
    课程的 SFT 数据, 和多了这 44 个词的翻译题 (每个词 7 种问法, 共 308 条) 的 SFT 数据。评估集不变 (只考原来的 30 个词)。"""
    extra, n_convs, runs = words_models(fresh, n_paragraphs)
    ev = evaluate([m["path"] for m in runs.values()], "words")
    from data import EVAL_PATH
    from evaluate import load_eval_records
    records = load_eval_records(EVAL_PATH)

    def kind(q):  # text_task 的题型: 翻译题的答案是引号里的那个词, 问题里有 "英文"/"English" 的是中译英
        return "反义词" if "反义词" in q else "重复" if ("遍" in q or "次" in q) else "中译英" if "英文" in q else "英译中"
    cats = list(ev[runs["课程默认的底座和 SFT 数据"]["path"]]["categories"])
    rows = [[label, pct(ev[m["path"]]["overall"]), pct(ev[m["path"]]["categories"]["text_task"])]
            + [pct(ev[m["path"]]["categories"][c]) for c in cats if c != "text_task"] for label, m in runs.items()]
    md = (f"例: {extra[0]}\n\n" + table(["模型", "总体", "text_task"] + [c for c in cats if c != "text_task"], rows))
    by_kind = {path: {k: f"{right} / {n}" for k, (right, n) in groups.items()}
               for path, groups in correct_by_group([m["path"] for m in runs.values()], records, "text_task", kind).items()}
    md += "\n\n" + table(["模型"] + list(next(iter(by_kind.values()))),
                          [[label] + list(by_kind[m["path"]].values()) for label, m in runs.items()])
    return md, {"eval": ev, "by_kind": by_kind, "n_sft_extra": n_convs}


def correct_by_group(paths, records, category, group_of):
    """每个模型在 category 类的每一组题上答对几题 (贪心, 和 evaluate.py 同样的打分)。
    records: evaluate.load_eval_records 的输出; group_of: 问题 -> 组名。返回 {模型路径: {组名: (答对, 题数)}}, 组名按字典序。"""
    recs = [r for r in records if r["category"] == category]
    out = {}
    for path in paths:
        counts = {}
        for r in answers(path, recs):
            k = group_of(r["question"])
            right, n = counts.get(k, (0, 0))
            counts[k] = (right + r["correct"], n + 1)
        out[path] = dict(sorted(counts.items()))
    return out


def phrasing(question, names):
    """问题里的人名换成 X, 剩下的就是问法: "韦轩文的家乡在哪儿？" -> "X的家乡在哪儿？"。
    names 要长的在前: 否则一个名字恰好是另一个名字的开头时只换掉一半。"""
    name = next((n for n in names if n in question), None)
    return question if name is None else question.replace(name, "X")


def embeddings(path):
    """模型 (或适配器: 它自己找底座) 的输入 embedding 表, (V, C)。"""
    from checkpoint import load_model
    return load_model(path)[0].embed_tokens.weight.detach()


def mean_cosine(emb, ids):
    """embedding 表 emb 里这些 token 两两之间的平均余弦相似度 (对角线除外): 越接近 1, 模型越分不清它们。"""
    import torch
    e = torch.nn.functional.normalize(emb[ids], dim=-1)  # (U, C)
    sim = e @ e.T  # (U, U)
    return ((sim.sum() - sim.diagonal().sum()) / (len(ids) * (len(ids) - 1))).item()


def distinct_roles_base(roles, fresh):
    """底座的一份拷贝, 只把几个角色标签的 embedding 换成各不相同的随机方向 (长度取普通 token 的平均长度)。
    embedding 与 lm_head 共享, 所以这也改了 "输出这个标签" 的 logit; SFT 里它们不是目标, 训练会再把这些 logit 压下去。"""
    import torch
    from checkpoint import load_model, save_model
    path = os.path.join(RUNS, "base_distinct_roles.pt")
    key = {"base": file_digest(BASE), "roles": list(roles)}
    if fresh or stale(path, key):
        model, tok, ckpt = load_model(BASE)
        emb = model.embed_tokens.weight.data  # (V, C)
        norm = emb[:tok.eot_id].norm(dim=-1).mean()
        g = torch.Generator().manual_seed(0)
        for t in roles:
            v = torch.randn(emb.size(1), generator=g)  # (C,)
            emb[t] = v / v.norm() * norm
        save_model(path, model, tok, ckpt.get("args"), ckpt.get("metrics"))
        mark(path, key)
    return path


def exp_roles(fresh):
    """chat 模板的三个角色标签 <|system|> <|user|> <|assistant|> 在预训练里从没出现过 (预训练只用 <|endoftext|> 分段),
    SFT 里它们只做输入 (label 都是 -100), 从来不是要预测的目标。按 7.1 的道理, 它们的 embedding 在底座里应该挤成一团;
    SFT 之后分开了没有? 对照: 1,000 个随机的普通 token 两两之间的平均余弦相似度。LoRA 冻结 embedding, 那一行应该和底座相同。
    再看分开它们有没有用: 把底座里这三个标签换成各不相同的随机方向, 其余不动, 再做默认的全参数 SFT 和 LoRA。"""
    import random
    from data import load_tokenizer
    tok = load_tokenizer()
    roles = [tok.special_ids[t] for t in ("<|system|>", "<|user|>", "<|assistant|>")]
    system, user, assistant = roles
    ordinary = random.Random(0).sample(range(tok.eot_id), min(1000, tok.eot_id))  # eot_id 之前都是普通 token
    base_r = distinct_roles_base(roles, fresh)
    runs = {"课程默认": (BASE, train("sft_full", "train_sft.py", fresh=fresh), train("lora_qv_r8", "train_lora.py", fresh=fresh)),
            "角色标签各不相同": (base_r, train("sft_distinct_roles", "train_sft.py", "--init", base_r, fresh=fresh),
                         train("lora_distinct_roles", "train_lora.py", "--init", base_r, fresh=fresh))}
    pairs = {"system, user": [system, user], "system, assistant": [system, assistant], "user, assistant": [user, assistant],
             "普通 token (对照)": ordinary}
    models = {f"{label}: {kind}": path for label, (base, sft, lora) in runs.items()
              for kind, path in (("底座", base), ("全参数 SFT", sft["path"]), ("LoRA r=8 q,v", lora["path"]))}
    tables = {label: embeddings(path) for label, path in models.items()}  # 每个模型只加载一次
    sims = {label: {k: mean_cosine(emb, ids) for k, ids in pairs.items()} for label, emb in tables.items()}
    md = table(["模型 (embedding 的余弦相似度)", *pairs], [[label] + [f"{v:.2f}" for v in s.values()] for label, s in sims.items()])
    ev = evaluate([m["path"] for _, sft, lora in runs.values() for m in (sft, lora)], "roles")
    cats = ["identity", "multi_turn", "system_prompt"]
    rows = [[label, method, pct(ev[m["path"]]["overall"])] + [pct(ev[m["path"]]["categories"][c]) for c in cats]
            + [pct(ev[m["path"]]["stop_rate"])]
            for label, (_, sft, lora) in runs.items() for method, m in (("全参数 SFT", sft), ("LoRA r=8 q,v", lora))]
    md += "\n\n" + table(["底座里的角色标签", "微调", "总体", *cats, "停止率"], rows)
    return md, {"models": models, "cosine": sims, "eval": ev}


def exp_phrasing(fresh):
    """knowledge 的分数为什么随底座大起大落 (copy、words 两个实验里, 只多了 3%–16% 的预训练文本, 就从 93% 掉到 62%–76%)?
    这一类的 100 道题是 SFT 见过的人, 用训练里没有的问法来问 —— 但问法只有几种, 每种问十来个人。按问法分开数:
    一个模型对一种问法常常是这十来道题全对或全错, 所以这一类的分数主要取决于几种问法 "懂或不懂"。
    用课程、copy、words 三种底座上的 6 个 SFT 模型 (都已由那两个实验训练好; 没有就先训练)。"""
    from data import EVAL_PATH
    from evaluate import load_eval_records
    from sample_data import make_people
    _, copy_runs = copy_models(fresh)
    _, _, words_runs = words_models(fresh)
    runs = {"课程": copy_runs["课程默认", 1337], "课程, --seed 1": copy_runs["课程默认", 1],
            "抄写底座": copy_runs["加 300 段抄写", 1337], "抄写底座, --seed 1": copy_runs["加 300 段抄写", 1],
            "新词底座": words_runs["加新词的底座, 课程的 SFT 数据"],
            "新词底座, 多新词翻译题": next(m for label, m in words_runs.items() if label.startswith("加新词的底座, SFT 多"))}
    names = sorted((p["name"] for p in make_people()), key=len, reverse=True)
    groups = correct_by_group([m["path"] for m in runs.values()], load_eval_records(EVAL_PATH), "knowledge",
                              lambda q: phrasing(q, names))
    by_model = [groups[m["path"]] for m in runs.values()]  # 每个模型: {问法: (答对, 题数)}
    rows = [[f"{k} ({n} 题)"] + [g[k][0] for g in by_model] for k, (_, n) in by_model[0].items()]
    rows.append([f"**knowledge 答对 ({sum(n for _, n in by_model[0].values())} 题)**"]
                + [sum(right for right, _ in g.values()) for g in by_model])
    return table(["问法 (题数)"] + list(runs), rows), {"by_phrasing": groups, "models": {k: m["path"] for k, m in runs.items()}}


def first_equation(text):
    """回答里说出的第一个完整算式; 没有就是 None。"""
    return next(iter(equations(text)), None)


def strict_miss(record, reply, names, values):
    """evaluate.score 只查答案关键串在不在回答里 (宽松)。这里再查几样从参考回复推得出来的东西, 返回第一样没做到的;
    都做到了返回 None。不看模型的回答去定规则: 每一条都只读参考回复和题目。
      标记: system prompt 要求的 "好的，" 在开头、"喵～" 在结尾 (宽松的关键串只是 "好的，"/"喵", 在哪都算);
      算式: 参考回复说了算式, 回答说的第一个算式就得是它, 加法可以交换两个数 (宽松时 "44减44等于1" 也算答对了 "45减44");
      人名: 参考回复以人名开头 (问的是这个人), 回答开头的人名也得是它 (宽松时说成别人的也算), 名字后面的那个字也得和
            参考回复一样: 名字后面多写了一个字 ("蔡怡博文喜欢…") 也是把名字说错了;
      内容: 带标记的题, 标记之外的内容也要对 (身份、属性值、反义词; 宽松时只查标记)。
    names: 所有人名, 长的在前 (免得 "蔡怡博" 被当成 "蔡怡"); values: 所有属性值。"""
    ref, marker = record["conversations"][-1]["content"], record["answer"]
    if marker == "好的，":
        if not reply.startswith(marker):
            return "标记"
        ref, reply = ref.removeprefix(marker), reply.removeprefix(marker)
    elif marker == "喵":
        if not reply.rstrip().endswith("喵～"):
            return "标记"
        ref, reply = ref.removesuffix("喵～"), reply.rstrip().removesuffix("喵～")
    equation = first_equation(ref)
    if equation:
        a, op, b, c = equation
        if first_equation(reply) not in ({equation, (b, op, a, c)} if op == "+" else {equation}):  # 加法交换了两个数也对
            return "算式"
    name = next((n for n in names if ref.startswith(n)), None)
    if name and (next((n for n in names if reply.startswith(n)), None) != name  # "蔡怡博" 开头的回答不算答了 "蔡怡"
                 or reply[len(name):len(name) + 1] != ref[len(name):len(name) + 1]):  # "蔡怡博文…" 不算答了 "蔡怡博"
        return "人名"
    if marker in ("好的，", "喵") and not equation:
        from sample_data import ASSISTANT, TEAM
        identity = [k for k in (ASSISTANT, TEAM) if k in ref]  # 身份: 参考回复说了的名字和团队都要说
        antonym = re.findall(r"“[^”]+”", ref)  # 反义词
        value = [v for v in values if v in ref.removeprefix(name or "")][:1]  # 人物的属性值
        if any(k not in reply for k in identity or antonym or value):
            return "内容"
    return None


# 评估集里本该留出的几类; multi_turn 和 system_prompt 考的是接着上文、听 system prompt 的话, 内容本来就取自训练里的人和词
HELD_OUT = ("identity", "arithmetic", "knowledge", "knowledge_unlock", "text_task")


def leaked_items(records, conversations):
    """评估题里 (HELD_OUT 那几类) 连问带答出现在训练对话里的, 返回它们的下标。回答先去掉 system prompt 要求的标记:
    "好的，冷的反义词是“热”。" 和 "冷的反义词是“热”。" 是同一个答案。"""
    def pair(question, reply):
        return question, reply.removeprefix("好的，").removesuffix("喵～")
    trained = {pair(q["content"], a["content"]) for c in conversations for q, a in zip(c, c[1:])
               if q["role"] == "user" and a["role"] == "assistant"}
    return [i for i, r in enumerate(records)
            if r["category"] in HELD_OUT and pair(*(m["content"] for m in r["conversations"][-2:])) in trained]


def exp_strict(fresh):
    """evaluate.py 的打分有多宽? 课程的三个模型 (底座、全参数 SFT、LoRA r=8 q,v) 各答一遍评估集, 同一批回答用两种规则打分:
    evaluate.score (宽松: 答案关键串在回答里就算对) 和 "宽松 + strict_miss 的几样都做到"。
    再数一数评估集里有几道题连问带答原样出现在 SFT 训练数据里 (留出得不干净的题; 示例数据里应该是 0 道)。"""
    from data import EVAL_PATH, TRAIN_PATH, load_conversations, read_text
    from evaluate import load_eval_records
    from sample_data import ATTRS, make_people
    names = sorted((p["name"] for p in make_people()), key=len, reverse=True)
    values = sorted({v for a in ATTRS.values() for v in a["values"]}, key=len, reverse=True)
    records = load_eval_records(EVAL_PATH)
    conversations = load_conversations(TRAIN_PATH)
    leaked = leaked_items(records, conversations)
    models = {"底座": BASE, "全参数 SFT": train("sft_full", "train_sft.py", fresh=fresh)["path"],
              "LoRA r=8 q,v": train("lora_qv_r8", "train_lora.py", fresh=fresh)["path"]}
    cats = list(dict.fromkeys(r["category"] for r in records))
    rows, misses, raw = [], {}, {"leaked": [records[i]["conversations"][-2]["content"] for i in leaked]}
    for label, path in models.items():
        results = answers(path, records)
        # 宽松算对的才查严格的几样: why 是没做到的那一样 (都做到了是 None)
        whys = [strict_miss(rec, r["reply"], names, values) if r["correct"] else None for rec, r in zip(records, results)]
        strict = [r["correct"] and why is None for r, why in zip(results, whys)]
        misses[label] = dict(Counter(why for why in whys if why))
        for rule, marks in (("宽松 (evaluate.py)", [r["correct"] for r in results]), ("严格", strict)):
            by_cat = [pct(sum(m for m, rec in zip(marks, records) if rec["category"] == c)
                          / sum(rec["category"] == c for rec in records)) for c in cats]
            rows.append([label, rule, pct(sum(marks) / len(marks))] + by_cat)
        raw[label] = {"lenient": [r["correct"] for r in results], "strict": strict, "misses": misses[label]}
    md = table(["模型", "打分", "总体", *cats], rows)
    md += "\n\n" + table(["宽松算对、严格不算的原因", *models],
                          [[why] + [misses[m].get(why, 0) for m in models] for why in ("标记", "算式", "人名", "内容")])
    # 加减互逆: 评估问 "45减37", 训练里说过 "45减8等于37", 答案就等于说过了。示例数据的生成器避开了它 (sample_data.inverses), 自己的数据可能有
    said = {eq for text in [m["content"] for c in conversations for m in c] + read_text(PRETRAIN_TEXT).split("\n")
            for eq in equations(text)}
    inverse = sum(bool(inverses(eq) & said) for rec in records if rec["category"] == "arithmetic"
                  for eq in [first_equation(rec["conversations"][-1]["content"])] if eq)
    raw["arithmetic_inverse_seen"] = inverse
    md += f"\n\n`arithmetic` 的 {sum(r['category'] == 'arithmetic' for r in records)} 道里, 逆运算 (如问 45减37, 训练里有 45减8等于37) 出现在 SFT 数据或预训练文本里的: {inverse} 道"
    md += f"\n\n本该留出的几类 ({', '.join(HELD_OUT)}) 里, 连问带答原样出现在 SFT 训练数据里的评估题 (回答去掉 system prompt 要求的标记): {len(leaked)} 道"
    if leaked:  # 生成器保证没有 (tests/test_sample_data.py); 自己的数据可能有
        md += " (" + ", ".join(f"{c} {n}" for c, n in Counter(records[i]["category"] for i in leaked).items()) + ")"
    return md, raw


EXPERIMENTS = {"lora": exp_lora, "ablation": exp_ablation, "adapters": exp_adapters, "rank": exp_rank, "lr": exp_lr,
               "probe": exp_probe, "arithmetic": exp_arithmetic, "drills": exp_drills, "topic": exp_topic,
               "tokenizer": exp_tokenizer, "unseen": exp_unseen, "copy": exp_copy, "words": exp_words,
               "phrasing": exp_phrasing, "roles": exp_roles, "strict": exp_strict, "facts": exp_facts}


def main():
    p = make_parser("重现 README 里的对比实验 (训练产物在 runs/ 下)")
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="要跑的实验")
    p.add_argument("--fresh", action="store_true", help="忽略 runs/ 里已有的模型, 重新训练")
    args = p.parse_args()
    if not os.path.exists(BASE):
        raise SystemExit(f"错误: 找不到底座 {BASE}。先运行 python data.py --create_sample && python pretrain.py")
    from data import EVAL_PATH, TRAIN_PATH
    for path in (TRAIN_PATH, EVAL_PATH):  # 实验都要读它们: 缺了现在就说, 而不是训练到一半时的 FileNotFoundError
        if not os.path.exists(path):
            raise SystemExit(f"错误: 找不到 {path} (实验的训练和评估数据)。先运行 python data.py --create_sample")
    if os.path.exists(RUNS) and not os.path.isdir(RUNS):
        raise SystemExit(f"错误: {RUNS} 是一个文件, 而实验把训练出的模型放在 {RUNS}/ 目录里。把这个文件改名或移走")
    os.makedirs(RUNS, exist_ok=True)
    for name in (EXPERIMENTS if args.experiment == "all" else [args.experiment]):
        md, raw = EXPERIMENTS[name](args.fresh)
        with open(os.path.join(RUNS, f"{name}.json"), "w", encoding="utf-8") as f:  # 有中文: 默认编码是 cp1252 的 Windows 上会 UnicodeEncodeError
            json.dump(raw, f, ensure_ascii=False, indent=1, default=str)
        print(f"\n### {name}\n\n{md}\n", flush=True)


if __name__ == "__main__":
    run_main(main)
