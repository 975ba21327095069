#!/usr/bin/env bash
# 整节课从头到尾: 数据 -> 底座 -> 全参数 SFT -> LoRA -> 评估 -> 三个模型并排回答同样的问题。
# 2 核 CPU (AMD EPYC) 上默认设置之前七次 11 分 46 秒到 12 分 31 秒, 机器慢的一天 15 分多、矩阵乘慢一倍的一台 24 分, 以前十五次 12 分半到 15 分半; 2 核 Intel Xeon 上八次 10 分到 13 分 (实测见 README 7.2 和附录 A.1)。有 GPU 的话: bash run_lesson.sh --device cuda
# 额外参数 (如 --device cuda、--epochs 1) 会传给每个训练脚本; 只收三个脚本共有而且含义相同的参数。
# 训练中途按了 Ctrl-C? 训练脚本会把进度存成 checkpoints/<名字>.resume.pt; 再运行一次本脚本, 就从被打断的那个训练步骤
# 接着训练 (之前已经跑完的训练步骤跳过; 在训练之外按的 Ctrl-C 不留进度, 重跑就从头来)。想从头来过, 先 rm checkpoints/*.resume.pt。
set -euo pipefail
cd "$(dirname "$0")"

for arg in "$@"; do
  if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then  # 只打印上面的说明; 各训练脚本的参数见 python pretrain.py --help 等
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' run_lesson.sh
    echo "每个训练脚本的参数: python pretrain.py --help, python train_sft.py --help, python train_lora.py --help"
    exit 0
  fi
done

# 额外参数原样传给三个训练脚本, 所以只收对三个脚本都有意义的那几个。--out、--init、--data_path 会让三个脚本写同一个文件
# 或读同一份数据, --lora_r 这类只有一个脚本认识, --lr、--warmup_steps 三个脚本的默认值各不相同: 这些单独运行那个脚本时再给。
# --epochs 和 --batch_size 的默认值也不同, 但收下: 想让整节课快一点 (--epochs 1) 或按显存放大 batch 时, 最先想到的就是它们
shared="--device --epochs --max_steps --batch_size --grad_accum --seed --eval_interval --eval_batches --save_interval"
shared="$shared --weight_decay --grad_clip --min_lr_ratio --compile --resume"
# 在跑任何一步之前查完: 否则写错的参数要等生成完数据、轮到第一个训练脚本时才报错
value_of=""  # 上一个参数是要带值的 (如 --epochs), 这一个就是它的值
for arg in "$@"; do
  if [ -n "$value_of" ]; then
    if [[ "$arg" == --* ]]; then break; fi  # 该是值的地方来了下一个参数 (--device --epochs 1): 下面报 "少了值"
    value_of=""; continue
  fi
  case "$arg" in
    --resume=*|--compile=*)
      echo "错误: ${arg%%=*} 是开关, 不带值: 要打开就写 ${arg%%=*}, 不要就不写" >&2
      exit 2 ;;
    --*) if [[ " $shared " != *" ${arg%%=*} "* ]]; then
           echo "错误: bash run_lesson.sh 不收 ${arg%%=*}: 额外参数会传给全部三个训练脚本, 只收 ${shared// /, }。要改单个脚本的设置, 单独运行它 (python pretrain.py / train_sft.py / train_lora.py --help 列出各自的参数)" >&2
           exit 2
         fi
         if [ "$arg" != "--resume" ] && [ "$arg" != "--compile" ] && [[ "$arg" != *=* ]]; then value_of=$arg; fi ;;
    *) echo "错误: bash run_lesson.sh 不收 $arg: 额外参数要写成 --名字 值 (例如 --epochs 1 或 --device cuda)" >&2
       exit 2 ;;
  esac
done
if [ -n "$value_of" ]; then
  echo "错误: $value_of 后面少了值: 写成 $value_of 值 (各参数的含义和取值见 python train_sft.py --help)" >&2
  exit 2
fi

# 续训由下面的 train 自己决定加不加 --resume; 用户照着中断提示加的 --resume 去掉, 否则没被打断的步骤会因为找不到续训状态而停下
for arg in "$@"; do
  shift
  if [ "$arg" != "--resume" ]; then set -- "$@" "$arg"; fi
done

# 上次在哪个训练步骤被打断 (第一个留下续训状态的), 空串表示没有
interrupted=""
for name in base_model sft_model lora_adapter; do
  if [ -z "$interrupted" ] && [ -f "checkpoints/$name.resume.pt" ]; then interrupted=$name; fi
done

# train 名字 脚本 参数...: 跑一个训练脚本, 它的输出是 checkpoints/名字.pt
train() {
  local name=$1 script=$2
  shift 2
  if [ "$interrupted" = "$name" ]; then
    echo "(上次在这一步被打断, 接着训练: python $script --resume)"
    interrupted=""
    python "$script" --resume "$@"
  elif [ -n "$interrupted" ] && [ -f "checkpoints/$name.pt" ]; then
    echo "(上次已经跑完这一步, 跳过)"
  elif [ -f "checkpoints/$name.resume.pt" ]; then
    # 更早的某次运行在这一步被打断过, 可它的起点 (前面的步骤) 这次刚重新训练过: 旧进度接不上新起点
    echo "错误: checkpoints/$name.resume.pt 是更早一次没训练完的运行, 它用的起点刚被前面的步骤重新训练过, 接不上了。" \
      "删掉它 (rm checkpoints/$name.resume.pt) 再运行 bash run_lesson.sh" >&2
    exit 1
  else
    python "$script" "$@"
  fi
}

echo "== 1. 生成示例数据并训练分词器"
python data.py --create_sample
python data.py --show --index 0

echo "== 2. 预训练底座模型 (课程第 3 步的快速替身)"
train base_model pretrain.py "$@"

echo "== 3. 全参数 SFT"
train sft_model train_sft.py "$@"

echo "== 4. LoRA 微调 (r=8, q_proj,v_proj)"
train lora_adapter train_lora.py "$@"

echo "== 5. 评估: 底座 vs SFT vs LoRA"
python evaluate.py checkpoints/base_model.pt checkpoints/sft_model.pt checkpoints/lora_adapter.pt

echo "== 6. 同样的问题, 三个模型各自回答"
for q in "你好，你是谁？" "深的反义词是什么？" "23加45等于多少？" "韦轩文出生在哪里？"; do
  echo "问: $q"
  python chat.py --temperature 0 --max_new_tokens 40 --prompt "$q" \
    --compare checkpoints/base_model.pt checkpoints/sft_model.pt checkpoints/lora_adapter.pt
done
