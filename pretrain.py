"""pretrain.py — 课程第 3 步 (预训练) 的快速替身: 从随机权重在 data/pretrain.txt 上训练一个底座模型。

预训练只做一件事: 预测下一个 token。得到的 base model 会 "续写" ("北京是" -> "中国的首都……"),
但不会对话 —— 它从没见过 <|user|>/<|assistant|>。教它按格式回答, 是 SFT (train_sft.py) 的事。
已经有自己第 3 步 checkpoint 的同学可以跳过这里, 前提是它是本课程的格式 (checkpoint.py: 自带分词器, 模块名和 model.py 一致);
别的格式要先换成这种格式。

做法: 每段文字 (一行) 是一个样本, labels 就是它自己 (所有 token 都训练, 没有掩码), 移位在模型里做。
为什么不切成等长的块, 见 PretrainDataset 的说明。

用法:
    python pretrain.py                      # 默认设置 (12 个 epoch), 2 核 CPU 上约 6 分钟, 存到 checkpoints/base_model.pt
    python pretrain.py --device cuda --preset gpu --epochs 10
"""
import os
from dataclasses import asdict

from cli import elsewhere, make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch

import data
from checkpoint import save_model
from model import GPT, get_config
from trainer import add_train_args, check_train_args, finish_run, is_main_process, train


class PretrainDataset(torch.utils.data.Dataset):
    """一段文字 = 一个样本: [<|endoftext|>] 段落 [<|endoftext|>], labels 就是它自己 (全部训练)。

    为什么不像大规模预训练那样把所有段落首尾相接、切成等长的块? 语料很小、要学很多遍时, 固定的块每个 epoch
    都一模一样, 模型会背下 "这一块的前文 -> 下一个词", 而不是 "这个人 -> 他的出生地" (实测: 训练 loss 0.03,
    验证 loss 却一路升到 4.7, 问 "韦轩文出生在" 答错)。每段单独成样本, 前文只有这段话本身, 模型只能把事实记在
    人名上 —— 这正是后面 SFT 能把知识 "问出来" 的前提。长度相近的段落分到同一个 batch, padding 很少。
    比 block_size 长的段落切成几个窗口, 相邻窗口重叠一个 token, 这样每个 token (开头的结束符除外) 都恰好被预测一次
    (只留开头的话, 后面的文字既不训练, evaluate.py 的困惑度也不算它们)。示例数据里最长的一段也放得进一个窗口。
    """

    def __init__(self, path, tokenizer, block_size):
        paragraphs = [line.strip() for line in data.read_text(path).split("\n") if line.strip()]  # 不用 splitlines: 它还会在 \x0c、\u2028 等字符处断行
        eot = tokenizer.eot_id  # 段首段尾都放结束符: 段首让第一个字也被预测, 段尾让模型学会 "一段话在这里结束"
        self.examples = []
        for p in paragraphs:
            ids = [eot] + tokenizer.encode(p) + [eot]
            # 第 k 个窗口从上一个窗口的最后一个 token 开始: 它在上一个窗口里没有 "下一个" 可预测, 在这里作为输入
            self.examples += [torch.tensor(ids[i:i + block_size]) for i in range(0, len(ids) - 1, max(1, block_size - 1))]
        self.lengths = [len(x) for x in self.examples]
        self.n_tokens = sum(self.lengths)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return {"input_ids": self.examples[i], "labels": self.examples[i]}


def main():
    p = make_parser("预训练一个小底座模型 (课程第 3 步的快速替身)")
    g = p.add_argument_group("数据与模型")
    g.add_argument("--data_path", default=os.path.join(data.DATA_DIR, "pretrain.txt"), help="预训练文本, 一行一段 (缺失时自动生成示例数据)")
    g.add_argument("--eval_path", default=os.path.join(data.DATA_DIR, "pretrain_eval.txt"), help="留出的验证文本")
    g.add_argument("--tokenizer", default=data.TOKENIZER_PATH, help="分词器文件")
    g.add_argument("--preset", default="default", help="模型大小: tiny / default / gpu (见 python model.py)")
    g.add_argument("--n_layer", type=int, help="覆盖预设的层数")
    g.add_argument("--n_embd", type=int, help="覆盖预设的隐藏维度")
    g.add_argument("--show_prompts", default="北京是,韦轩文出生在,一年有", help="训练完用底座续写这些开头 (逗号分隔)")
    add_train_args(p, epochs=12, lr=1e-3, batch_size=32, warmup_steps=30, eval_interval=200,
                   out="checkpoints/base_model.pt")
    args = p.parse_args()

    # 参数先查 (模型形状、训练参数), 再动手生成数据或训练
    overrides = {k: getattr(args, k) for k in ("n_layer", "n_embd") if getattr(args, k) is not None}
    get_config(args.preset, **overrides)
    check_train_args(args)

    # 1. 数据: 没有就先生成示例数据 (data/ 里已有别的数据时不生成: 会覆盖它们)
    if not os.path.exists(args.data_path) and args.data_path == os.path.join(data.DATA_DIR, "pretrain.txt"):
        present = [f for f in ("sft_train.jsonl", "sft_eval.jsonl", "pretrain_eval.txt", "tokenizer.json")
                   if os.path.exists(os.path.join(data.DATA_DIR, f))]
        if present:
            raise SystemExit(f"错误: 找不到 {args.data_path}, 而 {data.DATA_DIR}/ 里已有 {', '.join(present)}, 不自动生成示例数据 "
                             f"(会覆盖它们)。要示例数据就运行 python data.py --create_sample; 用自己的文本就加 --data_path")
        cd_hint = elsewhere(args.data_path)  # 在别的目录里运行, 而课程目录里有这份数据
        if "RANK" in os.environ:  # torchrun 的每个进程都会来生成, 同时写同一批文件, 互相把临时文件改名改走
            raise SystemExit(f"错误: 找不到 {args.data_path}。多进程 (torchrun) 训练之前先生成示例数据: python data.py --create_sample"
                             + (f"; 或者 {cd_hint}" if cd_hint else ""))
        if cd_hint:  # 不在这里生成一份新的: 在课程目录里运行, 用已有的那份
            raise SystemExit(f"错误: 找不到 {args.data_path}。{cd_hint}")
        print(f"没有找到 {args.data_path}, 先生成示例数据 (python data.py --create_sample)")
        data.create_sample(data.DATA_DIR, seed=0, vocab_size=1536)
    if not os.path.exists(args.data_path):
        raise SystemExit(f"错误: 找不到预训练文本 {args.data_path}。检查 --data_path")
    data.note_if_json(args.data_path, "--data_path", "预训练", "对话数据要用 train_sft.py")
    data.note_if_json(args.eval_path, "--eval_path", "验证 loss ", "留出的预训练文本是 data/pretrain_eval.txt")
    tokenizer = data.load_tokenizer(args.tokenizer)
    config = get_config(args.preset, vocab_size=tokenizer.vocab_size, **overrides)
    train_set = PretrainDataset(args.data_path, tokenizer, config.max_seq_len)
    eval_path = data.eval_file(args.eval_path, p.get_default("eval_path"))
    eval_set = PretrainDataset(eval_path, tokenizer, config.max_seq_len) if eval_path else None
    if len(train_set) == 0:
        raise SystemExit(f"错误: {args.data_path} 里没有文字。检查 --data_path")
    if eval_set is not None and len(eval_set) == 0:  # 否则训练照常, 验证 loss 却一直是 nan
        raise SystemExit(f"错误: 验证文本 {eval_path} 里没有文字。检查 --eval_path (不要验证就写 --eval_path '')")

    # 2. 模型: 随机初始化
    torch.manual_seed(args.seed)
    model = GPT(config)
    print(f"模型 {model.num_params() / 1e6:.2f}M 参数; 训练文本 {len(train_set)} 段, {train_set.n_tokens:,} token")

    # 3. 训练 (与 SFT、LoRA 共用同一个循环)
    collate = lambda b: data.collate(b, tokenizer.pad_id)  # noqa: E731  补齐的位置 label = -100
    # 模型形状和分词器记进续训状态: --resume 时换了 --preset 或 --tokenizer 就拒绝 (同样大小的另一个词表, 每个 id 的意思都变了)
    metrics = train(model, train_set, eval_set, collate, args,
                    run_info={"task": "pretrain", "model_config": asdict(config), "tokenizer": tokenizer.fingerprint()})

    # 4. 保存
    if not is_main_process():
        return
    save_model(args.out, model, tokenizer, vars(args), metrics)
    finish_run(args.out)  # 最终模型存好了才换上这次的日志、删掉续训状态: 保存途中被打断, 还能 --resume
    print(f"底座模型已保存到 {args.out}  (train loss {metrics['train_loss']:.3f}, eval loss {metrics['eval_loss'] or float('nan'):.3f})")

    # 5. 看看底座会做什么: 续写。它没见过对话模板, 所以只会接着往下写, 不会 "回答"
    model.eval()
    for prompt in args.show_prompts.split(","):
        ids = [tokenizer.eot_id] + tokenizer.encode(prompt)  # 训练时每段都以 <|endoftext|> 开头
        out = list(model.generate(ids, max_new_tokens=40, temperature=0, eos_id=tokenizer.eot_id))
        print(f"续写  {prompt} -> {tokenizer.decode(out).replace('<|endoftext|>', '')}")


if __name__ == "__main__":
    run_main(main)
