"""cli.py — 各脚本共用的几件小事: 命令行入口 run_main (用户按 Ctrl-C、或输出接到提前关闭的管道上时, 不打印 traceback),
参数解析器 make_parser (--help 里写出默认值, 不接受缩写的参数名, 写错时一行中文), 原子写文件 write_atomically
(checkpoint、分词器、示例数据和 --json 结果都经过它; 写不了时的那一行错误也在这里), 以及在课程目录之外运行时
"找不到文件" 后面补的那半句 elsewhere。

单独成一个文件、只用标准库: tokenizer.py 和 sample_data.py 为了命令行启动快, 故意不导入 torch, 也要用它。
各脚本在 import torch 之前先导入本模块: 导入 torch 要一两秒, 这时按 Ctrl-C 还没进 run_main, 由下面的 sys.excepthook 接住。
训练循环里的 Ctrl-C (和 SIGTERM) 不在这里: 那由 trainer.StopSignal 接管 (做完当前一步、存好续训状态再退出)。
"""
import argparse
import ast
import errno
import os
import re
import sys

INTERRUPTED = "\n已中断 (Ctrl-C)"


def _quiet_ctrl_c(kind, value, tb):
    """没被接住的 KeyboardInterrupt (例如按在 import torch 的那一两秒里) 只打印一行; Python 随后照常按 SIGINT 退出
    (shell 里的退出码 130)。其他异常照旧打印 traceback: 那是程序的 bug, 要看得见。"""
    if issubclass(kind, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, tb)


sys.excepthook = _quiet_ctrl_c


def run_main(main):
    """各脚本的入口: 在加载数据、建模型这些训练之外的时候按 Ctrl-C, 只打印一行并以 130 退出, 不打印 traceback。
    输出接到提前关闭的管道上 (如 `python data.py --show | head -1`) 时安静退出; 磁盘满了只打一行。"""
    if sys.stdout is not None and hasattr(sys.stdout, "reconfigure"):
        # 终端或重定向的编码 (如中文 Windows 的 GBK) 表示不了的字符 (例如模型吐出的半个字 "\ufffd") 印成 "?", 而不是报错退出
        sys.stdout.reconfigure(errors="replace")
    if os.environ.get("RANK", "0") != "0":
        # torchrun 的其他进程 (rank 1, 2, …): 读数据、建模型时的那些提示, 只由 rank 0 说一遍。错误走 stderr, 照样看得见
        sys.stdout = open(os.devnull, "w", encoding="utf-8", errors="replace")
    try:
        main()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        raise SystemExit(130)
    except BrokenPipeError:
        _drop_stdout()
        raise SystemExit(1)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        _drop_stdout()  # 多半是输出重定向到的磁盘满了
        raise SystemExit(f"错误: 写不下去了 ({e.strerror}{': ' + str(e.filename) if e.filename else ''})。"
                         "腾出磁盘空间, 或把输出重定向到别处") from None


class _HelpFormatter(argparse.HelpFormatter):
    """--help 的每一行后面写出默认值 (帮助文字里已经说了默认是什么的, 以及默认是 "没有" 的 (None、False 开关、空列表), 不写)。"""

    def _get_help_string(self, action):
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == [] or action.default == argparse.SUPPRESS
        if action.option_strings and not nothing and "默认" not in text:  # 用 is 比: 0 == False, 默认 0 也要写出来
            text += " (默认: %(default)s)"
        return text


# argparse 自己的几种英文报错, 换成一句中文; 没列出的原样保留 (仍然只有一行)。
# argparse 引用收到的值时用的是 repr (有单引号的值用双引号), 这里原样照抄那一段, 不再 repr 一次
_QUOTED = r"('.*'|\".*\")"
_ARGPARSE_ERRORS = [
    (rf"argument (\S+): invalid (int|float) value: {_QUOTED}",
     lambda m, p: f"{m[1]} 要一个{'整数' if m[2] == 'int' else '数'}, 收到 '{ast.literal_eval(m[3])}'"),
    (rf"argument (\S+): invalid choice: {_QUOTED} \(choose from (.*)\)", lambda m, p: f"{m[1]} 不认识 '{ast.literal_eval(m[2])}', 可选: {m[3]}"),
    (r"argument (\S+): expected one argument", lambda m, p: f"{m[1]} 后面少了一个值{_dash_hint(m[1], p)}"),
    (r"argument (\S+): expected at least one argument", lambda m, p: f"{m[1]} 后面至少要一个值"),
    (rf"argument (\S+): ignored explicit argument {_QUOTED}", lambda m, p: f"{m[1]} 是开关, 不带值: 要打开就只写 {m[1].split('/')[-1]}"),
    (r"the following arguments are required: (.*)", lambda m, p: f"缺少参数 {m[1]}"),
]


def _dash_hint(flag, parser):
    """--prompt -你好: argparse 把以 - 开头的 "-你好" 当成另一个参数名, 报 --prompt 少了值。这时说怎么写。"""
    names, argv = flag.split("/"), sys.argv[1:]
    follows = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in names]
    value = follows[-1] if follows else ""
    if not value.startswith("-") or value.split("=")[0] in parser._option_string_actions:  # 后面跟的真是另一个参数: 就是少了值
        return ""
    return f" (值以 - 开头时连着写: {names[-1]}={value})"


def _script():
    """--help 提示里的脚本路径: 在别的目录里运行 (python sft/train_sft.py) 时照用户的写法, 而不是只写文件名。"""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "脚本"
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel


class _Parser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        """多出来的参数分两种说: 不认识的参数名 (连同紧跟着它的值, 如 --r 8) 和没有参数名的多余值 (如 --epochs 1 2 里的 2)。
        argparse 只说一句 "unrecognized arguments: --r 8 2", 分不出是哪一种。"""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            unknown, stray, wants_value = [], [], False
            for a in extras:
                if a.startswith("-") and a != "-":
                    unknown.append(a)
                    wants_value = "=" not in a
                elif wants_value:  # 紧跟在不认识的参数名后面的值, 多半是它的值
                    unknown[-1] += f" {a}"
                    wants_value = False
                else:
                    stray.append(a)
            said = []
            if unknown:
                said.append(f"不认识的参数 {', '.join(unknown)} (参数名要写全, 不接受缩写)")
            if stray:
                values = " ".join(f"'{a}'" for a in stray)
                said.append(f"多出来的值 {values} (每个参数只跟一个值; 值里有空格就整个加引号)")
            self.error("; ".join(said))
        return namespace

    def error(self, message):
        """参数写错时只打一行: 错在哪、怎么查, 而不是一整屏 usage 加一句英文 (argparse 的默认行为)。退出码仍是 2。"""
        for pattern, say in _ARGPARSE_ERRORS:
            m = re.fullmatch(pattern, message)
            if m:
                message = say(m, self)
                break
        self.exit(2, f"错误: {message}。运行 python {_script()} --help 看全部参数和写法\n")


def make_parser(description):
    """各脚本的 argparse 解析器。allow_abbrev=False: argparse 默认接受参数名的前缀, 于是 --r 8 (想写 --lora_r 8)
    会被当成 --resume, 报一个让人摸不着头脑的 "unrecognized arguments: 8"; 这里只认完整的参数名。"""
    return _Parser(description=description, allow_abbrev=False, formatter_class=_HelpFormatter)


PROJECT_DIR = os.path.dirname(os.path.realpath(__file__))


def elsewhere(path):
    """找不到 path 时该怎么办的那半句, 用在 `elsewhere(path) or "先运行 ..."` 里。相对路径按当前目录找: 学习者在别的目录里运行
    (python sft/train_sft.py), data/、checkpoints/ 就按那个目录找, 而文件其实在课程目录里 —— 这时说出去哪里运行。否则是空串。"""
    if os.path.isabs(path) or os.path.realpath(os.getcwd()) == os.path.realpath(PROJECT_DIR) or not os.path.exists(os.path.join(PROJECT_DIR, path)):
        return ""
    return f"相对路径按当前目录 {os.getcwd()} 找, 而课程目录里有 {path}: 先 cd {PROJECT_DIR} 再运行"


def _drop_stdout():
    """退出时 Python 还会 flush 一次 stdout, 再报一次同样的错: 先把 stdout 换成 /dev/null。"""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _remove_stale_tmp(path):
    """被 kill -9 (或断电) 打断的写入会留下 path.<进程号>.tmp, 一个 checkpoint 那么大, 之后没人收拾。
    这里删掉进程已经不在了的那些; 还活着的进程 (可能正在写同一个 path) 的不动。只在 POSIX 上做:
    Windows 上 os.kill(pid, 0) 不是 "问一声", 而是结束那个进程。"""
    if os.name != "posix":
        return
    folder, name = os.path.split(os.path.abspath(path))
    for entry in os.listdir(folder):
        pid = entry[len(name) + 1:-len(".tmp")]
        if not (entry.startswith(name + ".") and entry.endswith(".tmp") and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # 进程不在了: 这是它没写完的临时文件
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass
        except OSError:  # 进程在, 只是不归我们管 (PermissionError): 不动
            pass


def write_atomically(path, write, mode="w", hint="检查路径、权限和磁盘空间"):
    r"""先写到临时文件、刷到磁盘, 再改名覆盖 path (同一个文件系统里的改名是原子的): 写到一半失败或被打断
    (磁盘满、Ctrl-C、断电) 时, path 上要么是原来的内容, 要么是完整的新内容, 不会是半个文件; 半个临时文件也删掉。
    临时文件名里带进程号 (path.<pid>.tmp): 不会盖掉用户自己的 path.tmp, 两个进程同时写同一个 path 也不会互相踩;
    进程已经不在了的 (被 kill -9 打断的写入) 下一次写同一个 path 时删掉。
    write(f) 往打开的临时文件里写; mode "w" 是 UTF-8 文本 (换行一律 \n), "wb" 是二进制。
    写不了 (磁盘满、没有权限, 即 OSError) 时一行错误 "写不了 path (原因)。hint" 并退出; 其他异常原样抛出。"""
    tmp, folder = f"{path}.{os.getpid()}.tmp", os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_stale_tmp(path)
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if os.name == "posix":  # 改名本身也刷到磁盘: 断电之后, path 上是新文件 (而不只是 "不会是半个文件")
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise SystemExit(f"错误: 写不了 {path} ({e.strerror or e})。{hint}") from None
        raise
