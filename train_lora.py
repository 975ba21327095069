"""train_lora.py — LoRA 微调: 冻结底座的全部权重, 只训练插在 q_proj/v_proj 旁边的低秩旁路 y = Wx + (α/r)·BAx。

与 train_sft.py 的区别只有一步: 训练前 apply_lora(model, ...) 把目标层包起来并冻结其余参数。
数据、掩码、训练循环全都一样 (从 train_sft.py / trainer.py 复用, 没有复制)。
保存的 checkpoints/lora_adapter.pt 只有 lora_A/lora_B、LoRA 配置、训练参数和指标, 外加底座的路径和指纹 (课程的默认设置下约是完整模型的 1%);
--merge 另存一份把 BA 折进 W 的完整模型 checkpoints/lora_merged.pt, 像普通 checkpoint 一样加载。

学习率: LoRA 的默认学习率 (1e-2) 比全参数 SFT (1e-4) 高两个数量级 —— 改动 ΔW = (alpha/r)·BA 从 0 出发 (B = 0),
又被限制在秩 r 以内, 小学习率下学得明显少 (1e-3 时总体低约 9 个百分点, README 第 6 节和 7.3 的学习率表)。

用法:
    python train_lora.py --device cuda --epochs 3 --lora_r 8
    python train_lora.py --target_modules all-linear --lr 3e-3 --out checkpoints/lora_all_adapter.pt --merge
        # all-linear 可训练参数多, 学习率要小些 (README 7.3); 另起 --out, 不盖掉课程的 q,v 适配器
"""
import os

from cli import make_parser, run_main  # 先于 torch 导入: 见 cli.py
import torch

import data
from checkpoint import check_output_path, save_adapter, save_model
from lora import apply_lora, base_fingerprint, count_parameters, lora_param_arithmetic, merged_state_dict
from train_sft import add_sft_args, load_sft_data, load_start
from trainer import add_train_args, check_train_args, finish_run, is_main_process, train


def main():
    p = make_parser("LoRA 微调: 冻结底座, 只训练低秩旁路 lora_A / lora_B")
    add_sft_args(p)
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=int, default=8, help="秩 r: 旁路 A 是 (r, n), B 是 (m, r), r 远小于 n、m")
    g.add_argument("--lora_alpha", type=float, default=16, help="缩放 alpha: 旁路输出乘以 alpha / r")
    g.add_argument("--lora_dropout", type=float, default=0.05, help="旁路输入上的 dropout")
    g.add_argument("--target_modules", default="q_proj,v_proj", help="套 LoRA 的层 (按名字后缀, 逗号分隔), 或 all-linear")
    g.add_argument("--merge", action="store_true", help="另存一份合并后的完整模型 (路径: --out 旁边的 *_merged.pt)")
    # 学习率比全参数 SFT (1e-4) 高两个数量级: 旁路 BA 从零开始、秩只有 r, 要走很远才改得动底座的行为;
    # 冻结的底座又不会被冲掉 (见 README 7.3 的学习率表: 1e-3 时 LoRA 明显学得少, 1e-2 最好, 3e-2 就发散了)
    add_train_args(p, epochs=3, lr=1e-2, batch_size=16, warmup_steps=20, eval_interval=200,
                   out="checkpoints/lora_adapter.pt")
    args = p.parse_args()
    check_train_args(args)  # 训练参数先查, 再花时间读数据、建模型
    if args.init == "scratch":
        raise SystemExit("错误: LoRA 需要一个训练好的底座 (--init checkpoints/base_model.pt); 随机底座上的低秩旁路学不到什么")
    folder, name = os.path.split(os.path.splitext(args.out)[0])  # --merge 另存的完整模型: lora_adapter.pt -> lora_merged.pt
    merged_path = os.path.join(folder, name.removesuffix("_adapter") + "_merged.pt")  # 只改文件名, 不动目录名
    if args.merge:  # 训练之前就查: 训练完才发现存不了, 或者悄悄盖掉了底座, 都太晚了
        if os.path.abspath(merged_path) == os.path.abspath(args.init):
            raise SystemExit(f"错误: --merge 要把合并后的模型存到 {merged_path}, 那正是底座 --init, 会覆盖底座。换一个 --out")
        if is_main_process():  # 试写一次再删掉: 多进程时只由 rank 0 来, 免得几个进程同时建、删同一个文件
            check_output_path(merged_path, "--merge", kinds=("model",), change="--out (合并的模型按它起名)")

    # 1. 底座与数据
    model, tokenizer = load_start(args, allow_scratch=False)
    fingerprint = base_fingerprint(model)  # 在套 LoRA 之前记下底座的指纹
    train_set, eval_set = load_sft_data(args, tokenizer, model.config.max_seq_len)

    # 2. 套上 LoRA: 只有 lora_A / lora_B 可训练
    torch.manual_seed(args.seed)  # lora_A 的随机初始值也由 --seed 决定: 同样的命令, 同样的适配器
    wrapped = apply_lora(model, args.target_modules, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout)
    trainable, total = count_parameters(model)
    full, low_rank = lora_param_arithmetic(model.get_submodule(wrapped[0]), args.lora_r)
    n, m = model.get_submodule(wrapped[0]).base_layer.in_features, model.get_submodule(wrapped[0]).base_layer.out_features
    print(f"LoRA 套在 {len(wrapped)} 个层上 ({args.target_modules}), r={args.lora_r}, alpha={args.lora_alpha}")
    print(f"  以 {wrapped[0]} 为例: 全量 n·m = {n}·{m} = {full:,}; LoRA (n+m)·r = ({n}+{m})·{args.lora_r} = {low_rank:,}")
    print(f"  可训练参数 {trainable:,} / 总参数 {total:,} = {100 * trainable / total:.2f}%")

    # 3. 训练 (同一个循环)
    # 底座指纹和 LoRA 设置记进续训状态: --resume 时若 --init 已换成别的底座 (续训会接着用旧底座的权重),
    # 或 --lora_alpha 之类变了 (旁路的缩放悄悄换了), 就拒绝
    lora_config = {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout, "target_modules": wrapped}
    metrics = train(model, train_set, eval_set, lambda b: data.collate(b, tokenizer.pad_id), args,
                    run_info={"task": "lora", "base_fingerprint": fingerprint, "lora": lora_config}, out_kind="lora_adapter")

    # 4. 保存: 只存适配器; 可选另存合并后的完整模型
    if not is_main_process():
        return
    save_adapter(args.out, model, lora_config, args.init, fingerprint, vars(args), metrics)
    finish_run(args.out)  # 适配器存好了才换上这次的日志、删掉续训状态: 保存途中被打断, 还能 --resume
    print(f"LoRA 适配器已保存到 {args.out}。试试: python chat.py --checkpoint {args.out}")
    if args.merge:
        save_model(merged_path, model, tokenizer, vars(args), metrics, state=merged_state_dict(model))
        print(f"合并后的完整模型已保存到 {merged_path}")


if __name__ == "__main__":
    run_main(main)
