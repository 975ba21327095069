"""样例世界 (sample_data.py) 的保证: 评测集真的是留出的, 答案键真的能判对错, 同一个种子逐字节可复现。

评测的意义全靠这几条: 评测提问从没在训练里出现过 (不计中性的系统提示; 留给评测的身份、反义词问题在任何系统提示下都没问过);
评测里的算式 (两个操作数, 不论顺序; 连同逆运算) 在 SFT 数据和预训练文本里都没出现过; knowledge_unlock 问到的人只在预训练文本里出现。
"""
import json
import os
import re
import subprocess
import sys

import pytest

import sample_data
from sample_data import (ATTRS, EVAL_COUNTS, GREETING_FIRST_SHARE, GREETINGS, TOPIC_FIRST_SHARE, create_sample,
                         make_people)

CATEGORIES = {"identity", "arithmetic", "knowledge", "knowledge_unlock", "text_task", "multi_turn", "system_prompt"}
# 测试自己的算式识别 (不复用 sample_data.ARITH_RE): "23加45"、"23 + 45"、"23 minus 5" 都算一对操作数
OPERATION = re.compile(r"(\d+)\s*(?:加上|加|减去|减|\+|-|plus|minus)\s*(\d+)")


def pairs_in(text):
    return {frozenset((int(a), int(b))) for a, b in OPERATION.findall(text)}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def prompts(conversation):
    """每个 assistant 回合之前的全部消息 (模型在训练里就是看着这些学回答的)。"""
    return [json.dumps(conversation[:i], ensure_ascii=False) for i, m in enumerate(conversation) if m["role"] == "assistant"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    info = create_sample(out_dir=str(out), seed=0)
    f = info["files"]
    return {"info": info, "dir": out, "train": read_jsonl(f["sft_train.jsonl"]), "eval": read_jsonl(f["sft_eval.jsonl"]),
            "pretrain": read_lines(f["pretrain.txt"]), "pretrain_eval": read_lines(f["pretrain_eval.txt"]),
            "people": make_people(0)}


def test_files_and_counts(world):
    info, train, evals = world["info"], world["train"], world["eval"]
    assert set(info["files"]) == {"sft_train.jsonl", "sft_eval.jsonl", "pretrain.txt", "pretrain_eval.txt"}
    assert all(os.path.isfile(p) for p in info["files"].values())
    c = info["counts"]
    assert c["sft_train.jsonl"] == len(train) and 4000 <= len(train) <= 6000
    assert c["sft_eval.jsonl"] == len(evals) == sum(EVAL_COUNTS.values()) == 600
    assert c["pretrain.txt"] == len(world["pretrain"]) and c["pretrain_eval.txt"] == len(world["pretrain_eval"])
    assert c["eval_categories"] == EVAL_COUNTS and set(EVAL_COUNTS) == CATEGORIES
    assert {r["category"] for r in evals} == CATEGORIES
    assert {r["category"] for r in train} == CATEGORIES - {"knowledge_unlock"} | {"greeting"}  # greeting 只在训练里
    assert sum(c["train_categories"].values()) == len(train)
    assert not [n for n in os.listdir(world["dir"]) if n.endswith(".tmp")]


def check_conversation(conv):
    assert isinstance(conv, list) and conv
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"].strip() for m in conv)
    roles = [m["role"] for m in conv]
    if roles[0] == "system":
        roles = roles[1:]
    # 系统提示最多一条且在最前; 之后 user / assistant 严格交替, 最后一轮是 assistant
    assert roles and len(roles) % 2 == 0 and roles == ["user", "assistant"] * (len(roles) // 2)


def test_record_schema(world):
    for r in world["train"]:
        assert set(r) == {"conversations", "category"}
        check_conversation(r["conversations"])
    for r in world["eval"]:
        assert set(r) == {"conversations", "category", "answer"}
        check_conversation(r["conversations"])
        assert isinstance(r["answer"], str) and r["answer"].strip()
        assert r["answer"] in r["conversations"][-1]["content"]
        # 答案不在最后一句提问里: 复述问题拿不到分
        assert r["answer"] not in r["conversations"][-2]["content"]


def test_eval_prompts_never_seen_in_training(world):
    train_prompts = {p for r in world["train"] for p in prompts(r["conversations"])}
    train_convs = {json.dumps(r["conversations"], ensure_ascii=False) for r in world["train"]}
    eval_prompts = [json.dumps(r["conversations"][:-1], ensure_ascii=False) for r in world["eval"]]
    assert len(set(eval_prompts)) == len(eval_prompts)
    assert not set(eval_prompts) & train_prompts
    assert not {json.dumps(r["conversations"], ensure_ascii=False) for r in world["eval"]} & train_convs


def test_eval_prompts_never_seen_in_training_even_with_another_neutral_system_prompt(world):
    """中性的系统提示 ("你是一个乐于助人的助手。" 之类) 不改变该怎么回答: 一道评测题和一条训练对话只差它 (有没有、是哪一句),
    模型看到的就还是同一道题。以前的检查比的是带系统提示的整个提示, 放过了一道 multi_turn 题。"""
    def plain(conversation):
        return [m for m in conversation if not (m["role"] == "system" and m["content"] in sample_data.NEUTRAL_SYSTEMS)]
    train_prompts = {p for r in world["train"] for p in prompts(plain(r["conversations"]))}
    eval_prompts = [json.dumps(plain(r["conversations"][:-1]), ensure_ascii=False) for r in world["eval"]]
    assert [p for p in eval_prompts if p in train_prompts] == []
    assert len(set(eval_prompts)) == len(eval_prompts)


def test_held_out_questions_never_asked_in_training(world):
    """身份和文字任务的问法有限, 评测那一份的问题一句也不能在训练里被问到: 不管前面有什么系统提示, 也不管训练里答的是什么。
    以前 "请用英文回答。" 下的训练题用了留出的 "谁创造了你？" (同一个事实, 英文作答), 改名的系统提示下用了留出的
    "你叫什么名字？" (答 "我叫土豆。"), 模型在没有系统提示时也跟着答 "我叫果果。"。"""
    asked = {m["content"] for r in world["train"] for m in r["conversations"] if m["role"] == "user"}
    held = [r["conversations"][-2]["content"] for r in world["eval"] if r["category"] in ("identity", "text_task")]
    assert [q for q in held if q in asked] == []


def test_rename_questions_are_also_asked_without_a_system_prompt(world):
    """改名的系统提示 ("你的名字叫果果。") 下问的每一句, 训练里也在没有系统提示时问过 (答 "我是小智……"): 同一句话,
    答什么由系统提示决定。只在改名时出现的问法, 模型会学成 "这么问就答一个别的名字", 没有系统提示也照答 "我叫果果。"。"""
    renames = {t.format(m=m) for t in sample_data.SYS_RENAME for m in sample_data.PERSONA_NAMES}
    plain = {r["conversations"][-2]["content"] for r in world["train"]
             if r["category"] == "identity" and r["conversations"][0]["role"] != "system"}
    asked = {r["conversations"][1]["content"] for r in world["train"] if r["conversations"][0]["content"] in renames}
    assert len(asked) >= 5 and asked <= plain, asked - plain


SAID = re.compile(r"(\d+)\s*(加上|加|减去|减|\+|-|plus|minus)\s*(\d+)\s*(?:等于|equals|=|得|是)\s*(\d+)")


def facts(text):
    """每个说出的算式化成 "a + b = c" 的 (a, b, c): 减法 a - b = c 就是 b + c = a。"""
    return {(int(a), int(b), int(c)) if op in ("加上", "加", "+", "plus") else (int(b), int(c), int(a))
            for a, op, b, c in SAID.findall(text)}


def trained_facts(text):
    """训练文字里说过的算式 (facts), 连同交换两个加数的写法: 说过 37+8=45, 8+37=45 也就等于说过了。"""
    said = facts(text)
    return said | {(b, a, c) for a, b, c in said}


def test_no_eval_equation_has_its_inverse_in_training(world):
    """留出的算式对之外, 加减互逆也要避开: 评测问 "45减37" (等于8), 训练里就不能说过 "45减8等于37" 或 "37加8等于45"。"""
    trained = trained_facts("\n".join(world["pretrain"] + [m["content"] for r in world["train"] for m in r["conversations"]]))
    n = 0
    for r in world["eval"]:
        for a, b, c in facts(r["conversations"][-1]["content"]):
            n += 1
            assert (a, b, c) not in trained, r
    assert n >= EVAL_COUNTS["arithmetic"]


def test_arithmetic_only_data_avoids_eval_pairs_and_inverses(world):
    """experiments.py arithmetic 只练算术的训练题守同样的两条规则: 没有评测的算式对, 也没有评测算式的逆运算。"""
    from experiments import arithmetic_only_records
    records = arithmetic_only_records(world["eval"], 3000)
    assert len(records) == 3000
    text = "\n".join(r["conversations"][-1]["content"] for r in records)
    trained = trained_facts(text)
    evals = "\n".join(r["conversations"][-1]["content"] for r in world["eval"] if r["category"] == "arithmetic")
    assert facts(evals) and not facts(evals) & trained
    assert not pairs_in(evals) & pairs_in(text)


def test_drill_equations_avoid_eval_pairs_and_the_inverses_of_what_is_asked(world):
    """experiments.py drills 加进预训练文本的算式也守这两条: 没有评测的算式对; 评测里的算式和底座要接的 600 道留出算式,
    连同它们的逆运算, 一道也没说过 (否则 "底座接留出算式" 量的就有一部分是背下来的逆运算)。"""
    from experiments import drill_paragraphs, heldout_probes
    w = sample_data.World(0)
    text = drill_paragraphs(w, world["eval"], 200)
    asked = "\n".join([m["content"] for r in world["eval"] for m in r["conversations"]]
                      + [f"{a}{op}{b}={c}" for a, op, b, c in heldout_probes(w)])
    assert len(facts(text)) > 1000 and len(facts(asked)) > 600 and not facts(asked) & trained_facts(text)
    assert not pairs_in(asked) & pairs_in(text)


def test_held_out_questions_never_answered_in_training_even_under_a_system_prompt(world):
    """上一个测试比的是整个提示; 这里只比 (问题, 回答) 这一对, 去掉系统提示要求的 "好的，"/"喵～" 标记
    (experiments.leaked_items, experiments.py strict 也用它): 本该留出的几类里, 评估题的问答不能在训练数据里出现,
    哪怕前面多了一句系统提示。"""
    from experiments import leaked_items
    leaked = leaked_items(world["eval"], [r["conversations"] for r in world["train"]])
    assert [world["eval"][i]["conversations"][-2]["content"] for i in leaked] == []


def test_some_conversations_open_with_another_turn(world):
    """开场轮: 约 1/5 的训练对话先有一轮问候、约 15% 先有一道不相干的问答, 然后才是正题。系统提示那一类不加,
    本身就是问候的身份问答也不加; 别的身份问答要加 (没有它时, 模型在 "你好" 之后被问 "你叫什么名字？", 答的是系统提示题里的名字)。
    去掉开场轮 (experiments.py topic 的对照组) 时, 其余对话逐字节不变; 评测集里没有开场轮。
    (开场轮只用训练那一半的问法、人物和算式: 上面和下面的泄露测试管着。)"""
    with_openings = sample_data.build_sft(sample_data.World(0))
    assert with_openings == world["train"]  # create_sample 写出的就是它
    plain = sample_data.build_sft(sample_data.World(0), openings=False)
    replies = {g[2] for g in GREETINGS}
    eligible = [r["category"] != "system_prompt" and r["conversations"][-1]["content"] not in replies for r in plain]
    kinds = []
    for rec, ctrl in zip(with_openings, plain):
        conv, base = rec["conversations"], ctrl["conversations"]
        assert rec["category"] == ctrl["category"]
        if conv == base:
            kinds.append("none")
            continue
        i = 1 if base[0]["role"] == "system" else 0
        assert rec["category"] != "system_prompt" and base[-1]["content"] not in replies and len(conv) == len(base) + 2
        assert conv[:i] + conv[i + 2:] == base and [m["role"] for m in conv[i:i + 2]] == ["user", "assistant"]
        assert conv[i]["content"].isascii() == base[i]["content"].isascii()  # 开场轮和正题同一种语言
        kinds.append("greeting" if conv[i + 1]["content"] in replies else "topic")
    for cats in (None, {"identity"}):  # 全部能加的对话, 以及单看身份问答 (它用自己的一条随机流)
        rest = [k for k, r, ok in zip(kinds, plain, eligible) if ok and (cats is None or r["category"] in cats)]
        assert abs(rest.count("greeting") / len(rest) - GREETING_FIRST_SHARE) < 0.03
        assert abs(rest.count("topic") / len(rest) - TOPIC_FIRST_SHARE) < 0.03
    rounds = [[m for m in r["conversations"] if m["role"] != "system"] for r in world["eval"]]
    assert not any(c[1]["content"] in replies for c in rounds if len(c) > 2)  # 问候在前 (后面还有别的回合) 的对话只在训练里


def test_arithmetic_eval_pairs_never_in_any_training_text(world):
    seen = pairs_in("\n".join(world["pretrain"]))
    seen |= pairs_in("\n".join(m["content"] for r in world["train"] for m in r["conversations"]))
    for r in world["eval"]:
        pairs = pairs_in("\n".join(m["content"] for m in r["conversations"]))
        assert not pairs & seen, r
        if r["category"] == "arithmetic":
            (a, b), = OPERATION.findall(r["conversations"][-2]["content"])
            assert min(int(a), int(b)) >= 10  # 评测的是两位数
            # 参考回答算得对; 答案键是结论 "等于c" (要说出结论), c 也不等于哪个操作数 (否则复述题目也 "包含答案")
            ref = r["conversations"][-1]["content"]
            c = int(a) + int(b) if ("加" in ref or "plus" in ref) else int(a) - int(b)
            assert r["answer"] in (f"等于{c}", f"equals {c}") and str(c) not in (a, b)


def test_numeric_answers_have_digit_boundaries(world):
    # evaluate.py 按 "数字边界" 匹配数字答案: 参考回答里答案前后不能紧挨着别的数字
    for r in world["eval"]:
        key = r["answer"]
        if key[-1].isdigit():
            ref = r["conversations"][-1]["content"]
            before = r"(?<!\d)" if key[0].isdigit() else ""
            assert re.search(rf"{before}{re.escape(key)}(?!\d)", ref), r


def test_unlock_people_only_in_pretraining(world):
    people = world["people"]
    names = [p["name"] for p in people]
    assert len(names) == len(set(names)) == sample_data.N_PEOPLE and all(len(n) == 3 for n in names)
    unlock = [p for p in people if not p["seen"]]
    seen = [p for p in people if p["seen"]]
    assert len(unlock) == len(seen) == sample_data.N_PEOPLE // 2
    train_text = json.dumps(world["train"], ensure_ascii=False)
    assert not [p["name"] for p in unlock if p["name"] in train_text]
    assert all(p["name"] in train_text for p in seen)
    by_name = {p["name"]: p for p in people}
    asks = {a: s["ask"] for a, s in ATTRS.items()}
    for r in world["eval"]:
        text = json.dumps(r["conversations"], ensure_ascii=False)
        mentioned = [n for n in names if n in text]
        if r["category"] == "knowledge_unlock":
            (name,) = mentioned
            person = by_name[name]
            assert not person["seen"]
            # 用训练里的问法问新的人, 答案就是这个人在预训练文本里的属性值
            question = r["conversations"][-2]["content"].replace(name, "{n}")
            attr = next(a for a in ATTRS if question in asks[a])
            assert r["answer"] == person[attr]
        elif r["category"] in ("knowledge", "multi_turn") and mentioned:
            assert all(by_name[n]["seen"] for n in mentioned)


def test_knowledge_eval_uses_heldout_phrasings(world):
    any_name = re.compile("|".join(p["name"] for p in world["people"]))
    train_questions = {any_name.sub("{n}", m["content"]) for r in world["train"] for m in r["conversations"]
                       if m["role"] == "user"}
    heldout = {t for s in ATTRS.values() for t in s["ask_heldout"]}
    assert not heldout & train_questions
    eval_questions = {any_name.sub("{n}", r["conversations"][-2]["content"]) for r in world["eval"]
                      if r["category"] == "knowledge"}
    assert eval_questions == heldout  # 评测只用留出的问法, 而且每种都用到了


def test_multi_turn_needs_the_previous_turn(world):
    names = [p["name"] for p in world["people"]]
    for r in world["eval"]:
        if r["category"] == "multi_turn":
            turns = [m for m in r["conversations"] if m["role"] != "system"]
            assert len(turns) == 4
            last = turns[-2]["content"]
            # 追问里既没有人名也没有完整算式: 不看上一轮就不知道问的是谁、在什么上加减
            assert not any(n in last for n in names) and not OPERATION.search(last)


def test_pretrain_mentions_every_person_in_full(world):
    lines = world["pretrain"]
    for p in world["people"]:
        mine = [line for line in lines if p["name"] in line]
        assert len(mine) >= sample_data.BIOS_PER_PERSON
        for line in mine:
            # 每句话都带全名, 每段小传都写全这个人的所有属性
            assert all(p["name"] in s for s in line.split("。") if s)
            assert all(p[a] in line for a in ATTRS)


def test_pretrain_is_plain_prose(world):
    lines, held = world["pretrain"], world["pretrain_eval"]
    text = "\n".join(lines + held)
    # 没有对话模板: 怎么当助手说话是 SFT 要教的。日常问句可以有 (底座得认识这些字), 但没有一句问到虚构人物:
    # 把预训练存下的人物事实 "问出来" 也是 SFT 要教的
    assert "<|" not in text
    names = [p["name"] for p in world["people"]]
    assert not [line for line in lines + held if ("？" in line or "?" in line) and any(n in line for n in names)]
    assert all(line.strip() == line and line for line in lines + held)
    assert 50_000 <= sum(map(len, lines)) <= 2_000_000
    # 留出的段落是新句子组合, 不是训练段落的拷贝
    assert len(held) >= 100 and not set(held) & set(lines)
    assert sum(line.isascii() for line in lines) > 0.05 * len(lines)


def test_answer_keys_are_unambiguous():
    values = [v for s in ATTRS.values() for v in s["values"]]
    # 一个属性值不能是另一个的子串, 否则 "回复包含答案" 会把错答判对
    assert not [(a, b) for a in values for b in values if a != b and a in b]
    # 反义词表和词典都是一一对应: 每个词只出现一次, 问题才只有一个正确答案
    for words in ([w for pair in sample_data.ANTONYMS for w in pair], *zip(*sample_data.WORDS)):
        assert len(set(words)) == len(words)
    en = [e for _, e in sample_data.WORDS]
    assert not [(a, b) for a in en for b in en if a != b and a in b]
    names = [p["name"] for p in make_people(0)]
    assert not [n for n in names if any(v in n for v in values)]
    persona = sample_data.PERSONA_NAMES
    assert not [(a, b) for a in persona for b in persona if a != b and a in b]


def test_repeat_key_rejects_wrong_counts(world):
    for r in world["eval"]:
        if r["answer"].startswith("："):
            word_times = r["answer"][1:-1]
            ref = r["conversations"][-1]["content"]
            k = int(re.search(r"\d", ref).group())
            word = word_times[: len(word_times) // k]
            assert r["answer"] not in ref.replace(word_times, word_times + word)
            assert r["answer"] not in ref.replace(word_times, word_times[len(word):])


def test_language_mix(world):
    def english(r):
        reply = "".join(m["content"] for m in r["conversations"] if m["role"] == "assistant")
        return sum(ch.isascii() for ch in reply) > 0.7 * len(reply)
    share = sum(map(english, world["train"])) / len(world["train"])
    assert 0.12 <= share <= 0.3


def test_same_seed_same_bytes_even_with_other_hash_seed(world, tmp_path):
    def read_all(d):
        return {n: open(os.path.join(d, n), "rb").read() for n in world["info"]["files"]}
    create_sample(out_dir=str(tmp_path / "again"), seed=0)
    assert read_all(tmp_path / "again") == read_all(world["dir"])
    # 另开一个进程、换一个字符串哈希种子: 生成过程不能依赖 set 的遍历顺序
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sample_data; sample_data.create_sample({str(tmp_path / 'proc')!r}, 0)"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert read_all(tmp_path / "proc") == read_all(world["dir"])
    create_sample(out_dir=str(tmp_path / "other"), seed=1)
    assert read_all(tmp_path / "other")["sft_train.jsonl"] != read_all(world["dir"])["sft_train.jsonl"]


def test_out_dir_that_is_a_file(tmp_path):
    path = tmp_path / "not_a_dir"
    path.write_text("x")
    with pytest.raises(SystemExit, match="错误: 输出位置 .* 已存在但不是文件夹"):
        create_sample(out_dir=str(path))


def test_create_sample_does_not_overwrite_other_data(tmp_path):
    """重新生成同样的数据照常进行; 已有文件内容不同 (用户改过、或别的 seed) 时一个也不写, 除非 overwrite。"""
    import data
    data.create_sample(str(tmp_path), 0, 300)
    data.create_sample(str(tmp_path), 0, 300)  # run_lesson.sh 每次都重新生成: 内容相同, 不报错
    mine = tmp_path / "sft_train.jsonl"
    mine.write_text("my own data\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=f"{mine} 已经存在, 内容和要生成的示例数据不同.*python data.py --create_sample --overwrite"):
        data.create_sample(str(tmp_path), 0, 300)
    assert mine.read_text(encoding="utf-8") == "my own data\n"
    data.create_sample(str(tmp_path), 0, 300, overwrite=True)
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match="tokenizer.json 已经存在"):
        data.create_sample(str(tmp_path), 0, 300)


def test_tokens_fit_and_are_all_pretrained(tmp_path):
    # 用课程里真正的流程 (data.py --create_sample: 生成数据 + 在预训练文本上训练分词器) 编码每一条对话
    import data
    data.create_sample(str(tmp_path), 0, 1536)
    tok = data.load_tokenizer(str(tmp_path / "tokenizer.json"))
    pretrained = {i for line in read_lines(tmp_path / "pretrain.txt") for i in tok.encode(line)}
    for name in ("sft_train.jsonl", "sft_eval.jsonl"):
        encoded = [data.render_chat(r["conversations"], tok)[0] for r in read_jsonl(tmp_path / name)]
        # 都不超过默认的 max_length=256: 训练和评测时没有哪条会被截掉回合
        assert max(map(len, encoded)) <= 256
        if name == "sft_train.jsonl":
            # SFT 里的每个普通 token 底座都在预训练里见过 (特殊 token 除外): 冻结 embedding 的 LoRA 才分得清它们
            unseen = {i for ids in encoded for i in ids if i < tok.eot_id} - pretrained
            assert not unseen, [tok.decode([i]) for i in sorted(unseen)]


def test_disk_full_while_writing_is_one_line(tmp_path, monkeypatch):
    """data.py --create_sample 写到分词器时磁盘满了: 一行错误, 说出是哪个文件; 已经写好的数据文件完整, 没有留下临时文件。"""
    import errno
    import data
    real = sample_data.write_atomically

    def disk_full(f):
        f.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_at_tokenizer(path, write, *args, **kwargs):
        return real(path, disk_full if path.endswith("tokenizer.json") else write, *args, **kwargs)
    monkeypatch.setattr(sample_data, "write_atomically", full_at_tokenizer)
    with pytest.raises(SystemExit, match=r"^错误: 写不了 .*tokenizer.json \(No space left on device\)。检查磁盘空间") as e:
        data.create_sample(str(tmp_path), 0, 300)
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["pretrain.txt", "pretrain_eval.txt", "sft_eval.jsonl", "sft_train.jsonl"]


def test_facts_experiment_data(world):
    """experiments.py facts: 课程的 SFT 数据从没问过、也没说过这些常识 (README 第 8 节); 对照组加的问答只问 "练过" 那一半,
    留出那一半的国家和城市在加的问答里一次也不出现; 每道评估题的答案在参考回复里; 底座续写的开头接上值, 就是参考回复的开头。"""
    from experiments import FACT_HALVES, FACT_KINDS, facts_records, world_facts
    train, evals, probes = facts_records()
    lesson = [m["content"] for r in world["train"] for m in r["conversations"]]
    for r in evals:
        question, reply = (m["content"] for m in r["conversations"])
        assert r["answer"] in reply and r["category"].split("/")[0] in FACT_HALVES
        assert question not in lesson and not any(reply in text for text in lesson), question
    for _, prefix, _ in probes:  # 连 "中国的首都是" 这样的半句也没说过 (问 "北京是哪个国家的首都？" 也没有)
        assert not any(prefix in text for text in lesson), prefix
    held_out = [(row.get("country") or row["city"], row[field]) for half, kind, row in world_facts() if half == "留出"
                for field in [FACT_KINDS[kind][1]]]
    added = json.dumps(train, ensure_ascii=False)
    # 留出的国家和城市不出现, 它们的答案也不出现 (英国的 "英语" 若是练过的值, 照抄练过的值也算答对)
    assert held_out and not [x for pair in held_out for x in pair if x in added]
    trained_replies = {r["conversations"][-1]["content"] for r in train}
    assert trained_replies == {r["conversations"][-1]["content"] for r in evals if r["category"].startswith("练过/")}
    assert len(evals) == 3 * len(probes) and sum(r["category"].startswith("留出/") for r in evals) == len(evals) // 2
    for category, prefix, value in probes:
        assert any(r["category"] == category and r["conversations"][-1]["content"].startswith(prefix + value) for r in evals)
