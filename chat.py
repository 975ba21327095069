r"""chat.py — 和训练好的模型对话: 流式输出、多轮历史、任何 checkpoint, 也能被脚本调用。

做什么:
  - 加载完整模型、单独的 LoRA 适配器 (它记得自己的底座), 或 --checkpoint 底座 + --lora 适配器。
  - 回答逐 token 流式打印。一个汉字常被拆在两个 token 里, 所以按字节增量解码, 只打印完整的 UTF-8 字符。
  - 对话历史用训练时同一个 data.render_chat 拼成 prompt, 格式与 SFT 一字不差;
    上下文窗口 (max_seq_len 减去给回答留的位置) 放不下时, 整轮丢弃最旧的对话 (保留 system prompt) 并告诉用户。
  - 命令 /help /clear /system /adapter /exit (/quit); Ctrl-C 只停止当前回答, Ctrl-D 退出; 有 readline 时支持方向键编辑和历史。
  - --compare A.pt B.pt ...: 同一句话依次交给每个模型回答, 各自带标签 —— 课程的前后对比 (底座 / SFT / LoRA)。
  - --lora a.pt b.pt: 多个适配器共用一个底座, /adapter NAME 切换 = 往同一个模型里加载另一份 lora_A/lora_B,
    不重新加载底座 ("可以保留多个 LoRA 适配器")。/adapter base 把旁路置零, 就是原来的底座。

约定 (脚本可以依赖):
  - 标准输入不是终端时 (管道、文件), 每一行是同一段对话里的一条用户消息, 每个回答打印成一行
    (回答里若本身有换行则占多行); --compare 时每行以 "[模型路径] " 开头。空行跳过, /clear /system 等命令照常生效。
    提示、通知、错误一律写到 stderr, stdout 里只有回答。
  - 按 Ctrl-C 打断的半截回答留在历史里 (屏幕上看到的就是模型说过的话), 后面的对话能接着它。
  - 模型生成任何特殊 token 都算回答结束: 只有 <|endoftext|> 是训练过的结束符, 生成 <|user|> 等说明它开始替用户说话了。
  - 用户打的 "<|assistant|>" 之类只是普通文字: tokenizer.encode 从不产生特殊 id, 伪造不了角色。

不做什么: 不做 batch 推理、不跨回合复用 KV cache (每轮把整段历史重新 prefill 一次, 几百个 token 很快)、
不支持不同 LoRA 配置 (r、target_modules) 的适配器互相切换、不保存对话记录。

运行:
    python chat.py --checkpoint checkpoints/sft_model.pt
    python chat.py --checkpoint checkpoints/lora_adapter.pt           # 适配器自己找底座
    python chat.py --checkpoint checkpoints/base_model.pt --lora a.pt b.pt   # 用 /adapter 切换
    python chat.py --compare checkpoints/base_model.pt checkpoints/sft_model.pt checkpoints/lora_adapter.pt
    python chat.py --prompt "你好" --temperature 0           # 回答一次就退出
    printf '我叫小明\n我叫什么？\n' | python chat.py         # 脚本方式: 每行一条用户消息
"""
import codecs
import math
import os
import re
import sys
import time

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch

import data
from checkpoint import adapter_problem, load_checkpoint, load_model
from lora import LoRALinear, base_fingerprint, load_lora_state_dict, lora_state_dict
from model import pick_device

HELP = """命令:
  /help            显示这段说明
  /clear           清空历史, 开始新对话 (system prompt 保留)
  /system TEXT     把 system prompt 换成 TEXT, 历史保留; 只写 /system 则去掉 system prompt
  /adapter [NAME]  列出或切换 LoRA 适配器 (--lora 加载了适配器时可用; base 表示不用适配器)
  /exit            退出 (/quit、Ctrl-D 也行)
Ctrl-C 停止正在生成的回答, 不退出; 半截回答留在历史里。"""


def note(msg):
    # 通知一律走 stderr: 管道模式下 stdout 只有回答, 脚本好解析
    print(msg, file=sys.stderr, flush=True)


class Bot:
    """一个模型和它的对话历史。--compare 时每个模型一个 Bot: 用户消息相同, 各自看到的是自己说过的回答。"""

    def __init__(self, name, model, tokenizer, system=None):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.system = system
        self.history = []  # user / assistant 交替, 不含 system
        self.stopped = False  # 上一个回答是不是被 Ctrl-C 打断的
        self.adapters = {}  # 名字 -> (lora state dict, scaling); 只在 --lora 给了适配器时非空
        self.adapter = None

    def messages(self, system=True, dropped=0):
        """(system) + 历史, 历史里去掉最旧的 dropped 轮。"""
        return ([{"role": "system", "content": self.system}] if self.system and system else []) + self.history[2 * dropped:]

    def prompt_ids(self, budget, system=True):
        """按训练时的模板拼 prompt; 超过 budget 个 token 就整轮 (user + assistant) 丢掉最旧的。
        返回 (ids, 要丢掉的轮数); 不改动历史, 由调用者选定用哪一种拼法之后再丢。"""
        for dropped in range(len(self.history) // 2 + 1):  # 历史的最后一条是这次的用户消息, 它永远保留
            ids, _ = data.render_chat(self.messages(system, dropped), self.tokenizer, add_generation_prompt=True)
            if len(ids) <= budget:
                break
        return ids, dropped

    def reply(self, text, args, prefix=""):
        """把 text 作为用户消息, 流式打印回答并记入历史。"""
        self.history.append({"role": "user", "content": text})
        L = self.model.config.max_seq_len
        max_new = args.max_new_tokens or L // 2  # 默认半个窗口: 提示和回答加起来放得下, 生成中途不用丢掉开头
        # 给回答留的位置: 最多半个窗口, 否则小窗口的模型连一轮历史都放不下。(严格说能多放一个 token: 最后生成的那个不用再
        # 喂回模型, evaluate.py 就是这么算的; 聊天里少用一个位置无关紧要, 这样写更好懂)
        budget = L - min(max_new, L // 2)
        ids, dropped = self.prompt_ids(budget)
        tok, system_kept = self.tokenizer, bool(self.system)
        head = (len(data.render_chat(self.messages()[:1], tok)[0]) if self.system else 0) + 1  # system 和 <|user|>
        if len(ids) > budget and self.system and head > budget // 2:
            # 只剩这条消息也放不下, 而 system prompt 自己就占了半个窗口以上: 这一轮不用它 (从左边截, 会留下没有
            # <|system|> 的半句话)。丢旧的轮次也要按不带 system 的长度重算, 不然会白白丢掉本来放得下的历史
            note(f"(system prompt 太长 ({head - 1} 个 token): 这一轮没有用它; 用 /system 换一个短一些的)")
            (ids, dropped), head, system_kept = self.prompt_ids(budget, system=False), 1, False
        if len(ids) > budget:
            # 只剩这一条消息还是放不下: 保留开头的 system 和 <|user|>, 丢掉消息的前半部分 (问题通常在末尾)
            ids = ids[:head] + ids[len(ids) - (budget - head):]
            note(f"(这条消息太长: 只保留了它最后的一部分, 共 {budget} 个 token)")
        if dropped:
            note(f"(上下文窗口满了: 丢掉了最早的 {dropped} 轮对话" + (", system prompt 保留)" if system_kept else ")"))
        stop_ids = set(tok.special_ids.values())
        # 增量解码器攒着不完整的 UTF-8 字节, 等下一个 token 补齐后再输出整个字符
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces, n, t0, stopped, ended = [], 0, time.perf_counter(), False, False
        sys.stdout.write(prefix)
        sys.stdout.flush()
        try:
            for i in self.model.generate(ids, max_new, args.temperature, args.top_k, args.top_p,
                                         eos_id=tok.eot_id, seed=args.seed):
                n += 1
                if i in stop_ids:
                    ended = True
                    break
                piece = decoder.decode(tok.decode_bytes([i]))
                if piece:
                    pieces.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            stopped = True
        self.stopped = stopped  # answer() 据此决定: 聊天里只停这一句, 脚本/管道模式里停下整个程序
        pieces.append(decoder.decode(b"", final=True))  # 结尾残缺的字节变成 "\ufffd"
        sys.stdout.write(pieces[-1] + "\n")
        sys.stdout.flush()
        answer = "".join(pieces)
        if not answer.strip():  # 不提示的话, 用户只看到一个空行, 以为程序卡了
            note(("(已停止生成, 还没有说出一个字" if stopped else "(模型没有回答: 一开口就生成了结束符, 或者只输出了空白")
                 + "; 这个问题不留在历史里。换个问法, 或 /clear 开始新对话再问)")
            # 训练数据里没有空白的回答 (data.py 把它当坏记录): 留着这一轮, 之后每个提示里都会有一段模型从没见过的
            # "<|assistant|><|endoftext|>"
            self.history.pop()
        else:
            if stopped:
                note("(已停止生成; 这半截回答留在历史里)")
            elif not ended:  # 没说结束符就到了上限: 回答可能断在半句、甚至半个字上 (末尾的 "\ufffd")
                note(f"(到了 {max_new} 个 token 的上限 (--max_new_tokens), 回答被截断了)")
            # 放不下的最早几轮到这时才真的丢掉: 回答是空的、这一轮作废时, 它们还留在历史里。
            # 末尾半个字的 "\ufffd" 只在屏幕上: 记进历史的话, 下一轮它会被编码成模型从没见过的三个字节 token
            self.history = self.history[2 * dropped:] + [{"role": "assistant", "content": answer.rstrip("\ufffd") or answer}]
        if args.verbose:
            dt = time.perf_counter() - t0
            where = self.name + (f" + 适配器 {self.adapter}" if self.adapter else "")
            # n 含结束符 (它也是生成出来的); 计时从读入提示 (prefill) 算起, 所以短回答的 tokens/s 偏低
            note(f"[{where}: 生成 {n} tokens (含结束符), {n / max(dt, 1e-9):.1f} tokens/s (含 prefill), prompt {len(ids)} tokens]")
        return answer

    def use_adapter(self, name):
        state, scaling = self.adapters[name]
        for m in self.model.modules():  # 先换 scaling 再换 A/B: 已合并的层在 load_lora_state_dict 里按新的 scaling 重新合并
            if isinstance(m, LoRALinear):
                m.scaling = scaling  # alpha 可以不同, r 和 target_modules 必须相同 (形状才对得上)
        load_lora_state_dict(self.model, state)
        self.adapter = name


def collect_adapters(bot, paths):
    """第一个适配器已由 load_model 套好; 把每个适配器的 A/B 读出来备用, 切换时只拷贝这几个小张量。"""
    first = lora_state_dict(bot.model)
    if not first:
        return
    fingerprint, config0 = base_fingerprint(bot.model), None
    names = {"base": ({k: torch.zeros_like(v) for k, v in first.items()}, 1.0)}  # A、B 全零 = 没有旁路
    for path in paths:
        ck = load_checkpoint(path, kinds=("lora_adapter",))
        cfg = ck["lora_config"]
        if ck["base"]["fingerprint"] != fingerprint:
            raise SystemExit(f"错误: 适配器 {path} 是在另一个底座上训练的 (指纹 {ck['base']['fingerprint']}, "
                             f"当前底座 {fingerprint})。只能切换同一个底座上训练的适配器")
        key = (cfg["r"], sorted(cfg["target_modules"]))
        if config0 is not None and key != config0:
            raise SystemExit(f"错误: 适配器 {path} 的 r 或 target_modules 与 {paths[0]} 不同, 不能在同一个模型里切换。"
                             "请分别运行 chat.py")
        config0 = config0 or key
        try:  # 现在就核对名字和形状 (装一次试试): 否则要到聊天中途 /adapter 切换时才发现, 那时只能退出
            load_lora_state_dict(bot.model, ck["lora_state"])
        except SystemExit as e:
            raise adapter_problem(path, e) from None
        name = os.path.splitext(os.path.basename(path))[0]
        names[path if name in names else name] = (ck["lora_state"], cfg["alpha"] / cfg["r"])
    bot.adapters = names
    bot.use_adapter(next(n for n in names if n != "base"))  # 核对时依次装过每一个, 换回第一个


def load_bots(args, device):
    if args.compare:
        if args.lora:
            raise SystemExit("错误: --compare 不能和 --lora 一起用。适配器直接写进 --compare 的列表 (它记得自己的底座)")
        return [Bot(p, *load_model(p, device)[:2], system=args.system) for p in args.compare]
    model, tokenizer, _ = load_model(args.checkpoint, device, lora=args.lora[0] if args.lora else None)
    bot = Bot(args.checkpoint, model, tokenizer, system=args.system)
    collect_adapters(bot, args.lora or [args.checkpoint])
    return [bot]


COMMANDS = ("/help", "/clear", "/system", "/adapter", "/exit", "/quit")


def split_command(line):
    """这一行是不是 /命令: 是就返回 (命令, 参数), 否则 None (当成普通消息发给模型)。
    只认上面这几个命令名, 所以 "/tmp 是什么目录？" 照常发给模型; 命令和参数之间可以是任何空白 (中文输入法的全角空格也行),
    也可以不隔开 ("/system请用英文回答")。单独一个没见过的 "/字母" (多半是命令打错了, 如 /hlep) 返回它自己, 由 run_command 提示。"""
    m = re.match(r"(/[A-Za-z]+)(?![A-Za-z])\s*(.*)", line, re.S)
    if m and (m[1] in COMMANDS or not m[2]):
        return m[1], m[2].strip()
    return None


def run_command(cmd, arg, bots, interactive):
    """执行一条 /命令; 返回 True 表示退出。"""
    say = note if interactive else (lambda msg: None)  # 管道模式下命令默默生效, 不给输出添乱
    if cmd in ("/exit", "/quit"):  # /quit: 不少命令行程序用它退出, 手顺就会打出来
        return True
    if cmd == "/help":
        note(HELP)
    elif cmd == "/clear":
        for b in bots:
            b.history = []
        say("(已开始新对话)")
    elif cmd == "/system":
        for b in bots:
            b.system = arg or None
        say(f"(system prompt: {arg})" if arg else "(已去掉 system prompt)")
    elif cmd == "/adapter":
        bot = bots[0]
        if len(bots) > 1 or not bot.adapters:
            note("(没有可切换的适配器: 用 --checkpoint 底座 --lora a.pt b.pt 加载几个适配器)")
        elif not arg:
            note("适配器: " + ", ".join(f"*{n}" if n == bot.adapter else n for n in bot.adapters))
        elif arg not in bot.adapters:
            note(f"(没有叫 {arg} 的适配器。可选: {', '.join(bot.adapters)})")
        else:
            bot.use_adapter(arg)
            say(f"(已切换到适配器 {arg}; 对话历史保留)")
    else:
        note(f"(未知命令 {cmd}。输入 /help 查看命令)")
    return False


def read_lines(interactive):
    if not interactive:
        src = getattr(sys.stdin, "buffer", None)
        if src is None:  # 已经是文字 (测试里换成了 StringIO)
            yield from sys.stdin
            return
        # 按字节一行行读、自己解码: 某一行不是合法文字 (例如 GBK 编码的文件) 时能说出是第几行。
        # 先按 UTF-8 (和数据文件一样; 中文 Windows 上管道的默认编码却是 GBK, 照它解 UTF-8 的文件会变成乱码),
        # 不是 UTF-8 再按系统给标准输入的编码 (中文 Windows 的 cmd 里 echo 出来的就是 GBK)
        encodings = ["utf-8"]
        if sys.stdin.encoding and codecs.lookup(sys.stdin.encoding).name != "utf-8":
            encodings.append(sys.stdin.encoding)
        for n, raw in enumerate(src, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # Windows 记事本存的 "UTF-8 (带 BOM)": 否则第一行的 /命令 不认
                raw = raw[3:]
            for encoding in encodings:
                try:
                    text = raw.decode(encoding)
                    break
                except UnicodeDecodeError:
                    pass
            else:
                raise SystemExit(f"错误: 标准输入第 {n} 行不是 {' 或 '.join(encodings)} 编码的文字。请先转换编码 "
                                 f"(例如 iconv -f GBK -t UTF-8 文件名 | python chat.py)")
            yield text
        return
    try:
        import readline  # noqa: F401  导入即生效: input() 获得方向键编辑和历史。Windows 上没有, 照常能用
    except ImportError:
        pass
    while True:
        try:
            yield input("\n你> ")
        except EOFError:  # Ctrl-D
            print()
            return
        except KeyboardInterrupt:  # 输入时按 Ctrl-C: 放弃这一行, 不退出
            note("\n(输入 /exit 或按 Ctrl-D 退出)")
        except UnicodeDecodeError:  # 终端的编码设置与 Python 以为的不同
            note("(这一行不是终端编码的文字, 已忽略; 请检查终端的编码设置, 例如 UTF-8)")


def answer(bots, text, args, interactive):
    for b in bots:
        label = f"[{b.name}] " if len(bots) > 1 else ("助手> " if interactive else "")
        b.reply(text, args, prefix=label)
        if b.stopped and not interactive:  # --prompt / 管道模式里按 Ctrl-C: 半截回答已经印出, 程序以 130 退出
            raise KeyboardInterrupt


def parse_args(argv=None):
    p = make_parser("和训练好的模型对话 (流式、多轮; 标准输入不是终端时每行一条消息)")
    g = p.add_argument_group("模型")
    g.add_argument("--checkpoint", default="checkpoints/sft_model.pt", help="模型 checkpoint, 或 LoRA 适配器 (它记得自己的底座)")
    g.add_argument("--lora", nargs="+", default=[], metavar="ADAPTER",
                   help="套在 --checkpoint 底座上的 LoRA 适配器; 给几个时用 /adapter NAME 切换, 不重新加载底座")
    g.add_argument("--compare", nargs="+", metavar="CKPT", help="对比模式: 每句话依次由这些模型回答, 各带标签 (忽略 --checkpoint)")
    g.add_argument("--device", default="auto", help="auto / cpu / cuda / mps (auto 依次尝试 cuda、mps、cpu)")
    g = p.add_argument_group("生成")
    g.add_argument("--temperature", type=float, default=0.7, help="采样温度; 0 表示贪心 (每次取概率最大的 token); 大于 0 时至少 0.001")
    g.add_argument("--top_k", type=int, default=None, help="只在概率最大的 k 个 token 里采样 (默认不限制)")
    g.add_argument("--top_p", type=float, default=0.9, help="nucleus 采样: 只在累计概率达到 top_p 的 token 里采样; 1 表示不限制")
    g.add_argument("--max_new_tokens", type=int, default=None,
                   help="一个回答最多生成多少 token (默认: 模型窗口 max_seq_len 的一半, 课程的模型是 128。设得更大时, 回答写到窗口满了"
                        "就丢掉最旧的一半再接着写, 模型从那以后看不到前面的对话和角色标签)")
    g.add_argument("--seed", type=int, default=None, help="随机种子 (每个回答都用它, 同样的输入得到同样的回答)")
    g.add_argument("--system", default=None, help="system prompt (默认没有)")
    g = p.add_argument_group("运行方式")
    g.add_argument("--prompt", default=None, help="只问这一句: 打印回答后退出")
    g.add_argument("--verbose", action="store_true", help="每个回答后在 stderr 打印 token 数和 tokens/s")
    args = p.parse_args(argv)
    bad = [f"{flag} {rule}, 收到 {value}" for flag, value, ok, rule in [
        ("--temperature", args.temperature, 0 <= args.temperature < math.inf, "必须是 >= 0 的有限数"),
        ("--max_new_tokens", args.max_new_tokens, args.max_new_tokens is None or args.max_new_tokens >= 1, "必须 >= 1"),
        ("--top_k", args.top_k, args.top_k is None or args.top_k >= 1, "必须 >= 1"),
        ("--top_p", args.top_p, 0 < args.top_p <= 1, "必须在 0 到 1 之间 (不含 0)"),
        ("--seed", args.seed, args.seed is None or 0 <= args.seed < 2**63, "必须在 0 到 2^63-1 之间")] if not ok]
    if bad:  # 一次列出所有不合法的参数 (NaN 与任何数比较都是 False, 也会落在这里)
        raise SystemExit("错误: 生成参数不合法: " + "; ".join(bad))
    if args.prompt is not None and not args.prompt.strip():  # 管道模式跳过空行; 一句空话也不该发给模型
        raise SystemExit("错误: --prompt 是空的。写上要问的话, 例如 --prompt \"你好\"")
    # logits / temperature: 温度小到 1e-39 这种程度时除法溢出成 inf, softmax 得到 NaN, 采出来的是乱码。
    # 0.001 已经几乎就是贪心了, 更小的温度没有意义
    if 0 < args.temperature < 1e-3:
        raise SystemExit(f"错误: --temperature {args.temperature} 太小 (大于 0 时至少 0.001, 再小会数值溢出)。"
                         "要贪心解码就用 --temperature 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    bots = load_bots(args, device)
    if args.prompt is not None:
        answer(bots, args.prompt, args, interactive=False)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        for b in bots:
            extra = f", 适配器 {', '.join(b.adapters)} (当前 {b.adapter})" if b.adapters else ""
            print(f"已加载 {b.name}: {b.model.num_params() / 1e6:.2f}M 参数, 上下文 {b.model.config.max_seq_len} token, "
                  f"设备 {device}{extra}")
        print("输入消息后回车; /help 查看命令, Ctrl-D 退出。")
    for line in read_lines(interactive):
        line = line.strip()
        if not line:
            continue
        command = split_command(line)
        if command:
            if run_command(*command, bots, interactive):
                return
            continue
        answer(bots, line, args, interactive)


if __name__ == "__main__":
    run_main(main)  # 加载模型或读管道时按 Ctrl-C、输出管道被关闭: 一行或安静退出, 不打印 traceback
