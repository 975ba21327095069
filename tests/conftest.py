"""测试公共设置: 让 tests/ 能 import 仓库顶层的脚本, 并把 torch 限制在少量线程 (CI 只有 2 核)。"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# 测试启动的脚本子进程 (它们继承这里的环境变量) 也只用 1 个线程: 测试分在几个进程里并行跑 (pytest.ini),
# 每个子进程再开 2 个线程, 2 核的机器上就会互相等待
os.environ["OMP_NUM_THREADS"] = "1"
import torch  # noqa: E402

torch.set_num_threads(1)
