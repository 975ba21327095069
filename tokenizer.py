"""
tokenizer.py: 字节级 BPE 分词器 (byte-level BPE), 把文字变成模型吃的整数 id。

做什么:
  - 词表 = 256 个单字节 + 训练学到的合并 (merges) + 5 个特殊 token (放在最后)。
    任何字符串都能拆成字节, 所以永远没有 "未知 token"; 合法的 Unicode 文字都有 decode(encode(s)) == s
    (落单的代理字符 (surrogate, 比如 U+DCFF) 本来就不是合法文字: 按 3 个字节编码, 解码回来是 3 个 U+FFFD)。
  - 先用正则把文本切成小块 (预切分), 合并只发生在块内: 数字一位一块 (像 LLaMA, 小模型学算术更容易),
    汉字连写成一块, 但默认一个汉字一个 token (MAX_CJK_PER_TOKEN, 为什么见那里的注释),
    英文单词带上前面的空格 (像 GPT-2), 标点和空白各自成块。
  - 合并从不把 "半个汉字" 和别的字符粘在一起: token 要么是一个字符内部的几个字节, 要么是几个完整字符。
    词表不浪费在怪 token 上, 编码也能先按字符合并再按字符之间合并, 快好几倍。
  - encode() 对普通文本永远不会产生特殊 id: 用户在聊天里打出 "<|user|>" 也只是普通字节,
    伪造不了角色切换。特殊 id 只由 data.py 的对话模板插入。
不做什么:
  - 不用 regex 包 (只用标准库 re, 所以没有 \\p{L} 这类 Unicode 类别), 不做 Unicode 规范化,
    特殊 token 不参与训练, 也不追求和 tiktoken / HF tokenizers 逐 id 兼容。
怎么运行:
  python data.py --create_sample            # 生成示例数据并训练 data/tokenizer.json
  python tokenizer.py --bench               # 测编码速度和中/英文每字符 token 数
  python tokenizer.py --encode "你好, world 2024"   # 看一句话被切成哪些 token
"""
import heapq
import json
import os
import re
import time
from collections import Counter, defaultdict
from itertools import repeat

from cli import make_parser, run_main, write_atomically  # 只用标准库: 这里故意不导入 torch, 命令行启动快

SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|pad|>"]

# 汉字 (含扩展区) 和日文假名。标准库 re 没有 \p{Han}, 只好写出码位范围。
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
SPLIT_PATTERN = "|".join([
    r"\d",                      # 数字永远一位一块: "2024" -> 2 0 2 4
    f" ?[{_CJK}]+",             # 连写的汉字成一块; 块内能合并成几字的 token 由 MAX_CJK_PER_TOKEN 决定
    rf" ?[^\W\d_{_CJK}]+",      # 其他文字的单词 (英文等), 带上前面的一个空格
    r" ?(?:[^\s\w]|_)+",        # 标点、符号、emoji、下划线
    r"\s*[\r\n]+",              # 换行 (连同它前面的空白) 成一块
    r"\s+(?!\S)|\s+",           # 其余空白; 最后一个空格留给后面的单词
])
# 上面的分支覆盖了所有字符 (数字 / 汉字 / 其他 \w / 非空白 \W / 空白), 所以切分不会丢字。
_CJK_RE = re.compile(f"[{_CJK}]")
# 一个 token 最多含几个汉字。不设上限时, BPE 会把高频的整句合成一个 token: 示例数据上 "最喜欢的颜色是黑色"
# 成了一个 token, 于是 "X最喜欢的颜色是" 后面该接 "黑色" 这件事, 模型在预训练里几乎没见过 (它见的是那个整块),
# 底座只接对 29.5% 的颜色 (出生地 99.5%)。上限两字也不够: BPE 仍会学出 "是黑" 这种跨过词界的两字 token,
# 颜色只接对 28.0%。所以一字一个 token (像 BERT 的中文版): 事实和句式永远是分开的 token, 底座四种属性都能接对
# (python experiments.py tokenizer, README 第 3 节)。代价是中文 token 多了 (示例预训练文本上比两字上限多 29%)、训练慢一些; 英文单词照常合并。
MAX_CJK_PER_TOKEN = 1


class Tokenizer:
    def __init__(self, merges, pattern=SPLIT_PATTERN):
        # 第 i 条合并 (a, b) 产生新 id 256 + i; id 越小越早学到, 编码时也越先合并
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self._regex = re.compile(pattern)
        self._ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}
        self._vocab = [bytes([i]) for i in range(256)]
        for i, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise ValueError(f"第 {i} 条合并 ({a}, {b}) 引用了还不存在的 id")
            self._vocab.append(self._vocab[a] + self._vocab[b])
        # 特殊 token 排在所有合并之后, 每个只占一个 id
        self.special_ids = {s: len(self._vocab) + k for k, s in enumerate(SPECIAL_TOKENS)}
        self._vocab += [s.encode("utf-8") for s in SPECIAL_TOKENS]
        self.eot_id, self.system_id, self.user_id, self.assistant_id, self.pad_id = self.special_ids.values()
        self._cache = {}  # 文本块 -> ids; 同一个词反复出现时不必重新合并

    @property
    def vocab_size(self):
        return len(self._vocab)

    @classmethod
    def train(cls, text, vocab_size, pattern=SPLIT_PATTERN, max_cjk=MAX_CJK_PER_TOKEN):
        """在 text 上学 vocab_size - 256 - 5 条合并。每步合并出现次数最多的相邻对,
        次数相同时取 (a, b) 最小的那对, 所以同样的输入永远得到同样的结果。
        文本太少、已经没有可合并的相邻对时提前停止 (此时 vocab_size 会小于要求值)。
        max_cjk: 一个 token 最多几个汉字, None 表示不设上限 (只给 experiments.py tokenizer 做对比用)。"""
        n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
        if n_merges < 0:
            raise SystemExit(f"错误: vocab_size={vocab_size} 太小。至少要 {256 + len(SPECIAL_TOKENS)} (256 个字节 + 特殊 token)")
        # 只统计不同的块和它们的次数: 语料里 "的" 出现一万次, 也只处理一次
        chunk_counts = Counter(re.findall(pattern, text))
        words = [list(c.encode("utf-8", "surrogatepass")) for c in chunk_counts]
        freqs = list(chunk_counts.values())
        vocab = [bytes([i]) for i in range(256)]
        whole = [i < 128 for i in range(256)]  # 这个 token 是不是若干个完整字符
        n_cjk = [0] * 256                       # 这个 token 里有几个汉字
        # 只允许两种合并: 同一个字符内部的字节 (右边以 UTF-8 续字节开头), 或两段完整字符, 而且合并后最多
        # max_cjk 个汉字。于是不会学出 "半个汉字 + 另一个字" 这种浪费词表的 token, 编码也能先按字符合并
        # (见 _encode_chunk); 也不会把 "最喜欢的颜色是黑色" 这种 "句式 + 事实" 合成一个 token (见 MAX_CJK_PER_TOKEN)
        def ok(pair):
            a, b = pair
            if vocab[b][0] & 0xC0 == 0x80:
                return True
            return whole[a] and whole[b] and (max_cjk is None or n_cjk[a] + n_cjk[b] <= max_cjk)
        counts = defaultdict(int)  # 相邻对 -> 加权出现次数
        where = defaultdict(set)   # 相邻对 -> 含有它的块下标; 合并时只碰这些块
        for w, word in enumerate(words):
            for pair in zip(word, word[1:]):
                if ok(pair):
                    counts[pair] += freqs[w]
                    where[pair].add(w)
        # 最大堆 (次数取负); 次数变了就压入新条目, 弹出时丢掉过期的旧条目
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)
        merges = []
        while len(merges) < n_merges and heap:
            neg_count, pair = heapq.heappop(heap)
            if counts.get(pair) != -neg_count:
                continue
            new_id = 256 + len(merges)
            merges.append(pair)
            vocab.append(vocab[pair[0]] + vocab[pair[1]])
            whole.append(_is_utf8(vocab[-1]))
            n_cjk.append(len(_CJK_RE.findall(vocab[-1].decode())) if whole[-1] else 0)
            changed = set()
            for w in where.pop(pair):
                _merge_word(words[w], pair, new_id, freqs[w], w, counts, where, changed, ok)
            del counts[pair]  # 这一对已全部合并, 不会再出现
            for p in changed - {pair}:
                if counts.get(p, 0) > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    counts.pop(p, None)
        return cls(merges, pattern)

    def _bpe(self, ids):
        get, never = self._ranks.get, 1 << 62
        while len(ids) >= 2:
            # 每轮合并 rank 最小 (最早学到) 的相邻对; map/min 在 C 里跑, 比逐个 Python 循环快
            ranks = list(map(get, zip(ids, ids[1:]), repeat(never)))
            best = min(ranks)
            if best == never:
                break
            i = ranks.index(best)
            ids[i:i + 2] = [best]  # rank 就是新 token 的 id
        return ids

    def _encode_chunk(self, chunk):
        if len(chunk) == 1:
            # 孤立的代理字符 (如 "\ud800") 不是合法 UTF-8, surrogatepass 让它不报错, 解码时变成 "\ufffd"
            return self._bpe(list(chunk.encode("utf-8", "surrogatepass")))
        # 训练时合并从不跨越 "半个字符", 所以先把每个字符单独合并好 (有缓存) 再做字符之间的合并,
        # 结果和直接在字节上做 BPE 完全一样, 但一个汉字 3 个字节只剩约 1 个 token, 中文编码快好几倍
        ids = []
        for ch in chunk:
            ids += self._cached(ch)
        return self._bpe(ids)

    def _cached(self, chunk):
        piece = self._cache.get(chunk)
        if piece is None:
            piece = self._encode_chunk(chunk)
            if len(self._cache) < 500_000:  # 设上限, 编码超大语料时内存不会无限涨
                self._cache[chunk] = piece
        return piece

    def encode(self, text):
        """普通文本 -> ids。从不产生特殊 id: "<|user|>" 会被当作 8 个普通字符编码。"""
        ids = []
        for chunk in self._regex.findall(text):
            ids += self._cached(chunk)
        return ids

    def decode_bytes(self, ids):
        """ids -> 原始字节。流式输出时一个汉字可能被拆在两个 token 里, 调用方要攒够字节再解码。"""
        out = []
        for i in map(int, ids):  # int() 让 torch / numpy 的整数也能用
            if not 0 <= i < len(self._vocab):  # 负数也要拦下: 否则 -100 会被 Python 当成倒数第 100 个
                raise ValueError(f"token id {i} 不在词表范围 [0, {len(self._vocab)}) 内")
            out.append(self._vocab[i])
        return b"".join(out)

    def decode(self, ids):
        r"""ids -> 字符串。特殊 id 还原成它的字面文字; 不完整的 UTF-8 字节变成 "\ufffd"。"""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self):
        # 只用 list / int / str, 这样能放进用 torch.load(weights_only=True) 读的 checkpoint
        return {"type": "byte_bpe", "version": 1, "pattern": self.pattern,
                "merges": [[a, b] for a, b in self.merges], "special_tokens": list(SPECIAL_TOKENS)}

    def fingerprint(self):
        """合并表和切分规则的哈希 (16 个十六进制字符): 两个分词器的指纹相同, 每个 id 的含义就相同。预训练续训时核对。"""
        import hashlib
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d, source="这"):
        # source: 报错时怎么称呼这份数据 (Tokenizer.load 传入 "分词器文件 <路径> ", 说出是哪个文件)
        try:
            if d["type"] != "byte_bpe" or d["special_tokens"] != SPECIAL_TOKENS:
                raise ValueError("type 或 special_tokens 不对")
            return cls(d["merges"], d["pattern"])
        except (KeyError, TypeError, ValueError, re.error) as e:
            raise SystemExit(f"错误: {source}不是本课程的分词器数据 ({e!r})。请用 python data.py --create_sample 重新生成") from None

    def save(self, path):
        # 原子写入: 写到一半出错也不会毁掉已有的分词器文件
        write_atomically(path, lambda f: json.dump(self.to_dict(), f, ensure_ascii=False))

    @classmethod
    def load(cls, path):
        if os.path.isdir(path):
            raise SystemExit(f"错误: {path} 是目录, 不是分词器文件。写出文件名, 例如 {os.path.join(path, 'tokenizer.json')}")
        if not os.path.isfile(path):
            raise SystemExit(f"错误: 找不到分词器文件 {path}。请先运行 python data.py --create_sample")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (ValueError, RecursionError, UnicodeDecodeError) as e:  # ValueError 含 JSON 语法错误和超长的整数
            raise SystemExit(f"错误: 分词器文件 {path} 不是合法 JSON ({type(e).__name__}: {str(e)[:100]})。"
                             "请用 python data.py --create_sample 重新生成") from None
        return cls.from_dict(d, source=f"分词器文件 {path} ")


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _merge_word(word, pair, new_id, freq, w, counts, where, changed, ok):
    """在块 word 里把所有 pair 原地换成 new_id, 只增量更新受影响的左右邻居对的计数。"""
    a, b = pair

    def update(p, delta):
        if ok(p):
            counts[p] += delta
            changed.add(p)
            if delta > 0:
                where[p].add(w)
    i = 0
    while True:
        try:
            i = word.index(a, i)
        except ValueError:
            return
        if i + 1 < len(word) and word[i + 1] == b:
            word[i:i + 2] = [new_id]
            # 例: x a b y -> x N y: (x,a) 和 (b,y) 各少 freq 次, (x,N) 和 (N,y) 各多 freq 次
            if i > 0:
                update((word[i - 1], a), -freq)
                update((word[i - 1], new_id), freq)
            if i + 1 < len(word):
                update((b, word[i + 1]), -freq)
                update((new_id, word[i + 1]), freq)
        i += 1


def _read_text(path):
    """读基准文本; .json/.jsonl 只取其中的字符串值, 免得转义符和键名干扰统计。"""
    if os.path.isdir(path):
        raise SystemExit(f"错误: --text {path} 是目录, 这里要一个文本文件 (例如 data/pretrain.txt)")
    if not os.path.isfile(path):
        raise SystemExit(f"错误: 找不到文本文件 {path}。请先运行 python data.py --create_sample, 或用 --text 指定文件")
    from data import read_text, require_utf8  # 不是 UTF-8、读不了: 与数据文件同样的一行报错 (file:line)
    raw = read_text(path)
    if not path.endswith((".json", ".jsonl")):
        return raw
    records = []
    for line, s in enumerate([raw] if path.endswith(".json") else raw.split("\n"), 1):  # .jsonl 一行一条: 报错时给出行号
        if s.strip():
            try:
                records.append(json.loads(s))
            except (ValueError, RecursionError) as e:  # 语法错误、超长的整数、嵌套太深
                where = path if path.endswith(".json") else f"{path}:{line}"
                raise SystemExit(f"错误: {where}: 不是合法 JSON ({type(e).__name__}: {str(e)[:100]})。请换一个文件, 或用纯文本文件") from None
    strings, stack = [], records
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            strings.append(x)
        elif isinstance(x, (list, dict)):
            stack.extend(reversed(list(x.values() if isinstance(x, dict) else x)))
    text = "\n".join(strings)
    try:
        require_utf8(text, "字符串")  # JSON 里的 "\ud83d" 解析得出来, 编码时才 UnicodeEncodeError
    except ValueError as e:
        raise SystemExit(f"错误: {path}: {e}。请换一个文件") from None
    return text


def bench(tok, text):
    cjk = re.compile(f"[{_CJK}]")
    lines = [line for line in text.splitlines() if line.strip()]
    # 按行分文字: 汉字占非空白字符一半以上算中文行, 完全没有汉字且以英文字母为主算英文行
    zh = [x for x in lines if len(cjk.findall(x)) > 0.5 * len(x.replace(" ", ""))]
    en = [x for x in lines if not cjk.search(x) and len(re.findall(r"[A-Za-z]", x)) > 0.5 * len(x.replace(" ", ""))]
    print(f"词表大小 {tok.vocab_size}, 合并 {len(tok.merges)} 条; 每次测量都从空缓存开始")
    for name, sample in (("全部 (混合)", text), ("中文行", "\n".join(zh)), ("英文行", "\n".join(en))):
        if not sample:
            print(f"{name}: 文本里没有这类行, 跳过")
            continue
        fresh = Tokenizer.from_dict(tok.to_dict())
        t0 = time.perf_counter()
        ids = fresh.encode(sample)
        dt = time.perf_counter() - t0
        mb = len(sample.encode("utf-8")) / 1e6
        assert fresh.decode(ids) == sample
        print(f"{name}: {len(sample):>9,} 字符 {mb:6.2f} MB  编码 {mb / dt:5.2f} MB/s  每字符 {len(ids) / len(sample):.3f} 个 token")


def main():
    parser = make_parser("字节级 BPE 分词器: 测速度和压缩率, 或查看一句话的切分")
    parser.add_argument("--tokenizer", default="data/tokenizer.json", help="分词器 JSON 文件 (python data.py --create_sample 生成)")
    parser.add_argument("--bench", action="store_true", help="测编码速度 (MB/s) 和中文/英文每字符 token 数 (不给 --encode 时默认就做)")
    parser.add_argument("--text", default="data/pretrain.txt", help="--bench 用的文本; .json/.jsonl 只取其中的字符串")
    parser.add_argument("--encode", default=None, help="把这句话编码, 逐个打印 token")
    args = parser.parse_args()
    tok = Tokenizer.load(args.tokenizer)
    if args.encode is not None:
        ids = tok.encode(args.encode)
        print(f"{len(args.encode)} 个字符 -> {len(ids)} 个 token")
        for i in ids:
            piece = tok.decode_bytes([i])  # 半个汉字的 token 解不成文字, 就直接显示字节
            print(f"{i:>6}  {piece.decode()!r}" if _is_utf8(piece) else f"{i:>6}  {piece}")
    if args.bench or args.encode is None:  # 什么都不指定时默认测速
        text = _read_text(args.text)
        if not text.strip():
            raise SystemExit(f"错误: {args.text} 里没有可测的文字 (空文件?)。用 --text 换一个文件")
        bench(tok, text)


if __name__ == "__main__":
    run_main(main)
