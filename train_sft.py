"""train_sft.py — 全参数 SFT (指令微调): 在对话数据上继续训练底座模型的全部参数。

和预训练用的是同一个训练循环 (trainer.py), 区别只有两点:
  1. 数据是按 chat 模板拼好的对话 (data.py);
  2. 只有 assistant 回复 (及其 <|endoftext|>) 的 label 是真实 token, 其余都是 -100 —— 模型学 "怎么回答", 而不是 "怎么提问"。
--no_mask 关掉这一点 (所有 token 都训练), 是本课的消融实验。

学习率: 默认 1e-4, 不高于预训练结束时的学习率 (预训练从峰值 1e-3 按余弦降到 1e-4)。SFT 学习率太大, 会把预训练存进权重里的知识冲掉
(README 里有实测: 学习率越大, knowledge_unlock 越差)。

用法:
    python train_sft.py --device cuda --epochs 3
    python train_sft.py --init scratch          # 不用底座, 从随机权重做 SFT (对比实验)
    python train_sft.py --no_mask               # 消融: 不做掩码
"""
import os

from cli import elsewhere, make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch

import data
from checkpoint import build_model, load_checkpoint, save_model
from lora import base_fingerprint
from model import GPT, get_config
from trainer import add_train_args, check_train_args, finish_run, is_main_process, train


def add_sft_args(p):
    """train_sft.py 与 train_lora.py 共用的数据与起点参数。"""
    g = p.add_argument_group("数据与起点")
    g.add_argument("--data_path", default=data.TRAIN_PATH, help="SFT 训练数据 (.jsonl 或 .json; 支持课程格式、OpenAI、ShareGPT、Alpaca)")
    g.add_argument("--eval_path", default=data.EVAL_PATH, help="验证数据 (训练中定期算 loss)")
    g.add_argument("--init", default="checkpoints/base_model.pt", help="起点权重: 底座 checkpoint 路径, 或 scratch (随机初始化)")
    g.add_argument("--preset", default="default", help="--init scratch 时的模型大小: tiny / default / gpu")
    g.add_argument("--max_length", type=int, default=256, help="一条样本最多多少 token (超长时整轮丢弃对话, 见 data.encode_chat; 不超过模型的窗口)")
    g.add_argument("--no_mask", action="store_true", help="消融实验: 所有 token 都算 loss (不只 assistant 的回复)")
    g.add_argument("--strict", action="store_true", help="数据里有坏记录就报错退出 (默认跳过并报告)")
    return g


def load_start(args, allow_scratch=True):
    """起点: (model, tokenizer)。底座不存在时给出一行提示 (LoRA 不能从随机权重开始, 就不提 --init scratch)。"""
    if args.init == "scratch":
        tokenizer = data.load_tokenizer()
        torch.manual_seed(args.seed)
        return GPT(get_config(args.preset, vocab_size=tokenizer.vocab_size)), tokenizer
    if not os.path.exists(args.init):
        hint = ", 或用 --init scratch 从随机权重开始" if allow_scratch else ""
        raise SystemExit(f"错误: 找不到底座模型 {args.init}。{elsewhere(args.init) or '先运行 python pretrain.py 训练一个' + hint}")
    ckpt = load_checkpoint(args.init, kinds=("model",))  # 先查种类: --init 给成了适配器, 要说的是这个, 而不是和 --out 撞名
    if os.path.abspath(args.out) == os.path.abspath(args.init):
        raise SystemExit(f"错误: --out 和 --init 是同一个文件 {args.init}: 训练结果会覆盖底座。换一个 --out")
    return build_model(ckpt, args.init)


def load_sft_data(args, tokenizer, max_seq_len):
    """训练集与验证集。坏记录由 data.py 报告后跳过。一条样本最长 --max_length, 但不超过模型的窗口 max_seq_len。"""
    max_length = min(args.max_length, max_seq_len)
    if args.max_length > max_seq_len:  # 说一声: 不然学习者以为超过 256 的对话也整条训练了
        print(f"注意: --max_length {args.max_length} 大于模型的窗口 {max_seq_len}, 按 {max_seq_len} 截断")
    eval_path = data.eval_file(args.eval_path, data.EVAL_PATH)
    train_set = data.SFTDataset(data.load_conversations(args.data_path, strict=args.strict), tokenizer, max_length, args.no_mask)
    eval_set = None
    if eval_path:
        eval_set = data.SFTDataset(data.load_conversations(eval_path, strict=args.strict),
                                   tokenizer, max_length, args.no_mask)
    n_tok = sum(train_set.lengths)
    print(f"SFT 数据: {len(train_set)} 条对话, {n_tok:,} token"
          + (f"; {train_set.dropped} 条截断后没有可训练 token, 已丢弃" if train_set.dropped else ""))
    if len(train_set) == 0:
        raise SystemExit(f"错误: {args.data_path} 里没有能放进 --max_length {max_length} 的对话。调大 --max_length")
    return train_set, eval_set


def main():
    p = make_parser("全参数 SFT: 在对话数据上微调底座模型的全部参数")
    add_sft_args(p)
    add_train_args(p, epochs=3, lr=1e-4, batch_size=16, warmup_steps=20, eval_interval=200,
                   out="checkpoints/sft_model.pt")
    args = p.parse_args()
    check_train_args(args)  # 训练参数先查, 再花时间读数据、建模型

    # 1. 起点与数据
    model, tokenizer = load_start(args)
    train_set, eval_set = load_sft_data(args, tokenizer, model.config.max_seq_len)
    print(f"模型 {model.num_params() / 1e6:.2f}M 参数, 全部参与训练 (起点: {args.init})")

    # 2. 训练 (起点的指纹记进续训状态: --resume 时若 --init 换成了别的模型就拒绝, 续训会接着用旧起点的权重)
    metrics = train(model, train_set, eval_set, lambda b: data.collate(b, tokenizer.pad_id), args,
                    run_info={"task": "sft", "init_fingerprint": base_fingerprint(model)})

    # 3. 保存
    if is_main_process():
        save_model(args.out, model, tokenizer, vars(args), metrics)
        finish_run(args.out)  # 最终模型存好了才换上这次的日志、删掉续训状态: 保存途中被打断, 还能 --resume
        print(f"SFT 模型已保存到 {args.out}。试试: python chat.py --checkpoint {args.out}")


if __name__ == "__main__":
    run_main(main)
