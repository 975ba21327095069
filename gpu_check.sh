#!/usr/bin/env bash
# gpu_check.sh — 有 CUDA GPU 时一次跑完的检查 (几分钟):
#   1. bench.py 在 GPU 上的数字 (tokens/s、对 bf16 矩阵乘峰值的 MFU、显存峰值、生成速度), 默认形状和 gpu 预设各一次;
#      装了 transformers + peft 时顺带 --compare_hf;
#   2. 课程的每个脚本都用 --device cuda 走一遍 (很短的设置, 只检查 CUDA 路径能跑通, 不追求效果):
#      data.py --create_sample -> pretrain.py -> train_sft.py -> train_lora.py -> evaluate.py -> chat.py --prompt。
# 所有产物放在一个临时目录里, 不动仓库里的 data/ 和 checkpoints/; 设置了 $OUT 时日志和 JSON 直接写在那里, 结束时再复制 CSV、PNG。
#
# 用法:  bash gpu_check.sh
#        STEPS=200 bash gpu_check.sh                              # 训练脚本多跑几步
#        DEVICE=cpu STEPS=2 BENCH_ARGS=--quick bash gpu_check.sh  # 没有 GPU 时只检查这个脚本本身的参数对不对
set -euo pipefail
cd "$(dirname "$0")"

DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-60}           # 每个训练脚本的优化步数
BENCH_ARGS=${BENCH_ARGS:-}   # 追加给 bench.py 的参数
W=$(mktemp -d -t gpu_check.XXXX)
# 日志和 bench 的 JSON 直接写进结果目录 ($OUT, 没设时就是 W): 整个脚本超时被杀掉、退出时的复制来不及做, 已经跑完的步骤的结果也还在;
# Python 的输出不缓冲, 卡住的那一步之前打印的也都进了日志
R=${OUT:-$W}
mkdir -p "$R"
export PYTHONUNBUFFERED=1
exec 3>&1 4>&2  # 留着原来的输出: 退出时先关掉 tee 的管道、等它写完日志, 再复制
exec > >(tee "$R/gpu_check.log") 2>&1
TEE=$!

copy_out() {
    exec 1>&3 2>&4
    wait "$TEE" 2>/dev/null || true
    if [ "$R" != "$W" ]; then
        cp "$W"/*.csv "$W"/*.png "$R"/ 2>/dev/null || true
        echo "结果在 $R"
    fi
}
trap copy_out EXIT
step() { echo; echo "== $1 ($(date +%H:%M:%S)) =="; }

step "0. 机器"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true  # 查不到也不要让 set -e 停下整个检查
fi
python -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '没有可用的 CUDA')"
HF=""
if python -c "import transformers, peft" 2>/dev/null; then HF="--compare_hf"; fi
# GPU 上默认形状的一步只要一两毫秒: 默认的 2 步一次计时太短, 量到的多是启动开销和抖动
TIMING=(--warmup 5 --steps 30)

step "1. bench.py: 默认形状 (5.8M 参数, batch 16 x 256) $HF"
python bench.py --device "$DEVICE" "${TIMING[@]}" $HF --json "$R/bench_default.json" $BENCH_ARGS

step "2. bench.py: gpu 预设 (约 1 亿参数, batch 16 x 512), GPU 该有的 MFU 看这里"
if [[ " $BENCH_ARGS " == *" --quick "* ]]; then
    echo "(BENCH_ARGS 里有 --quick: 它固定用 tiny 形状, 不能和 --preset gpu 一起用, 跳过这一步)"
else
    python bench.py --device "$DEVICE" --preset gpu --seq_len 512 "${TIMING[@]}" $HF --json "$R/bench_gpu.json" $BENCH_ARGS
fi

step "3. data.py --create_sample"
python data.py --create_sample --out_dir "$W/data"

TRAIN=(--device "$DEVICE" --max_steps "$STEPS" --eval_interval "$STEPS" --eval_batches 5)
SFT_DATA=(--data_path "$W/data/sft_train.jsonl" --eval_path "$W/data/sft_eval.jsonl")
step "4. pretrain.py"
python pretrain.py "${TRAIN[@]}" --data_path "$W/data/pretrain.txt" --eval_path "$W/data/pretrain_eval.txt" \
    --tokenizer "$W/data/tokenizer.json" --out "$W/base_model.pt"

step "5. train_sft.py"
python train_sft.py "${TRAIN[@]}" "${SFT_DATA[@]}" --init "$W/base_model.pt" --out "$W/sft_model.pt"

step "6. train_lora.py"
python train_lora.py "${TRAIN[@]}" "${SFT_DATA[@]}" --init "$W/base_model.pt" --out "$W/lora_adapter.pt"

step "7. evaluate.py"
python evaluate.py "$W/base_model.pt" "$W/sft_model.pt" "$W/lora_adapter.pt" --device "$DEVICE" \
    --data_path "$W/data/sft_eval.jsonl" --ppl_path "$W/data/pretrain_eval.txt" --limit 50 --samples 1 \
    --json "$R/eval.json"

step "8. chat.py --prompt"
python chat.py --device "$DEVICE" --checkpoint "$W/sft_model.pt" --prompt "你好" --max_new_tokens 64 --verbose

step "9. 训练日志: 每步 tokens/s 的中位数 (GPU 上单步计时会把上一步没做完的异步工作算进来, 看中位数不看某一步)"
for f in "$W"/*.log.csv; do
    [ -e "$f" ] || continue  # 一个日志也没有时, 通配符原样留着
    python -c "import csv, statistics, sys; v = [float(r['tokens_per_s']) for r in csv.DictReader(open(sys.argv[1]))]; print(sys.argv[2], len(v), '步, tokens/s 中位数', round(statistics.median(v)))" "$f" "$(basename "$f")"
done
echo; echo "全部完成, 产物在 $W"
