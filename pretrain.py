"""pretrain.py — 课程第 3 步 (预训练) 的快速替身: 从随机权重在 data/pretrain.txt 上训练一个底座模型。

预训练只做一件事: 预测下一个 token。得到的 base model 会 "续写" ("北京是" -> "中国的首都……"),
但不会对话 —— 它从没见过 <|user|>/<|assistant|>。教它按格式回答, 是 SFT (train_sft.py) 的事。
已经有自己第 3 步 checkpoint 的同学可以跳过这里。

做法: 每段文字编码后用 <|endoftext|> 隔开, 首尾相接排成一条长 token 流, 切成 max_seq_len 长的块;
每个块的 labels 就是它自己 (所有 token 都训练, 没有掩码), 移位在模型里做。

用法:
    python pretrain.py                      # 默认设置, 2 核 CPU 上约 5 分钟, 存到 checkpoints/base_model.pt
    python pretrain.py --device cuda --preset gpu --epochs 10
"""
import argparse
import os
from dataclasses import asdict

import torch

import data
from checkpoint import save_model
from model import GPT, get_config
from trainer import add_train_args, is_main_process, train


class PretrainDataset(torch.utils.data.Dataset):
    """把一份纯文本 (一行一段) 切成等长的 token 块。"""

    def __init__(self, path, tokenizer, block_size):
        with open(path, encoding="utf-8") as f:
            paragraphs = [line.strip() for line in f if line.strip()]
        stream = []
        for p in paragraphs:
            stream += tokenizer.encode(p) + [tokenizer.eot_id]  # 段与段之间放结束符, 模型学会 "一段话在这里结束"
        n = len(stream) // block_size
        self.blocks = torch.tensor(stream[:n * block_size]).view(n, block_size)  # (N, T)
        self.lengths = [block_size] * n
        self.n_tokens = len(stream)

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def collate_blocks(batch):
    x = torch.stack([b["input_ids"] for b in batch])  # (B, T)
    return {"input_ids": x, "labels": x}


def main():
    p = argparse.ArgumentParser(description="预训练一个小底座模型 (课程第 3 步的快速替身)")
    g = p.add_argument_group("数据与模型")
    g.add_argument("--data_path", default=os.path.join(data.DATA_DIR, "pretrain.txt"), help="预训练文本, 一行一段 (缺失时自动生成示例数据)")
    g.add_argument("--eval_path", default=os.path.join(data.DATA_DIR, "pretrain_eval.txt"), help="留出的验证文本")
    g.add_argument("--tokenizer", default=data.TOKENIZER_PATH, help="分词器文件")
    g.add_argument("--preset", default="default", help="模型大小: tiny / default / gpu (见 python model.py)")
    g.add_argument("--n_layer", type=int, help="覆盖预设的层数")
    g.add_argument("--n_embd", type=int, help="覆盖预设的隐藏维度")
    add_train_args(p, epochs=25, lr=1e-3, batch_size=16, warmup_steps=30, eval_interval=50,
                   out="checkpoints/base_model.pt")
    args = p.parse_args()

    # 1. 数据: 没有就先生成示例数据
    if not os.path.exists(args.data_path) and args.data_path == os.path.join(data.DATA_DIR, "pretrain.txt"):
        print(f"没有找到 {args.data_path}, 先生成示例数据 (python data.py --create_sample)")
        data.create_sample(data.DATA_DIR, seed=0, vocab_size=1536)
    if not os.path.exists(args.data_path):
        raise SystemExit(f"错误: 找不到预训练文本 {args.data_path}。检查 --data_path")
    tokenizer = data.load_tokenizer(args.tokenizer)
    overrides = {k: getattr(args, k) for k in ("n_layer", "n_embd") if getattr(args, k)}
    config = get_config(args.preset, vocab_size=tokenizer.vocab_size, **overrides)
    train_set = PretrainDataset(args.data_path, tokenizer, config.max_seq_len)
    eval_set = PretrainDataset(args.eval_path, tokenizer, config.max_seq_len) if os.path.exists(args.eval_path) else None
    if len(train_set) == 0:
        raise SystemExit(f"错误: {args.data_path} 太短, 切不出一个 {config.max_seq_len} token 的块")

    # 2. 模型: 随机初始化
    torch.manual_seed(args.seed)
    model = GPT(config)
    print(f"模型 {model.num_params() / 1e6:.2f}M 参数; 训练文本 {train_set.n_tokens:,} token, {len(train_set)} 块")

    # 3. 训练 (与 SFT、LoRA 共用同一个循环)
    metrics = train(model, train_set, eval_set, collate_blocks, args, run_info={"model_config": asdict(config)})

    # 4. 保存
    if not is_main_process():
        return
    save_model(args.out, model, tokenizer, vars(args), metrics)
    print(f"底座模型已保存到 {args.out}  (train loss {metrics['train_loss']:.3f}, eval loss {metrics['eval_loss'] or float('nan'):.3f})")


if __name__ == "__main__":
    main()
