"""data.py — SFT 的数据这一步: 对话格式、chat 模板、只在 assistant 回复上算 loss 的 -100 掩码。

本课最核心的一句话: "只训练 assistant 说的话"。落实在这里:
  1. render_chat()   把一段对话按 chat 模板拼成 token id, 同时给每个 token 标上 "是否训练";
  2. encode_chat()   把不训练的位置的 label 设成 IGNORE_INDEX (-100), 超长时整轮丢弃 (先丢最旧的);
  3. load_conversations()  读 .jsonl / .json, 把四种常见格式统一成 [{role, content}, ...];
  4. SFTDataset + collate + length_grouped_batches  组 batch: 动态 padding、按长度分组让 padding 少。

chat 模板 (课程里的样子; 图里的换行只是为了好看, 并不是 token):
    <|system|>你是一个助手<|endoftext|>
    <|user|>你好<|endoftext|>
    <|assistant|>你好！有什么可以帮你？<|endoftext|>
训练时只有 "你好！有什么可以帮你？<|endoftext|>" 这几个 token 有 label; 学会生成 <|endoftext|> 模型才知道何时停。
chat.py 和 evaluate.py 用同一个 render_chat(add_generation_prompt=True), 训练与推理的格式一字不差。

不在这里的: 分词器 (tokenizer.py)、示例数据的生成 (sample_data.py)、预训练文本的切块 (pretrain.py)。

用法:
    python data.py --create_sample              # 生成 data/ 下的示例数据并训练分词器
    python data.py --show --index 3             # 看模型眼中的一条对话, 被训练的 token 高亮
    python data.py --check data/sft_train.jsonl # 训练前体检一个数据文件
"""
import json
import os
import random
import stat
import sys

from cli import elsewhere, make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch

from model import IGNORE_INDEX  # -100: 不训练的位置的 label (loss 忽略它们; 定义在 model.py, 那里算 loss)

ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}

DATA_DIR = "data"
TOKENIZER_PATH = os.path.join(DATA_DIR, "tokenizer.json")
TRAIN_PATH = os.path.join(DATA_DIR, "sft_train.jsonl")
EVAL_PATH = os.path.join(DATA_DIR, "sft_eval.jsonl")


# ---------------------------------------------------------------- chat 模板与掩码

def render_chat(messages, tokenizer, add_generation_prompt=False):
    """对话 -> (ids, trained)。trained[i] 为 True 表示第 i 个 token 参与 loss。

    角色标签 <|assistant|> 本身不训练: 推理时它由程序放进去, 模型只需学它之后的内容。
    用户打出的 "<|user|>" 这类字符串经 tokenizer.encode 只会变成普通字节 token, 无法伪造角色切换;
    特殊 id 只在这个函数里插入。
    """
    role_ids = {"system": tokenizer.system_id, "user": tokenizer.user_id, "assistant": tokenizer.assistant_id}
    ids, trained = [], []
    for m in messages:
        content = tokenizer.encode(m["content"])
        is_answer = m["role"] == "assistant"
        ids += [role_ids[m["role"]]] + content + [tokenizer.eot_id]
        trained += [False] + [is_answer] * (len(content) + 1)  # 回复内容 + 它的 <|endoftext|>
    if add_generation_prompt:  # 推理: 以 <|assistant|> 结尾, 让模型接着写回复
        ids.append(tokenizer.assistant_id)
        trained.append(False)
    return ids, trained


def split_turns(messages):
    """拆成 (开头的 system 消息列表, 轮次列表)。一轮 = 一条 user 消息加上它后面的回复。
    对话中途换的 system 消息归到它后面的那一轮 (它管的是之后的对话): 截断时丢掉旧的轮次, 不会把它一起丢掉。"""
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = []
    for m in messages[len(system):]:
        only_system_so_far = turns and all(x["role"] == "system" for x in turns[-1])
        if not turns or m["role"] == "system" or (m["role"] == "user" and not only_system_so_far):
            turns.append([])
        turns[-1].append(m)
    return system, turns


def encode_chat(messages, tokenizer, max_length):
    """对话 -> (input_ids, labels), labels 在不训练的位置是 -100; 没有可训练 token 时返回 None。

    超长时整轮丢弃, 绝不截掉半个回答 (半个回答没有 <|endoftext|>, 会教模型 "说到一半不停"):
    先从最旧的一轮丢起 (保留 system prompt 和最近的上下文); 最后一轮自己都放不下时, 改成从最新的一轮往回丢,
    留下开头放得下的几轮 (真实的多轮数据里常见: 前几轮很短, 最后一个回答很长; 整条扔掉就白白浪费了前面的回答)。
    中间的几轮不单独试: 第一轮和最后一轮都各自放不下的对话, 整条丢弃。
    最后一个回答之后的消息 (例如 OpenAI 格式里还没有回答的最后一问) 先去掉: 它们不产生任何 loss (注意力是因果的,
    后面的 token 改变不了前面位置的预测), 留着只会占长度, 把有回答的轮次挤出窗口。
    """
    last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    system, turns = split_turns(messages[:last + 1])
    if not turns:
        return None
    last_fits = len(render_chat(system + turns[-1], tokenizer)[0]) <= max_length  # 放不下时, 含最后一轮的窗口都不用试
    windows = [turns[i:] for i in range(len(turns))] if last_fits else []
    # 往回丢时, 窗口的最后一轮要有回答: 结尾一条没人回答的用户消息 (比如连着问了两句) 不产生 loss, 只占长度
    windows += [turns[:j] for j in range(len(turns) - 1, 0, -1) if any(m["role"] == "assistant" for m in turns[j - 1])]
    for window in windows:  # 每个窗口都以一个回答结尾, 所以都有要训练的 token
        ids, trained = render_chat(system + [m for t in window for m in t], tokenizer)
        if len(ids) <= max_length:
            labels = [i if t else IGNORE_INDEX for i, t in zip(ids, trained)]
            return ids, labels
    return None


# ---------------------------------------------------------------- 读数据: 四种格式统一成 [{role, content}]

def normalize_record(rec):
    """把一条记录统一成 [{role, content}, ...]; 有问题时抛 ValueError(原因)。

    支持: 课程格式 {"conversations": [{role, content}]}; OpenAI {"messages": [...]};
    ShareGPT {"conversations": [{from, value}], "system"?}; Alpaca {instruction, input, output, system?, history?}。
    """
    if not isinstance(rec, dict):
        raise ValueError("记录不是 JSON 对象")
    if "instruction" in rec and "output" in rec:  # Alpaca: history 是之前的 [问, 答] 对
        user, extra, history = rec["instruction"], rec.get("input"), rec.get("history") or []
        if extra:
            if not isinstance(extra, str):
                raise ValueError("input 不是字符串")
            user = f"{user}\n\n{extra}" if isinstance(user, str) else user
        if not isinstance(history, list):
            raise ValueError("history 应是 [[问, 答], ...] 这样的列表")
        raw = [{"role": "system", "content": rec["system"]}] if rec.get("system") else []
        for pair in history:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError("history 的每一项应是 [问, 答]")
            raw += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        raw += [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"]}]
    elif isinstance(rec.get("conversations"), list) or isinstance(rec.get("messages"), list):
        raw = rec["conversations"] if isinstance(rec.get("conversations"), list) else rec["messages"]
        if rec.get("system"):  # ShareGPT 把 system 放在外面
            first = raw[0] if raw and isinstance(raw[0], dict) else {}
            if first.get("role", first.get("from")) == "system":  # 两处都写了: 哪一个算数说不清, 硬拼就成了两个 system 块
                raise ValueError("system 写了两处 (外面的 system 字段和对话开头的 system 消息); 只留一处")
            raw = [{"role": "system", "content": rec["system"]}] + raw
    else:
        raise ValueError("无法识别的格式 (需要 conversations / messages / instruction+output 之一)")

    messages = []
    for m in raw:
        if not isinstance(m, dict):
            raise ValueError("消息不是 JSON 对象")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if not isinstance(role, str):
            raise ValueError(f"角色 {role!r} 不是字符串")
        role = ROLE_ALIASES.get(role, role)
        if role not in ROLES:
            raise ValueError(f"未知角色 {role!r} (只支持 system/user/assistant, 以及 human/gpt)")
        if not isinstance(content, str):
            raise ValueError(f"{role} 的 content 不是字符串")
        require_utf8(content, f"{role} 的 content")
        if role == "assistant" and not content.strip():
            raise ValueError("assistant 的回复是空的 (训练它只会教模型一开口就结束); 补上回答, 或删掉这一轮")
        messages.append({"role": role, "content": content})
    if not messages:
        raise ValueError("空对话")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("没有 assistant 回复 (训练时没有要学的内容; 评估集里就是缺了参考回复)")
    return messages


def require_utf8(text, what):
    """JSON 里落单的代理项 (如 "\\ud83d", 半个 emoji) 能解析成 Python 字符串, 却编不成 UTF-8:
    分词、打印时才崩 (UnicodeEncodeError)。在读数据时就当作坏记录, 报出 file:line。"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} 里有编不成 UTF-8 的字符 {text[e.start]!r} (落单的代理项, 多半是被截断的 emoji)") from None


def read_text(path):
    """读一个 UTF-8 文本文件。读不了 (不是 UTF-8、是目录或设备、没有权限) 时一行说明, 不抛 traceback。"""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):  # /dev/zero 这种永远读不完
            raise SystemExit(f"错误: {path} 是设备文件, 不是文本文件。换一个数据文件")
        with open(path, "rb") as f:
            raw = f.read()
        # utf-8-sig: Windows 记事本存的 "UTF-8 (带 BOM)" 文件开头多一个 \ufeff, 读时去掉, 否则第一行的 JSON 解析不了
        return raw.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        if raw.startswith(b"PK\x03\x04"):  # torch.save 存的 .pt 是个 zip 包: 多半是把 checkpoint 当成了文本参数
            raise SystemExit(f"错误: {path} 是一个 zip 文件 (比如 checkpoint), 不是文本。这里要的是数据或文本文件") from None
        line = raw.count(b"\n", 0, e.start) + 1
        raise SystemExit(f"错误: {path}:{line}: 不是 UTF-8 文本。请先转成 UTF-8")
    except OSError as e:
        raise SystemExit(f"错误: 读不了 {path} ({e.strerror})。检查路径和权限")


def note_if_json(path, flag, use, hint):
    """要一行一段纯文字的参数 (预训练文本、困惑度文本) 给成了 .jsonl / .json: 不拦 (也许真是一行一段的文字),
    但多半是拿错了文件 (比如 SFT 的对话数据): stderr 提醒一句, 不然只会奇怪结果为什么满是引号和括号。"""
    if path and path.endswith((".jsonl", ".json")):
        print(f"注意: {flag} {path} 看起来是 JSON 数据。{use}把每一行当成一段普通文字 (连同引号和括号); {hint}", file=sys.stderr)


def _bad_json(e):
    """JSON 解析失败 (语法错误; 嵌套太深、数字太长之类) -> 这一行的坏记录说明。"""
    return ValueError(f"无效的 JSON: {getattr(e, 'msg', None) or f'{type(e).__name__}: {e}'[:160]}")


def read_records(path):
    """读 .jsonl (一行一条) 或 .json (一个数组), 返回 [(行号, 记录或 ValueError)]。

    .jsonl 的 JSON 解析错误不抛出, 而是作为该行的 ValueError 返回, 由调用者决定跳过还是中止;
    .json 数组里的语法错误则直接停下 (之后的记录读不出来); 数组的 ] 之后还有内容也停下 (那里的记录读不到)。
    """
    if not os.path.exists(path):
        sample = os.path.normpath(path) in {os.path.join(DATA_DIR, f) for f in ("sft_train.jsonl", "sft_eval.jsonl")}
        hint = "先运行 python data.py --create_sample 生成示例数据" if sample else "检查文件名和路径"
        raise SystemExit(f"错误: 找不到数据文件 {path}。{elsewhere(path) or hint}")
    text = read_text(path)
    out = []
    if path.endswith(".json"):
        dec = json.JSONDecoder()
        pos = len(text) - len(text.lstrip())
        if not text.startswith("[", pos):  # 一个对象 (哪怕里面有数组) 不是数据集: 不去猜它的哪一部分才是
            return [(text.count("\n", 0, pos) + 1, ValueError(".json 文件应是一个 JSON 数组 [...] (一行一条请用 .jsonl)"))]
        pos += 1
        line, counted = text.count("\n", 0, pos) + 1, pos  # pos 所在的行号: 往后只数新走过的一段, 不每条都从头数 (几万条时慢成几分钟)
        while True:  # 逐个元素解析, 这样坏记录也能报出它所在的行号
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            line, counted = line + text.count("\n", counted, pos), pos
            if pos >= len(text):
                break
            if text[pos] == "]":
                extra = len(text) - len(text[pos + 1:].lstrip(" \t\r\n"))  # ] 之后第一个不是空白的字符
                if extra < len(text):  # json.load 也不收: 多半是两个数组首尾相接, 或数组后又追加了记录, 不停下它们就被悄悄丢掉
                    raise SystemExit(f"错误: {path}:{line + text.count(chr(10), pos, extra)}: .json 数组的 ] 之后还有内容, "
                                     "那里的记录读不到。把它们移进数组里, 或改用一行一条的 .jsonl")
                break
            try:
                rec, pos = dec.raw_decode(text, pos)
            except (ValueError, RecursionError) as e:
                # 数组里一处语法错误之后, 找不到下一条记录从哪里开始: 跳过它就会悄悄丢掉后面所有的记录, 所以停下
                raise SystemExit(f"错误: {path}:{line}: {_bad_json(e)}。.json 数组里这一处之后的记录都读不出来: "
                                 "修好它, 或改用一行一条的 .jsonl (那样坏行可以跳过)") from None
            out.append((line, rec))
    else:
        # 按 "\n" 切, 不用 splitlines(): 后者还会在 \u2028、\x85 这些字符处断行, 而它们可以原样出现在 JSON 字符串里
        for line, s in enumerate(text.split("\n"), 1):
            if s.strip():
                try:
                    out.append((line, json.loads(s)))
                except (ValueError, RecursionError) as e:
                    out.append((line, _bad_json(e)))
    return out


MAX_REPORT = 20  # 坏记录最多逐条列出几条 (load_records)


def load_records(path, strict=False, quiet=False, check=None, max_report=MAX_REPORT):
    """读文件并规范化, 返回 ([(记录, messages)], 坏记录条数)。坏记录按 file:line: 原因 报告后跳过; strict=True 时第一条就中止。

    check(记录): 额外的检查 (例如评估集要求有 answer), 不通过时抛 ValueError(原因), 与格式错误同样报告。
    max_report: 最多逐条列出几条坏记录 (None 表示全部, 但一条好记录也没有时只列 MAX_REPORT 条): 拿错了文件 (比如把纯文本当成 .jsonl) 时不刷几千行屏。
    """
    good, bad, rejected = [], 0, None  # rejected: check 拒绝最后一条记录的原因
    reports = []  # 坏记录的说明, 先攒着: 一条好记录也没有时 (多半拿错了文件) 只说一行, 不刷满屏
    for line, rec in read_records(path):
        messages = None
        try:
            if isinstance(rec, ValueError):
                raise rec
            messages = normalize_record(rec)
            if check:
                check(rec)
            good.append((rec, messages))
        except ValueError as e:
            if messages is not None:  # 对话本身没问题, 是 check 的额外要求没满足
                rejected = e
            if strict:
                raise SystemExit(f"错误: {path}:{line}: {e} (--strict 模式下遇到坏记录即停止; 去掉 --strict 可跳过)")
            bad += 1
            if max_report is None or bad <= max_report:
                reports.append(f"{path}:{line}: {e}")
    if not good and not bad:
        raise SystemExit(f"错误: {path} 里一条记录也没有 (空文件?)。换一个数据文件")
    if not good and max_report is not None:  # 全是坏记录: 一行, 说出第一条的原因 (data.py --check 要列出原因, 不走这里)
        if rejected:  # data.py --check 不知道 check 的要求, 指过去只会说文件没问题: 直接说出原因
            raise SystemExit(f"错误: {path} 里没有一条可用的记录 (例如: {rejected}; {bad} 条全是坏记录)。换一个文件, 或按这个原因修改记录")
        raise SystemExit(f"错误: {path} 里没有一条可用的对话 ({bad} 条全是坏记录, 第一条: {reports[0]})。"
                         f"换一个文件, 或用 python data.py --check {path} 列出原因")
    if bad and not quiet:
        if not good:  # data.py --check 拿错了文件 (比如预训练的纯文本): 每一行都是坏记录, 列出几千行只是刷屏
            reports = reports[:MAX_REPORT]
        for r in reports:
            print(f"{r} (已跳过)", file=sys.stderr)
        more = ""
        if len(reports) < bad:  # check 的额外要求 data.py --check 不查, 那时就不指过去; 没有好记录时这就是 --check 自己
            more = f" (只列出了前 {len(reports)} 条" + ("" if rejected or not good else f"; python data.py --check {path} 列出全部") + ")"
        print(f"{path}: 跳过 {bad} 条坏记录, 保留 {len(good)} 条{more}", file=sys.stderr)
    if not good:  # data.py --check: 原因已列在上面
        raise SystemExit(f"错误: {path} 里没有一条可用的对话 (要的是一行一条 JSON 的对话数据)。按上面列出的原因修改记录, 或换一个文件")
    return good, bad


def eval_file(path, default):
    """训练脚本的验证数据: 返回要读的路径, 或 None (不做验证)。

    默认的文件不存在时安静地不做验证 (用自己的数据训练时常常没有验证集); 自己给的路径不存在则报错:
    多半是打错了, 不该悄悄地训练一整轮却没有验证 loss。--eval_path '' 表示不要验证。"""
    if not path or (path == default and not os.path.exists(path)):
        return None
    if not os.path.exists(path):
        raise SystemExit(f"错误: 找不到验证数据 {path}。检查 --eval_path (不要验证就写 --eval_path '')")
    return path


def load_conversations(path, strict=False, quiet=False):
    """读一个数据文件, 返回对话列表, 每个对话是 [{role, content}, ...]。"""
    return [messages for _, messages in load_records(path, strict, quiet)[0]]


# ---------------------------------------------------------------- Dataset 与组 batch

class SFTDataset(torch.utils.data.Dataset):
    """一次性把所有对话编码好 (小数据集, 省得每个 epoch 重复分词)。"""

    def __init__(self, conversations, tokenizer, max_length, no_mask=False):
        self.examples, self.dropped = [], 0
        for messages in conversations:
            enc = encode_chat(messages, tokenizer, max_length)
            if enc is None:  # 截断后没有可训练的 token: 喂给模型只会白算, 直接丢弃并计数
                self.dropped += 1
                continue
            if no_mask:  # 消融实验 (train_sft.py --no_mask): 所有 token 都算 loss, 包括 system 和 user 说的话
                enc = (enc[0], list(enc[0]))
            self.examples.append(enc)
        self.lengths = [len(ids) for ids, _ in self.examples]

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ids, labels = self.examples[i]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def collate(batch, pad_id):
    """动态 padding: 只补到这个 batch 里最长的那条。补的位置 label = -100, 不算 loss。

    因为模型是因果注意力, 右侧 padding 不会影响前面真实 token 的计算, 所以不需要 attention mask。
    """
    T = max(len(x["input_ids"]) for x in batch)
    input_ids = torch.full((len(batch), T), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, x in enumerate(batch):
        n = len(x["input_ids"])
        input_ids[i, :n] = x["input_ids"]
        labels[i, :n] = x["labels"]
    return {"input_ids": input_ids, "labels": labels}


def length_grouped_batches(lengths, batch_size, seed=0, shuffle=True, drop_last=False):
    """按长度分组的 batch 索引: 长度相近的样本放在一起, padding 就少。

    先打乱, 再把每 50 个 batch 大小的一段内部按长度排序后切 batch, 最后打乱 batch 的顺序:
    既保留随机性, 又让同一个 batch 里的长度接近。同一个 seed 总是得到同样的顺序 (续训要靠它)。
    drop_last: 不满 batch_size 的零头在打乱之后、排序之前丢掉, 丢的是随机的几条。若是切好 batch 再丢那个不满的,
    丢的总是某一段里最长的几条; 数据不到 50 个 batch 时, 每个 epoch 丢的都是同样几条最长的, 它们永远训练不到。
    """
    idx = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    if drop_last:
        idx = idx[:len(idx) - len(idx) % batch_size]
    group = batch_size * 50
    batches = []
    for g in range(0, len(idx), group):
        chunk = sorted(idx[g:g + group], key=lambda i: lengths[i])
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def padding_fraction(lengths, batches):
    """计算出的 token 里有多少是 padding (越小越好)。"""
    real = sum(lengths[i] for b in batches for i in b)
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / computed if computed else 0.0


def load_tokenizer(path=TOKENIZER_PATH):
    from tokenizer import Tokenizer
    if not os.path.exists(path):
        raise SystemExit(f"错误: 找不到分词器 {path}。{elsewhere(path) or '先运行 python data.py --create_sample'}")
    return Tokenizer.load(path)


# ---------------------------------------------------------------- 命令行

def create_sample(out_dir, seed, vocab_size, overwrite=False):
    import sample_data
    from tokenizer import SPECIAL_TOKENS, Tokenizer
    if vocab_size < 256 + len(SPECIAL_TOKENS):  # 写任何文件之前先查: 不合法时 out_dir 里原来的数据原样保留
        raise SystemExit(f"错误: --vocab_size {vocab_size} 太小。至少要 {256 + len(SPECIAL_TOKENS)} (256 个字节 + 特殊 token)")
    info = sample_data.create_sample(out_dir=out_dir, seed=seed, overwrite=overwrite)
    for name, path in info["files"].items():
        print(f"写入 {path}  ({info['counts'].get(name, '')})")
    # 分词器只在预训练文本上训练: 它属于底座 (课程第 3 步), SFT 沿用底座的词表, 不会改它。
    # 示例世界保证 SFT 用到的每个字都在预训练文本里出现过 (见 sample_data.TALK 上面的说明)
    with open(info["files"]["pretrain.txt"], encoding="utf-8") as f:
        tok = Tokenizer.train(f.read(), vocab_size)
    path = os.path.join(out_dir, "tokenizer.json")
    text = json.dumps(tok.to_dict(), ensure_ascii=False)  # 与 Tokenizer.save 写的完全一样
    sample_data.check_overwrite({path: text}, overwrite)
    sample_data.write_text(path, text)  # 和数据文件同一个原子写入 (临时文件 + 改名)
    print(f"写入 {path}  (词表 {tok.vocab_size})")
    if tok.vocab_size < vocab_size:  # 示例文本里能合并的相邻对用完了: 不是错误, 但要说一声, 免得以为词表是要求的大小
        print(f"注意: 示例文本只学得出 {len(tok.merges)} 条合并, 词表 {tok.vocab_size} 小于 --vocab_size {vocab_size}")


def show(path, index, tokenizer, max_length):
    conversations = load_conversations(path)
    if not 0 <= index < len(conversations):
        raise SystemExit(f"错误: --index {index} 超出范围, {path} 里有 {len(conversations)} 条对话")
    messages = conversations[index]
    ids, trained = render_chat(messages, tokenizer)
    color = sys.stdout.isatty()
    # 把相邻的、掩码相同的 token 拼在一起再解码 (单个 token 可能只是半个汉字的字节); 每一轮的结束符之后断开, 一轮一行。
    # 按 id 认结束符, 不按文字: 用户打的 "<|endoftext|>" 只是普通字符, 留在这一轮里 (第 3 节)
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or trained[i] != trained[start] or ids[i - 1] == tokenizer.eot_id:
            text = tokenizer.decode(ids[start:i])
            if trained[start]:  # 训练的一段是一个回答和它的结束符: 换行放在方括号 (颜色) 之后
                text = f"\033[42;30m{text}\033[0m" if color else f"[{text}]"
            out.append(text + ("\n" if ids[i - 1] == tokenizer.eot_id else ""))
            start = i
    print(f"{path} 第 {index} 条 ({'绿色' if color else '方括号内'}的 token 参与训练):\n")
    print("".join(out).rstrip("\n"))
    n_train = sum(trained)
    print(f"\n共 {len(ids)} 个 token: 训练 {n_train}, 掩码 (label=-100) {len(ids) - n_train}")
    if len(ids) > max_length:
        kept = encode_chat(messages, tokenizer, max_length)
        print(f"注意: 超过 --max_length {max_length}, " + (
            f"训练时整轮丢弃对话, 剩下 {len(kept[0])} 个 token (丢哪几轮见 encode_chat)" if kept else
            "连一轮带回答的对话也放不下, 训练时这一条整条丢掉"))


def check(path, tokenizer, max_length, strict):
    """打印数据文件的体检报告, 返回坏记录的条数 (main 据此以非零状态退出, 脚本里可以 `data.py --check f && 训练`)。"""
    records, bad = load_records(path, strict=strict, max_report=None)
    convs = [m for _, m in records]
    lengths = sorted(len(render_chat(m, tokenizer)[0]) for m in convs)
    n_turns = sum(sum(x["role"] == "assistant" for x in m) for m in convs)
    truncated = sum(n > max_length for n in lengths)
    empty = sum(encode_chat(m, tokenizer, max_length) is None for m in convs)
    q = lambda p: lengths[min(len(lengths) - 1, int(p * len(lengths)))]
    print(f"{path}: {len(convs)} 条可用对话, 共 {n_turns} 个 assistant 回复")
    print(f"token 长度: 最短 {lengths[0]}, 中位 {q(0.5)}, 90% {q(0.9)}, 最长 {lengths[-1]} (--max_length {max_length})")
    print(f"超长需截断 (整轮丢弃: 先丢最旧的; 最后一轮自己都放不下时, 从最新的丢起): {truncated} 条")
    print(f"截断后没有可训练 token (将被丢弃): {empty} 条")
    print("会丢掉结尾 <|endoftext|> 的回复: 0 条 (截断只整轮丢弃, 从不切开一个回答)")
    return bad


def main():
    p = make_parser("SFT 数据: 生成示例数据、查看 chat 模板与掩码、检查数据文件")
    # 做什么
    p.add_argument("--create_sample", action="store_true", help="生成示例数据 (data/ 下的 SFT 训练/评估集、预训练文本) 并训练分词器")
    p.add_argument("--show", action="store_true", help="按模型看到的样子打印一条对话, 标出参与训练的 token")
    p.add_argument("--check", metavar="FILE", help="检查一个数据文件 (.jsonl 或 .json): 坏记录、长度分布、截断情况")
    # 参数
    p.add_argument("--data_path", default=TRAIN_PATH, help="--show 读取的数据文件")
    p.add_argument("--index", type=int, default=0, help="--show 显示第几条对话 (从 0 开始)")
    p.add_argument("--tokenizer", default=TOKENIZER_PATH, help="分词器文件")
    p.add_argument("--max_length", type=int, default=256, help="训练时一条样本的最大 token 数 (训练脚本还会把它限制在模型的上下文窗口以内, 默认模型是 256)")
    p.add_argument("--strict", action="store_true", help="遇到坏记录立即报错退出, 而不是跳过")
    p.add_argument("--out_dir", default=DATA_DIR, help="--create_sample 的输出目录")
    p.add_argument("--seed", type=int, default=0, help="--create_sample 的随机种子 (同一种子生成同样的数据)")
    p.add_argument("--vocab_size", type=int, default=1536, help="--create_sample 训练的分词器词表大小")
    p.add_argument("--overwrite", action="store_true",
                   help="--create_sample 时覆盖 --out_dir 里内容不同的已有文件 (默认拒绝: 那可能是你自己的数据)")
    args = p.parse_args()

    if not (args.create_sample or args.show or args.check is not None):
        p.error("请指定 --create_sample、--show 或 --check FILE 之一")
    if args.check == "":
        p.error("--check 后面要跟一个数据文件, 例如 --check data/sft_train.jsonl")
    if args.max_length < 1:
        raise SystemExit(f"错误: --max_length 必须 >= 1, 收到 {args.max_length}")
    if args.create_sample:
        create_sample(args.out_dir, args.seed, args.vocab_size, args.overwrite)
    if args.show:
        show(args.data_path, args.index, load_tokenizer(args.tokenizer), args.max_length)
    if args.check is not None and check(args.check, load_tokenizer(args.tokenizer), args.max_length, args.strict):
        sys.exit(1)  # 坏记录已逐条列在上面; 训练时会跳过它们, 但文件本身有问题


if __name__ == "__main__":
    run_main(main)  # Ctrl-C、`| head -1` 关掉管道: 一行或安静退出, 不打印 traceback
