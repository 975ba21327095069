"""evaluate.py 的测试: 打分规则、用假模型验证准确率和停止率、困惑度、命令行端到端与报错路径。

假模型 (有 generate 方法的 nn.Module) 让我们知道 "正确答案" 是什么: 一个总答对的模型必须得 100%,
一个从不说 <|endoftext|> 的模型停止率必须是 0。真模型只用随机初始化的 tiny 模型跑通流程, 不看分数。
"""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import data
from checkpoint import save_adapter, save_model
import evaluate
from evaluate import evaluate_model, load_eval_records, perplexity, print_samples, score
from lora import apply_lora, base_fingerprint
from model import GPT, get_config
from tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEOPLE = {"小明": ("北京", 23), "小红": ("上海", 31), "Lucy": ("Paris", 182), "阿花": ("杭州", 8)}


def make_records():
    """两个类别: 算术 (单轮) 和人物知识 (两轮, 第一轮是已给出的历史)。"""
    recs = []
    for a, b in [(12, 70), (45, 37), (8, 9)]:
        recs.append({"conversations": [{"role": "user", "content": f"{a}加{b}等于多少？"},
                                       {"role": "assistant", "content": f"{a}加{b}等于{a + b}。"}],
                     "category": "arithmetic", "answer": str(a + b)})
    for name, (city, age) in PEOPLE.items():
        recs.append({"conversations": [{"role": "system", "content": "你是一个助手。"},
                                       {"role": "user", "content": f"{name}住在哪里？"},
                                       {"role": "assistant", "content": f"{name}住在{city}。"},
                                       {"role": "user", "content": f"{name}几岁？"},
                                       {"role": "assistant", "content": f"{name}今年{age}岁。"}],
                     "category": "knowledge", "answer": str(age)})
    return recs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """分词器、两个随机 tiny 模型、一个 B=0 的 LoRA 适配器、评估集和预训练留出文本, 都在临时目录里。"""
    root = tmp_path_factory.mktemp("eval")
    recs = make_records()
    prose = [f"{n}住在{c}, 今年{a}岁, 喜欢苹果和 bananas。" for n, (c, a) in PEOPLE.items()] * 8
    tok = Tokenizer.train("\n".join(prose) + json.dumps(recs, ensure_ascii=False), 300)
    (root / "pretrain_eval.txt").write_text("\n".join(prose), encoding="utf-8")
    with open(root / "sft_eval.jsonl", "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_model(str(root / f"m{seed}.pt"), GPT(get_config("tiny", vocab_size=tok.vocab_size)), tok)
    # 刚初始化的适配器 (B = 0) 与底座完全等价: 评估结果必须和 m0 一字不差
    torch.manual_seed(0)
    base = GPT(get_config("tiny", vocab_size=tok.vocab_size))
    fingerprint = base_fingerprint(base)
    wrapped = apply_lora(base, "q_proj,v_proj", r=2, alpha=4, dropout=0.0)
    save_adapter(str(root / "adapter.pt"), base, {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": wrapped},
                 str(root / "m0.pt"), fingerprint)
    return root, tok, recs


def lively_tiny_model(tok, **overrides):
    """随机 tiny GPT, 矩阵放大到 std 0.3 (和 test_model.make_lively_model 一样的做法): 刚初始化的 (std 0.02) 贪心生成时
    只会重复同一个 token, 位置、顺序、续写算错了都看不出来。"""
    torch.manual_seed(0)
    model = GPT(get_config("tiny", vocab_size=tok.vocab_size, **overrides))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


class ScriptedModel(torch.nn.Module):
    """假模型: 按 prompt 里的问题查表作答。stop=False 时从不说 <|endoftext|>, 一直说到 token 上限。"""

    def __init__(self, tok, answers, stop=True, first=(), max_seq_len=256):
        super().__init__()
        self.tok, self.answers, self.stop, self.first = tok, answers, stop, list(first)
        self.config = SimpleNamespace(max_seq_len=max_seq_len)
        self.prompts = []

    def generate(self, input_ids, max_new_tokens, temperature, eos_id, **kwargs):
        assert temperature == 0 and eos_id == self.tok.eot_id
        self.prompts.append(list(input_ids))
        last_question = self.tok.decode(input_ids).split("<|user|>")[-1]
        reply = next((a for q, a in self.answers.items() if q in last_question), "不知道")
        ids = self.first + self.tok.encode(reply)  # first: 回答之前先吐出的 token (如一个角色标签)
        if self.stop:
            yield from (ids + [eos_id])[:max_new_tokens]
        else:
            yield from (ids * max_new_tokens)[:max_new_tokens]

    def greedy_batch(self, prompts, max_new_tokens, stop_ids):
        """和 GPT.greedy_batch 同样的约定: 每条 (回答, 结束它的 token 或 None)。"""
        assert len({len(p) for p in prompts}) == 1 and len(prompts[0]) + max_new_tokens - 1 <= self.config.max_seq_len
        out = []
        for p in prompts:
            ids = list(self.generate(p, max_new_tokens, 0, self.tok.eot_id))
            stop = next((i for i, t in enumerate(ids) if t in stop_ids), None)
            out.append((ids, None) if stop is None else (ids[:stop], ids[stop]))
        return out


def oracle_answers(recs):
    return {r["conversations"][-2]["content"]: r["conversations"][-1]["content"] for r in recs}


def test_score_digit_boundaries_and_case():
    assert score("12加70等于82。", "82")
    assert score("82", "82") and score("答案: 82岁", "82") and score("x82y", "82")
    assert not score("等于182。", "82")  # 前面紧挨着数字
    assert not score("等于820。", "82")  # 后面紧挨着数字
    assert not score("13.5", "3.5") and score("约 3.5 米", "3.5")
    assert not score("26减22等于4.5。", "等于4") and not score("0.82", "82")  # 小数的一部分
    assert score("26减22等于4。", "等于4") and score("It equals 4.", "equals 4")  # 句末的点不是小数点
    assert score("她住在 PARIS。", "Paris") and score("paris", "Paris")
    assert score("住在北京", "北京") and not score("住在南京", "北京")
    assert score("a+b(c)", "a+b(c)")  # answer 里的正则符号按字面匹配
    assert not score("任何回复", "") and not score("", "82")


def test_reference_replies_score_full_marks(tmp_path):
    """打分规则不能比数据更严: 示例评估集里每条参考回复都必须被判为对, 否则满分根本不可能。"""
    sample_data = pytest.importorskip("sample_data")
    info = sample_data.create_sample(out_dir=str(tmp_path), seed=0)
    records = load_eval_records(info["files"]["sft_eval.jsonl"])
    assert {"arithmetic", "knowledge_unlock"} <= {r["category"] for r in records}
    # --limit 50 的快速试跑也覆盖每一类 (评估集按类别排好, 只取开头 50 条就只有前两类)
    for limit in (50, 350):
        picked = load_eval_records(info["files"]["sft_eval.jsonl"], limit)
        assert len(picked) == limit and {r["category"] for r in picked} == {r["category"] for r in records}
    assert all(score(r["conversations"][-1]["content"], r["answer"]) for r in records)
    # experiments.py strict 的规则也不比数据更严 (人名、属性值来自同一个示例世界)
    from experiments import strict_miss
    names = sorted((p["name"] for p in sample_data.make_people()), key=len, reverse=True)
    values = sorted({v for a in sample_data.ATTRS.values() for v in a["values"]}, key=len, reverse=True)
    assert all(strict_miss(r, r["conversations"][-1]["content"], names, values) is None for r in records)


def test_oracle_model_scores_one(world):
    """总是答对的模型: 准确率 100%, 停止率 100%; 喂给模型的 prompt 不含参考回复。"""
    _, tok, recs = world
    model = ScriptedModel(tok, oracle_answers(recs))
    res = evaluate_model(model, tok, recs, max_new_tokens=32, progress=False)
    assert res["overall"] == 1.0 and res["stop_rate"] == 1.0 and res["n"] == len(recs)
    assert res["categories"] == {"arithmetic": 1.0, "knowledge": 1.0}
    expected = [data.render_chat(rec["conversations"][:-1], tok, add_generation_prompt=True)[0] for rec in recs]
    assert sorted(model.prompts) == sorted(expected)  # 每条问一次 (一样长的凑成一批, 顺序按长度)
    for rec, prompt in zip(recs, expected):
        assert rec["conversations"][-1]["content"] not in tok.decode(prompt)


def test_stop_rate_and_per_category(world):
    """从不停下的模型停止率为 0; 只会算术的模型只在算术上得分。"""
    _, tok, recs = world
    never_stops = ScriptedModel(tok, oracle_answers(recs), stop=False)
    res = evaluate_model(never_stops, tok, recs, max_new_tokens=5, progress=False)
    assert res["stop_rate"] == 0.0
    for rec, r in zip(recs, res["results"]):  # 截断的回复原样保留 (没有结束符可去掉)
        assert r["reply"] == tok.decode((tok.encode(rec["conversations"][-1]["content"]) * 5)[:5])
    arithmetic_only = {q: a for q, a in oracle_answers(recs).items() if "加" in q}
    res = evaluate_model(ScriptedModel(tok, arithmetic_only), tok, recs, max_new_tokens=32, progress=False)
    assert res["categories"] == {"arithmetic": 1.0, "knowledge": 0.0}
    assert res["overall"] == pytest.approx(3 / 7) and res["stop_rate"] == 1.0


def test_text_after_a_role_token_is_not_scored(world, capsys):
    """和 chat.py 一样, 任何特殊 token 都结束回答: 先说 <|user|> 再说出答案的模型, 用户看到的是空回答, 不能得分;
    它也不算 "自己停下"。"""
    _, tok, recs = world
    model = ScriptedModel(tok, oracle_answers(recs), first=[tok.user_id])
    res = evaluate_model(model, tok, recs, max_new_tokens=32, progress=False)
    assert res["overall"] == 0.0 and res["stop_rate"] == 0.0
    assert all(r["reply"] == "" and r["stop"] == "<|user|>" for r in res["results"])
    print_samples(res["results"], 1, 32)  # 样例说出它是怎么停的, 而不是 "在 32 token 处截断"
    assert "而是说了特殊 token <|user|>" in capsys.readouterr().out


def test_prompt_longer_than_the_window_is_counted(world):
    """提示加上回答上限超出模型的窗口: 模型会看不到提示的开头 (generate 从左边丢)。评估照常, 但数出来提醒。"""
    _, tok, recs = world
    fits = evaluate_model(ScriptedModel(tok, oracle_answers(recs)), tok, recs, max_new_tokens=32, progress=False)
    longest = max(len(data.render_chat(r["conversations"][:-1], tok, add_generation_prompt=True)[0]) for r in recs)
    assert fits["too_long"] == 0
    # 提示 + 32 个新 token 恰好比窗口多 1 个时窗口还不用动 (最后一个 token 不再喂回模型); 多 2 个才会丢掉提示的开头
    just_fits = ScriptedModel(tok, oracle_answers(recs), max_seq_len=longest + 31)
    assert evaluate_model(just_fits, tok, recs, max_new_tokens=32, progress=False)["too_long"] == 0
    small = ScriptedModel(tok, oracle_answers(recs), max_seq_len=longest + 30)
    assert evaluate_model(small, tok, recs, max_new_tokens=32, progress=False)["too_long"] >= 1


def test_batches_of_equal_length_prompts_give_the_same_results(world):
    """真模型 (随机 tiny GPT): 一样长的提示凑成一批, 与一条一条解码结果相同, 而且按 records 的顺序返回。
    窗口放不下的 (这里把窗口调小) 改走 generate, 也照样和原来的顺序对上。"""
    _, tok, recs = world
    recs = [recs[i] for i in (0, 3, 1, 4, 2, 5, 6)]  # 一样长的不相邻: 按长度分组的顺序和原来的顺序不同
    # 刚初始化的模型只会重复最后一个 token (这里是 <|assistant|>, 回答全空); 放大了权重, 回答才各不相同
    model = lively_tiny_model(tok, max_seq_len=128)
    prompts = [data.render_chat(r["conversations"][:-1], tok, add_generation_prompt=True)[0] for r in recs]
    lengths = [len(p) for p in prompts]
    assert len(set(lengths)) < len(prompts) and sorted(lengths) != lengths  # 真有一样长的, 而且不是按长度排好的

    def replies_by_generate():  # 一条一条用 generate 贪心解码 (窗口放不下时它会滑动), 说出特殊 token 就结束
        out = []
        for p in prompts:
            free = list(model.generate(p, 12, temperature=0))
            out.append(tok.decode(free[:next((i for i, t in enumerate(free) if t in tok.special_ids.values()), len(free))]))
        return out
    one_by_one = evaluate_model(model, tok, recs, max_new_tokens=12, progress=False, batch_size=1)["results"]
    assert [r["reply"] for r in one_by_one] == replies_by_generate()  # batch_size=1 也走 greedy_batch
    assert len({r["reply"] for r in one_by_one}) == len(recs)  # 每条回答都不一样: 顺序错了看得出来
    assert [r["question"] for r in one_by_one] == [r["conversations"][-2]["content"] for r in recs]
    batched = evaluate_model(model, tok, recs, max_new_tokens=12, progress=False)
    assert batched["results"] == one_by_one and batched["too_long"] == 0
    model.config.max_seq_len = max(lengths) + 8  # 最长的一条放不下 12 个新 token 了 (改走 generate), 别的还放得下
    mixed = evaluate_model(model, tok, recs, max_new_tokens=12, progress=False)
    assert mixed["too_long"] == lengths.count(max(lengths)) and [r["reply"] for r in mixed["results"]] == replies_by_generate()


def test_random_model_perplexity_is_about_vocab_size(world):
    """刚初始化的模型对下一个 token 几乎一无所知: 困惑度应当接近词表大小。"""
    root, tok, _ = world
    torch.manual_seed(0)
    model = GPT(get_config("tiny", vocab_size=tok.vocab_size))
    ppl = perplexity(model, tok, str(root / "pretrain_eval.txt"), max_blocks=4)
    assert abs(ppl - tok.vocab_size) / tok.vocab_size < 0.1


def test_load_eval_records_skips_bad(tmp_path, capsys):
    path = tmp_path / "e.jsonl"
    good = make_records()[0]
    path.write_text("\n".join([json.dumps(good), "{坏的 json", json.dumps({**good, "answer": ""}), json.dumps(good),
                               json.dumps({**good, "answer": "\ud83d"}), json.dumps({**good, "category": "x\ud83d"})]),
                    encoding="utf-8")
    assert len(load_eval_records(str(path))) == 2 and len(load_eval_records(str(path), limit=1)) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:" in err
    # 落单的代理项打印结果时才会 UnicodeEncodeError: 和别的坏记录一样按 file:line 报告后跳过
    assert f"{path}:5: answer 里有编不成 UTF-8 的字符" in err and f"{path}:6: category 里有编不成 UTF-8" in err


def test_answer_can_be_a_list_of_keys_all_required(tmp_path, capsys):
    """answer 是列表时每个关键串都要出现: 说对了城市、却说成了别人, 不算对。空列表、列表里有空串的记录按坏记录跳过。"""
    assert score("朱欣霞出生在昆明。", ["朱欣霞", "昆明"])
    assert not score("陶文俊出生在昆明。", ["朱欣霞", "昆明"]) and not score("任何回复", [])
    assert score("45减44等于1。", ["45减44", "等于1"]) and not score("44减44等于1。", ["45减44", "等于1"])
    path = tmp_path / "e.jsonl"
    good = make_records()[0]
    path.write_text("\n".join(json.dumps({**good, "answer": a}) for a in (["小智", "星火"], [], ["小智", ""], ["x", 5], ["x", None])),
                    encoding="utf-8")
    records = load_eval_records(str(path))
    assert [r["answer"] for r in records] == [["小智", "星火"], ["x", "5"]]
    err = capsys.readouterr().err
    assert f"{path}:2: answer 是空列表" in err and f"{path}:3: answer 是空的" in err  # 不是 "缺少 answer": 它在, 只是空的
    assert f"{path}:5: answer 列表里有一项是 null" in err
    print_samples([{"category": "c", "question": "q", "answer": ["小智", "星火"], "reply": "r", "correct": False,
                    "stopped": True, "stop": "<|endoftext|>"}], 1, 8)
    assert "期望包含: 小智 + 星火" in capsys.readouterr().out


def test_training_file_as_eval_set_names_the_missing_answer(tmp_path, capsys):
    """把训练集 (记录没有 answer) 当评估集: 对话格式都对, data.py --check 会说文件没问题, 所以错误要直接说出缺的是 answer。"""
    path = tmp_path / "train.jsonl"
    rec = {"conversations": make_records()[0]["conversations"]}
    path.write_text("\n".join([json.dumps(rec)] * 25), encoding="utf-8")
    with pytest.raises(SystemExit, match=f"^错误: {path} 里没有一条可用的记录 \\(例如: 缺少 answer") as e:
        load_eval_records(str(path))
    assert "data.py --check" not in str(e.value) and "data.py --check" not in capsys.readouterr().err


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_two_checkpoints_and_adapter(world):
    root, _, _ = world
    out = root / "out.json"
    r = run_cli(str(root / "m0.pt"), str(root / "m1.pt"), str(root / "adapter.pt"),
                "--data_path", str(root / "sft_eval.jsonl"), "--ppl_path", str(root / "pretrain_eval.txt"),
                "--limit", "5", "--max_new_tokens", "8", "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text(encoding="utf-8"))
    assert list(res) == [str(root / "m0.pt"), str(root / "m1.pt"), str(root / "adapter.pt")]
    for m in res.values():
        assert set(m) == {"overall", "categories", "stop_rate", "pretrain_ppl", "n"}
        assert m["n"] == 5 and set(m["categories"]) == {"arithmetic", "knowledge"}
        assert 0 <= m["overall"] <= 1 and 0 <= m["stop_rate"] <= 1 and m["pretrain_ppl"] > 1
    assert res[str(root / "adapter.pt")] == res[str(root / "m0.pt")]  # B = 0 的适配器等于底座
    table = r.stdout[r.stdout.index("总体"):]
    assert "停止率" in table and "预训练困惑度" in table
    if (os.cpu_count() or 1) > 1:
        assert "个进程并行" in r.stdout
    # 并行 (每个 checkpoint 一个子进程) 与单独评估一个 checkpoint 的结果逐位相同
    alone = root / "alone.json"
    r = run_cli(str(root / "m1.pt"), "--data_path", str(root / "sft_eval.jsonl"), "--ppl_path",
                str(root / "pretrain_eval.txt"), "--limit", "5", "--max_new_tokens", "8", "--json", str(alone))
    assert r.returncode == 0, r.stderr
    assert json.loads(alone.read_text(encoding="utf-8"))[str(root / "m1.pt")] == res[str(root / "m1.pt")]


def test_lora_flag_equals_adapter_path(world, monkeypatch, capsys):
    """--lora 把适配器套在给定的底座上, 与直接评估适配器文件 (它自己找底座) 结果相同。"""
    root, _, _ = world
    common = ["--data_path", str(root / "sft_eval.jsonl"), "--ppl_path", str(root / "pretrain_eval.txt"),
              "--limit", "3", "--max_new_tokens", "4", "--ppl_blocks", "1", "--device", "cpu"]
    results = []
    for ckpt in ([str(root / "m0.pt"), "--lora", str(root / "adapter.pt")], [str(root / "adapter.pt")]):
        out = root / "lora.json"
        monkeypatch.setattr(sys, "argv", ["evaluate.py", *ckpt, *common, "--json", str(out)])
        evaluate.main()
        results.append(json.loads(out.read_text(encoding="utf-8")))
    assert list(results[0]) == [f"{root / 'm0.pt'}+{root / 'adapter.pt'}"]
    assert list(results[0].values()) == list(results[1].values())
    assert "总体 (n=3)" in capsys.readouterr().out
    # --json 不能盖掉 --lora 读的适配器 (--lora 是一个路径, 不是路径的列表)
    r = run_cli(str(root / "m0.pt"), "--lora", str(root / "adapter.pt"), *common, "--json", str(root / "adapter.pt"))
    assert r.returncode == 1 and "就是 --lora 读的文件" in r.stderr, r.stderr
    # 只给了 --lora, 没给底座: 说要配一个底座, 而不是拿 checkpoints/ 里默认的几个来数
    r = run_cli("--lora", str(root / "adapter.pt"), *common)
    assert r.returncode == 1 and r.stderr.strip() == ("错误: --lora 要配一个底座, 写在它前面: python evaluate.py "
                                                      f"checkpoints/base_model.pt --lora {root / 'adapter.pt'}"), r.stderr
    # --json "" (比如脚本里的变量没赋值): 开始评估之前就报错, 而不是评估完悄悄什么都不写、还以 0 退出
    r = run_cli(str(root / "m0.pt"), *common, "--json", "")
    assert r.returncode == 1 and r.stderr.strip() == "错误: --json 是空的, 这里要一个文件路径 (例如 runs/results.json)"


@pytest.mark.parametrize("case", ["missing_checkpoint", "not_a_checkpoint", "missing_data", "same_checkpoint_twice"])
def test_cli_errors_are_one_line(world, case):
    root, _, _ = world
    (root / "notes.txt").write_text("这不是模型", encoding="utf-8")
    ckpt = {"missing_checkpoint": "nope.pt", "not_a_checkpoint": "notes.txt"}.get(case, "m0.pt")
    eval_path = "missing.jsonl" if case == "missing_data" else "sft_eval.jsonl"
    twice = [str(root / ckpt)] if case == "same_checkpoint_twice" else []  # 结果按路径存, 两次只会剩一列
    r = run_cli(str(root / ckpt), *twice, "--data_path", str(root / eval_path), "--ppl_blocks", "0")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误") and "Traceback" not in r.stderr
    if case == "missing_data":
        assert lines[0].endswith("missing.jsonl。检查文件名和路径")  # 不是示例数据的文件名: 不叫人去生成示例数据
    if case == "same_checkpoint_twice":
        assert "给了两次" in lines[0]


def test_max_new_tokens_over_the_window_says_so(world):
    """--max_new_tokens 本身就超过窗口 (tiny 模型是 64) 时, 每条都放不下: 提醒里要说出是这个参数太大, 而不只是 "提示太长"。"""
    root, _, _ = world
    r = run_cli(str(root / "m0.pt"), "--data_path", str(root / "sft_eval.jsonl"), "--ppl_blocks", "0", "--limit", "2",
                "--max_new_tokens", "64")
    assert r.returncode == 0, r.stderr
    assert "2 条的提示加上 --max_new_tokens 64 超过了模型的窗口 (max_seq_len=64)" in r.stdout
    assert "本身就不小于窗口" in r.stdout


@pytest.mark.parametrize("ppl", ["dir", "empty", "fifo"])
def test_bad_ppl_path_is_reported_before_evaluating(world, ppl):
    """--ppl_path 是目录、空文件或管道: 开始评估之前一行报错 (而不是评完准确率才发现; 管道以前会一直等下去)。"""
    root, _, _ = world
    (root / "empty.txt").write_text("\n\n", encoding="utf-8")
    if ppl == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("这个系统没有命名管道")
        if not (root / "ppl.fifo").exists():
            os.mkfifo(root / "ppl.fifo")
    path = {"dir": root, "empty": root / "empty.txt", "fifo": root / "ppl.fifo"}[ppl]
    r = run_cli(str(root / "m0.pt"), "--data_path", str(root / "sft_eval.jsonl"), "--ppl_path", str(path))
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("错误") and "评估集" not in r.stdout
    assert {"dir": "读不了", "empty": "没有文字", "fifo": "是管道, 只能读一次"}[ppl] in lines[0]


def test_json_ppl_path_gets_a_note_but_still_runs(world):
    """--ppl_path 给成了对话数据 (多半是和 --data_path 弄反了): stderr 提醒一句, 评估照常完成 (也许真是一行一段的文字)。"""
    root, _, _ = world
    r = run_cli(str(root / "m0.pt"), "--data_path", str(root / "sft_eval.jsonl"), "--ppl_path", str(root / "sft_eval.jsonl"),
                "--limit", "2", "--ppl_blocks", "1", "--samples", "0")
    assert r.returncode == 0, r.stderr
    assert f"注意: --ppl_path {root / 'sft_eval.jsonl'} 看起来是 JSON 数据" in r.stderr and "评估集" in r.stdout
    r = run_cli(str(root / "m0.pt"), "--data_path", str(root / "sft_eval.jsonl"), "--ppl_path",
                str(root / "pretrain_eval.txt"), "--limit", "2", "--ppl_blocks", "1", "--samples", "0")
    assert r.returncode == 0 and "看起来是 JSON" not in r.stderr, r.stderr


def test_error_sources_counts_arithmetic_across_categories():
    """experiments.py probe 的第三张表: 要说出算式结论的题在每个类别里分开数; "算术全对" 时的总体上限算得对。"""
    from experiments import error_sources

    def r(cat, answer, correct):
        return {"category": cat, "answer": answer, "correct": correct}
    results = [r("arithmetic", "等于68", False), r("arithmetic", "等于12", True),
               r("multi_turn", "equals 72", False), r("multi_turn", "律师", True), r("multi_turn", "成都", False),
               r("text_task", "“浅”", True), r("text_task", "“高”", False)]
    raw = {}
    md = error_sources(results, raw)
    assert raw["error_sources"] == {"n": 7, "arith": 3, "arith_ok": 1, "rest_ok": 2, "ceiling_if_arith_right": 5 / 7}
    assert "| multi_turn | 3 | 1 | 0 / 1 | 1 / 2 (50.0%) |" in md
    assert "| text_task | 2 | 0 | - | 1 / 2 (50.0%) |" in md
    assert "总体是 71.4%" in md


def test_strict_rules_reject_what_the_lenient_score_lets_through():
    """experiments.py strict: 宽松打分 (关键串在回答里就算对) 放过的几种错, 严格规则各自拦下; 参考回复本身全都通过。"""
    from experiments import strict_miss
    names, values = ["朱欣霞", "蔡怡博", "蔡怡"], ["昆明", "成都", "黄色"]

    def rec(answer, ref, system=None):
        conv = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": "问"}, {"role": "assistant", "content": ref}]
        return {"conversations": conv, "answer": answer}
    cases = [  # (评估题, 回答, 宽松时也算对?, 严格时没做到的那一样)
        (rec("等于1", "45减44等于1。"), "44减44等于1。", "算式"),
        (rec("等于123", "99加24等于123。"), "99加24等于124。99加24等于123。", "算式"),
        (rec("equals 8", "45 minus 37 equals 8."), "45 minus 37 equals 8.", None),
        (rec("昆明", "朱欣霞出生在昆明。"), "陶文俊出生在昆明。", "人名"),
        (rec("昆明", "蔡怡博出生在昆明。"), "蔡怡出生在昆明。", "人名"),  # 长名字的开头不算同一个人
        (rec("昆明", "蔡怡出生在昆明。"), "蔡怡博出生在昆明。", "人名"),  # 反过来也不算
        (rec("昆明", "蔡怡博出生在昆明。"), "蔡怡博文出生在昆明。", "人名"),  # 名字后面多写一个字 (不是名单里的名字)
        (rec("等于82", "45加37等于82。"), "37加45等于82。", None),  # 加法交换两个数也对
        (rec("等于8", "45减37等于8。"), "37减45等于8。", "算式"),  # 减法不能交换
        (rec("好的，", "好的，我是小智，一个由星火实验室开发的AI助手。"), "好的，我是小智，一个由星火实验开发的助手。", "内容"),
        (rec("好的，", "好的，朱欣霞出生在昆明。"), "朱欣霞出生在昆明。好的，", "标记"),
        (rec("好的，", "好的，朱欣霞出生在昆明。"), "好的，朱欣霞出生在成都。", "内容"),
        (rec("好的，", "好的，89减45等于44。"), "好的，84减46等于10。", "算式"),
        (rec("喵", "安全的反义词是“危险”。喵～"), "安静的反义词是“少”。喵～", "内容"),
        (rec("喵", "我是由星火实验室开发的AI助手。喵～"), "喵我是由星火实验室开发的AI助手。", "标记"),
        (rec("喵", "我是由星火实验室开发的AI助手。喵～"), "我是由星火实验室开发的AI助手。喵～", None),
    ]
    for record, reply, why in cases:
        assert strict_miss(record, reply, names, values) == why, (reply, why)
        ref = record["conversations"][-1]["content"]
        assert strict_miss(record, ref, names, values) is None  # 参考回复永远过得了严格规则


def test_continuations_checks_what_the_base_writes_next(world, tmp_path):
    """experiments.continuations (probe、tokenizer、facts 实验里的底座续写): 按组收集; 接出的文字以期望的值开头才算对
    (在后面才出现的不算); 值长的, 接的 token 也多; 开头前面先放 <|endoftext|>, 像一段新文字的开头。
    用放大了权重的 tiny 模型: 刚初始化的只会重复同一个 token, 这几条都测不出来。"""
    from experiments import continuations
    root, tok, _ = world
    model = lively_tiny_model(tok)
    path = str(tmp_path / "lively.pt")
    save_model(path, model, tok)
    model.eval()

    def greedy(ids, n):
        return tok.decode(list(model.generate(ids, n, temperature=0, eos_id=tok.eot_id)))
    prompt = tok.encode("小明住在")
    out = greedy([tok.eot_id] + prompt, 6)
    assert out != greedy(prompt, 6)  # 有没有 <|endoftext|> 开头, 接出的不一样: 下面的第一条就能看出它放了没有
    later = next(out[i:i + 2] for i in range(1, len(out) - 1) if not out.startswith(out[i:i + 2]))  # 后面才出现的两个字
    long = greedy([tok.eot_id] + prompt, 40)[:len(out) + 12]  # 比 6 个 token 接得出的长
    assert len(tok.encode(long)) > 6
    probes = [("a", "小明住在", out[:2]), ("a", "小明住在", later), ("b", "小明住在", long)]
    assert continuations(path, probes) == {"a": [True, False], "b": [True]}


def test_phrasing_groups_questions_by_their_wording():
    """experiments.py phrasing: 人名换成 X 就是问法; 一个名字是另一个名字的开头时, 换掉的是整个长名字。"""
    from experiments import phrasing
    names = ["韦轩文", "韦轩"]  # 长的在前, 和 exp_phrasing 一样
    assert phrasing("韦轩文的家乡在哪儿？", names) == "X的家乡在哪儿？"
    assert phrasing("你知道韦轩是在哪座城市出生的吗？", names) == "你知道X是在哪座城市出生的吗？"
    assert phrasing("你是谁？", names) == "你是谁？"


def test_distinct_roles_base_changes_only_the_role_rows(world, tmp_path, monkeypatch):
    """experiments.py roles 的对照底座: 只有角色标签的 embedding 行换成了各不相同的方向 (长度是普通 token 的平均长度),
    其余权重逐位不变; embedding 与 lm_head 仍是同一张表。mean_cosine 算的就是两两余弦的平均。"""
    import experiments
    from checkpoint import load_model
    root, tok, _ = world
    monkeypatch.setattr(experiments, "BASE", str(root / "m0.pt"))
    monkeypatch.setattr(experiments, "RUNS", str(tmp_path))
    roles = [tok.special_ids[t] for t in ("<|system|>", "<|user|>", "<|assistant|>")]
    path = experiments.distinct_roles_base(roles, fresh=False)
    before, after = load_model(str(root / "m0.pt"))[0], load_model(path)[0]
    emb0, emb1 = before.embed_tokens.weight, after.embed_tokens.weight
    others = [i for i in range(tok.vocab_size) if i not in roles]
    assert torch.equal(emb0[others], emb1[others]) and not torch.equal(emb0[roles], emb1[roles])
    assert after.lm_head.weight is after.embed_tokens.weight
    torch.testing.assert_close(emb1[roles].norm(dim=-1), emb0[:tok.eot_id].norm(dim=-1).mean().expand(3))
    rest = {k: v for k, v in before.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in rest.items())
    e = torch.nn.functional.normalize(emb1[roles], dim=-1)
    assert experiments.mean_cosine(experiments.embeddings(path), roles) == pytest.approx(((e @ e.T).sum().item() - 3) / 6, abs=1e-6)
    assert experiments.mean_cosine(experiments.embeddings(path), roles[:1] * 2) == pytest.approx(1.0)


def test_experiments_reuse_a_cached_model_only_with_the_same_recipe(tmp_path, monkeypatch, capsys):
    """experiments.py 复用 runs/ 里的模型, 只在配方 (脚本、参数、读的每个文件的内容) 相同时: 重新生成过数据、
    重跑过课程 (底座变了) 或换了参数, 就重新训练, 不会把旧数据上训出来的模型和新的放进同一张表。训练换成只写一个 checkpoint 的替身。"""
    import subprocess
    import experiments
    from checkpoint import FORMAT, save_checkpoint
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiments, "RUNS", "runs")
    monkeypatch.setattr(experiments, "FRESHLY_TRAINED", set())
    os.makedirs("runs")
    os.makedirs("data")
    os.makedirs("checkpoints")
    for f in ("data/tokenizer.json", "data/sft_train.jsonl", "data/sft_eval.jsonl", experiments.BASE):
        open(f, "w").write("v1")
    trained = []

    def fake_run(cmd, **kwargs):
        out = cmd[cmd.index("--out") + 1]
        trained.append(cmd[2:cmd.index("--out")])
        save_checkpoint(out, {"format": FORMAT, "kind": "model", "metrics": {"n": len(trained)}})
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(experiments.subprocess, "run", fake_run)

    assert experiments.train("m", "train_sft.py", "--lr", "1e-4")["n"] == 1
    assert experiments.train("m", "train_sft.py", "--lr", "1e-4")["n"] == 1  # 一样的配方: 复用, 不再训练
    open(experiments.BASE, "w").write("v2")  # 重跑了课程: 底座变了
    assert experiments.train("m", "train_sft.py", "--lr", "1e-4")["n"] == 2
    assert f"runs/m.pt 和这次要的不一样 ({experiments.BASE}): 重新训练" in capsys.readouterr().out
    assert experiments.train("m", "train_sft.py", "--lr", "3e-4")["n"] == 3  # 参数变了
    assert "(flags)" in capsys.readouterr().out
    os.remove("runs/m.pt.recipe.json")  # 更早的版本训练的, 没有配方: 也重新训练
    assert experiments.train("m", "train_sft.py", "--lr", "3e-4")["n"] == 4
    assert trained == [["--lr", "1e-4"], ["--lr", "1e-4"], ["--lr", "3e-4"], ["--lr", "3e-4"]]
    with open("runs/m.pt", "r+b") as f:  # 写盘时断电: 配方还对得上, 文件却坏了。重跑还会读它, 所以告诉用户 --fresh
        f.truncate(100)
    with pytest.raises(SystemExit, match="runs/m.pt 不是完整的 checkpoint.*请重新训练或重新下载$"):
        experiments.train("m", "train_sft.py", "--lr", "3e-4")  # 同一次运行里刚训练出的: --fresh 帮不上, 不提它
    experiments.FRESHLY_TRAINED.clear()  # 新的一次运行 (同一次运行里 --fresh 只重训一次, 见 FRESHLY_TRAINED)
    with pytest.raises(SystemExit, match="runs/m.pt 不是完整的 checkpoint.*加 --fresh 重新训练, 或删掉 runs/m.pt"):
        experiments.train("m", "train_sft.py", "--lr", "3e-4")
    assert experiments.train("m", "train_sft.py", "--lr", "3e-4", fresh=True)["n"] == 5


def test_experiments_runs_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    """runs 是个文件 (而不是目录): 一行说明, 不是 makedirs 的 FileExistsError traceback; 那个文件原样留着。"""
    import sys
    import experiments
    monkeypatch.chdir(tmp_path)
    for f in ("data/sft_train.jsonl", "data/sft_eval.jsonl", experiments.BASE):
        os.makedirs(os.path.dirname(f), exist_ok=True)
        open(f, "w").write("v1")
    open("runs", "w").write("mine")
    monkeypatch.setattr(sys, "argv", ["experiments.py", "strict"])
    with pytest.raises(SystemExit, match="runs 是一个文件.*改名或移走"):
        experiments.main()
    assert open("runs").read() == "mine"
