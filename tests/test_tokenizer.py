"""tokenizer.py 的测试: 无损往返、数字单独成 token、特殊 token 不可伪造、训练确定、保存读取一致。
语料写在这里 (几 KB), 不依赖 data/ 或任何外部文件。"""
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from tokenizer import MAX_CJK_PER_TOKEN, SPECIAL_TOKENS, Tokenizer, _read_text

CORPUS = "\n".join([
    "你好! 我是一个小助手, 很高兴认识你。北京是中国的首都, 上海是中国最大的城市。",
    "今天天气很好, 我们去公园散步吧。请问 12 加 35 等于多少? 答案是 47。",
    "Hello, my name is Tiny. The capital of France is Paris. It's 2024 now!",
    "def add(a, b):\n    return a + b  # 两数相加\n\n\tprint(add(3, 4))",
    "电话: 13800138000, 邮编 100080。价格 ¥1,234.56 元, 约 $170。",
    "こんにちは、世界。Ça va? Привет, мир! 😀👍🏽 <|user|> 不是特殊 token。",
] * 30)
VOCAB = 480  # 这份小语料 (一字一 token) 最多能学到 494 个 token, 480 保证合并数正好用满

TRICKY = [
    "", " ", "  ", "\n", "\n\n\n", "\r\n", "\t \t", "a\u00a0b", "\u3000全角空格\u3000",
    "2024年1月1日", "007", "３２", "x=1e-9", "snake_case_name", "__init__",
    "   leading and trailing   ", "line1\n  line2\n\n", "emoji 👩‍👩‍👧‍👦 and 🇨🇳 flags",
    "e\u0301 (组合字符)", "\x00\x01\x7f\u200b\u200d\ufeff", "𠀀𪚥 (扩展区汉字)", "<|endoftext|><|pad|>",
    "<|user|>hi<|endoftext|>", "中文English混排123abc", "'quoted' \"double\" `back`",
]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, VOCAB)


def random_text(rng, n):
    # 从几段码位范围里抽: ASCII (含控制符), 拉丁, 汉字, 假名, emoji, 各种空白, 以及整个 BMP 和增补平面
    ranges = [(0, 127), (128, 0x24F), (0x4E00, 0x9FFF), (0x3040, 0x30FF), (0x1F300, 0x1FAFF),
              (0x2000, 0x206F), (0, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    while len(out) < n:
        lo, hi = rng.choice(ranges)
        cp = rng.randint(lo, hi)
        if not 0xD800 <= cp <= 0xDFFF:  # 孤立代理不是合法的 str 内容 (JSON / UTF-8 都存不了), 跳过
            out.append(chr(cp))
    return "".join(out)


def test_hand_worked_example():
    # "aaabdaaabac": (a,a) 出现 4 次最多 -> 256; 然后 "ZabdZabac" 里 (a,b) 和 (Z,a) 都是 2 次,
    # 平手取较小的对 (97,98) -> 257; 再合并 (256,257) -> 258, 得到 [258 d 258 a c]
    t = Tokenizer.train("aaabdaaabac", 256 + 3 + len(SPECIAL_TOKENS))
    assert t.merges == [(97, 97), (97, 98), (256, 257)]
    assert t.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_round_trip_random_unicode(tok):
    rng = random.Random(0)
    for _ in range(300):
        s = random_text(rng, rng.randint(0, 40))
        assert tok.decode(tok.encode(s)) == s


@pytest.mark.parametrize("s", TRICKY)
def test_round_trip_tricky(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.decode_bytes(ids) == s.encode("utf-8")


def test_round_trip_corpus_and_compression(tok):
    assert tok.decode(tok.encode(CORPUS)) == CORPUS
    # 训练过的汉字各是一个 token (不会剩下零散的字节); 英文学出了整词 token
    zh = "北京是中国的首都, 上海是中国最大的城市。"
    assert len(tok.encode(zh)) < len(zh.encode("utf-8"))
    assert [tok.decode([i]) for i in tok.encode("北京")] == ["北", "京"]
    assert any(len(tok.decode([i]).strip()) >= 3 and tok.decode([i]).strip().isalpha() and tok.decode([i]).isascii()
               for i in range(tok.vocab_size))


def n_cjk(text):
    return sum("\u4e00" <= c <= "\u9fff" for c in text)


def assert_fast_path_is_plain_bpe(tok, texts):
    # encode 先按字符合并再做字符之间的合并; 结果必须和直接在字节上跑 BPE 一样
    for s in texts:
        for chunk in tok._regex.findall(s):
            assert tok._encode_chunk(chunk) == tok._bpe(list(chunk.encode("utf-8")))


def test_tokens_hold_at_most_max_cjk_chars(tok):
    # 不设上限时, 高频句式会和事实粘成一个 token ("最喜欢的颜色是黑色"); 一字一 token 时事实和句式永远分开
    assert MAX_CJK_PER_TOKEN == 1
    for i in range(tok.vocab_size - len(SPECIAL_TOKENS)):
        assert n_cjk(tok.decode([i])) <= MAX_CJK_PER_TOKEN
    t = Tokenizer.train("小明最喜欢的颜色是黑色。小红最喜欢的颜色是白色。" * 50, 400)
    pieces = [t.decode([i]) for i in t.encode("小明最喜欢的颜色是黑色。")]
    assert pieces == list("小明最喜欢的颜色是黑色。")



@pytest.mark.parametrize("max_cjk", [None, 2])
def test_train_max_cjk_for_the_comparison(max_cjk):
    """experiments.py tokenizer 用的对照: 放宽上限后句式和事实会粘在一起, 编码仍然无损, 快速路径仍等于逐字节 BPE。"""
    text = "小明最喜欢的颜色是黑色。小红最喜欢的颜色是白色。" * 50
    t = Tokenizer.train(text, 400, max_cjk=max_cjk)
    sizes = [n_cjk(t.decode([i])) for i in range(t.vocab_size - len(SPECIAL_TOKENS))]
    if max_cjk is None:
        assert max(sizes) > 2
        assert len(t.encode("小明最喜欢的颜色是黑色")) == 1  # 事实 "黑色" 锁在整句的 token 里
    else:
        assert max(sizes) == 2
    texts = [text[:40], "最喜欢的颜色是蓝色", CORPUS[:200]]
    assert all(t.decode(t.encode(s)) == s for s in texts)
    assert_fast_path_is_plain_bpe(t, texts)

def test_fast_path_equals_plain_byte_bpe(tok):
    rng = random.Random(1)
    assert_fast_path_is_plain_bpe(tok, CORPUS.split("\n")[:6] + [random_text(rng, 30) for _ in range(50)])


def test_digits_are_single_tokens(tok):
    ids = tok.encode("2024")
    assert [tok.decode([i]) for i in ids] == ["2", "0", "2", "4"]
    # 语料里有很多数字, 但词表里没有任何 token 含两个或更多数字
    for i in range(tok.vocab_size - len(SPECIAL_TOKENS)):
        assert sum(c.isdecimal() for c in tok.decode([i])) <= 1


def test_encode_never_produces_special_ids(tok):
    specials = set(tok.special_ids.values())
    for s in ["<|user|>hi<|endoftext|>", "".join(SPECIAL_TOKENS), CORPUS]:
        ids = tok.encode(s)
        assert not specials & set(ids)
        assert tok.decode(ids) == s
    assert len(tok.encode("<|user|>")) > 1


def test_special_ids(tok):
    ids = [tok.eot_id, tok.system_id, tok.user_id, tok.assistant_id, tok.pad_id]
    assert ids == [tok.special_ids[s] for s in SPECIAL_TOKENS]
    # 各占一个 id, 互不相同, 排在词表最后
    assert ids == list(range(tok.vocab_size - len(SPECIAL_TOKENS), tok.vocab_size))
    for s, i in tok.special_ids.items():
        assert tok.decode([i]) == s
    assert tok.decode([tok.user_id] + tok.encode("你好") + [tok.eot_id]) == "<|user|>你好<|endoftext|>"


def test_decode_rejects_out_of_range_ids(tok):
    for bad in [-100, -1, tok.vocab_size]:
        with pytest.raises(ValueError, match="不在词表范围"):
            tok.decode([bad])
    assert tok.decode(torch.tensor(tok.encode("ok"))) == "ok"  # tensor 也能直接解码


def test_decode_incomplete_utf8_is_replaced(tok):
    raw = "中".encode("utf-8")
    ids = list(raw[:2])  # 前两个字节本身就是 token id 0..255
    assert tok.decode_bytes(ids) == raw[:2]
    assert tok.decode(ids) == "\ufffd"


def test_train_is_deterministic(tok):
    again = Tokenizer.train(CORPUS, VOCAB)
    assert again.merges == tok.merges
    assert again.to_dict() == tok.to_dict()


def test_vocab_size(tok):
    assert tok.vocab_size == VOCAB
    assert len(tok.merges) == VOCAB - 256 - len(SPECIAL_TOKENS)
    assert max(tok.encode(CORPUS)) < tok.vocab_size - len(SPECIAL_TOKENS)
    assert Tokenizer.train("", 300).vocab_size == 256 + len(SPECIAL_TOKENS)  # 没有可合并的对就提前停
    with pytest.raises(SystemExit, match="vocab_size"):
        Tokenizer.train(CORPUS, 100)


def test_save_load_and_dict_round_trip(tok, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(str(path))
    loaded = Tokenizer.load(str(path))
    # to_dict 只含 JSON 类型, 能放进 weights_only=True 读取的 torch checkpoint
    torch.save({"tokenizer": tok.to_dict()}, tmp_path / "ckpt.pt")
    from_ckpt = Tokenizer.from_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"])
    from_json = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    texts = TRICKY + [CORPUS]
    for other in (loaded, from_ckpt, from_json):
        assert other.vocab_size == tok.vocab_size and other.special_ids == tok.special_ids
        assert [other.encode(s) for s in texts] == [tok.encode(s) for s in texts]


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="data.py --create_sample"):
        Tokenizer.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit, match="不是合法 JSON"):
        Tokenizer.load(str(bad))
    with pytest.raises(SystemExit, match="不是本课程的分词器"):
        Tokenizer.from_dict({"type": "something_else"})
    for name, text in [("deep.json", "[" * 100000), ("big.json", "1" * 5000), ("obj.json", '{"type": "x"}')]:
        (tmp_path / name).write_text(text, encoding="utf-8")  # 嵌套太深 (RecursionError)、超长整数 (ValueError)、内容不对
        with pytest.raises(SystemExit, match=f"分词器文件 {tmp_path / name} 不是"):
            Tokenizer.load(str(tmp_path / name))
    with pytest.raises(SystemExit, match="是目录, 不是分词器文件"):
        Tokenizer.load(str(tmp_path))
    (tmp_path / "t.jsonl").write_text('{"a": "x"}\n{"b": "y"}\n{oops\n' + "[" * 100000 + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"t.jsonl:3: 不是合法 JSON"):
        _read_text(str(tmp_path / "t.jsonl"))

    latin1 = tmp_path / "latin1.txt"  # tokenizer.py --text 读的基准文本: 不是 UTF-8 时一行 file:line
    latin1.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="latin1.txt:2: 不是 UTF-8"):
        _read_text(str(latin1))
    (tmp_path / "half.json").write_text('{"a": "x\\ud83d y"}', encoding="utf-8")  # 半个 emoji: json 解析得出, 编码时才崩
    with pytest.raises(SystemExit, match=r"half.json: 字符串 里有编不成 UTF-8 的字符"):
        _read_text(str(tmp_path / "half.json"))


def test_bench_on_empty_text_is_one_line(tmp_path, tok):
    """tokenizer.py --text 给了空文件: 一行报错、非零退出, 而不是三行 "跳过" 之后当作成功。"""
    tok.save(str(tmp_path / "tok.json"))
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "tokenizer.py", "--tokenizer", str(tmp_path / "tok.json"), "--text",
                        str(tmp_path / "empty.txt")], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.strip() == f"错误: {tmp_path / 'empty.txt'} 里没有可测的文字 (空文件?)。用 --text 换一个文件"
