"""测试公共设置: 让 tests/ 能 import 仓库顶层的脚本, 并把 torch 限制在少量线程 (CI 只有 2 核)。"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

torch.set_num_threads(1)
