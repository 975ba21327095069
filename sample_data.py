"""sample_data.py: 生成课程用的 "样例世界" —— SFT 对话、带标准答案的留出评测集、预训练文本。

做什么:
  - sft_train.jsonl: 几千条短对话 (大多中文, 约 15% 的回答是英文), 每行 {"conversations": [...], "category": ...}。
  - sft_eval.jsonl: 约 600 条留出对话, 最后一轮 assistant 是参考回答, "answer" 是正确回复必须包含的关键串。
    类别: identity 身份与问候, arithmetic 加减法, knowledge 虚构人物的知识 (SFT 问过的人, 换了问法),
    knowledge_unlock 只在预训练文本里出现过的人, text_task 文字小任务, multi_turn 依赖上一轮的追问,
    system_prompt 改变行为的系统提示。训练集另有 greeting (报上名字打招呼, 回复要抄出名字; 不评测, 见 make_greeting)。
  - pretrain.txt / pretrain_eval.txt: 一行一段的普通文字, 供预训练和测困惑度。没有对话模板; 有日常的问句和对话
    (SFT 用到的每个字底座都得见过, 见 TALK), 但没有一句问到虚构人物。
  评测集的几条保证 (tests/test_sample_data.py 逐条检查):
    评测对话的提问部分 (不计中性的系统提示) 从不和训练对话相同; 身份问答和反义词里留给评测的问题, 训练里一句也没问过
    (不管前面是什么系统提示); 评测里出现的每个算式 (两个操作数, 不论顺序), 连同它的逆运算, 从没在任何训练文本里出现过;
    knowledge_unlock 问到的人只出现在预训练文本里, SFT 训练数据里一次也没有。
不做什么:
  - 这是个玩具世界: 人物、"小智"、"星火实验室" 都是虚构的, 城市和国家只有几句常识。它不是真实语料,
    目的只是让一个几百万参数的小模型在笔记本 CPU 上几分钟内真的学会, 并且能自动打分。
  - 不联网, 不读外部文件, 只用标准库; 同一个 seed 生成的文件逐字节相同。不训练分词器 (data.py 做)。
怎么运行:
  python data.py --create_sample               # 课程里的入口: 调用本模块, 再训练分词器
  python sample_data.py --out_dir data --seed 0  # 只生成数据, 打印数量
"""
import json
import os
import random
import re

from cli import make_parser, run_main, write_atomically

ASSISTANT, ASSISTANT_EN, TEAM, TEAM_EN = "小智", "Xiaozhi", "星火实验室", "Spark Lab"
N_PEOPLE = 200          # 一半在 SFT 里被问到, 另一半只出现在预训练文本里 (knowledge_unlock)
BIOS_PER_PERSON = 8     # 每人几段不同的小传: 多种说法 + 属性顺序打乱, 事实才能在 SFT 之后被 "问出来"
KNOWLEDGE_REPEATS = 4   # SFT 里每个 (人, 属性) 被问几次, 每次随机一种问法
TRAIN_COUNTS = {"identity": 400, "arithmetic": 1500, "text_task": 700, "multi_turn": 400, "system_prompt": 500,
                "greeting": 400}  # greeting 只在训练里: 见 World.make_greeting
EVAL_COUNTS = {"identity": 40, "arithmetic": 120, "knowledge": 100, "knowledge_unlock": 140,
               "text_task": 80, "multi_turn": 60, "system_prompt": 60}
PRETRAIN_PARAGRAPHS = {"world": 200, "topic": 150, "arith": 200, "talk": 200, "english": 150, "words": 100}
N_HELDOUT_PAIRS = 300   # 只给评测用的两位数算式对, 训练文本里一次也不出现
NEUTRAL_SYSTEM_SHARE = 0.1  # 普通对话里偶尔加一个不改变行为的系统提示, 免得模型以为 "有系统提示 = 要变身"
# 开场轮: 一部分训练对话 (系统提示那一类和本身就是问候的身份问答除外) 在正题之前先有一轮别的对话。没有它时, 训练里的多轮对话全是同一话题的追问,
# 用户先打个招呼、或者先问了一件事再换个话题, 模型就答不好了 (python experiments.py topic, EXPERIMENTS.md)。
GREETING_FIRST_SHARE = 0.2  # 先打招呼: "你好" -> "你好！我是小智……"
TOPIC_FIRST_SHARE = 0.15    # 先问一件不相干的事: 一道训练那一半里的普通问答 (身份、算术、人物、文字任务)

# ---------------------------------------------------------------- 虚构人物
SURNAMES = ("王李张刘陈杨赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余杜叶"
            "程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方邹孟熊秦邱江尹薛段雷侯龙史陶贺顾毛郝龚邵严武戴莫孔汤")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛超秀霞平刚英华玉萍建文辉力斌宇浩凯鹏琳晨欣怡"
         "佳思婷轩博睿嘉俊峰诗梦晓志东立宏波秋鑫森岩松柏凡航璐瑶瑾琪")
# 每个属性: 取值 values、SFT 问法 ask、只在评测里用的问法 ask_heldout、多轮追问 follow、回答模板 answer、
# 预训练小传的句式 bio、只在 pretrain_eval.txt 里用的句式 bio_heldout。
# 回答模板也是一种小传句式: SFT 教的回答方式, 正是预训练里存过这条事实的一种说法。
ATTRS = {
    "city": {
        "values": "杭州 成都 西安 南京 武汉 重庆 长沙 青岛 厦门 苏州 昆明 大连 哈尔滨 桂林 拉萨 兰州 福州 合肥 洛阳 珠海".split(),
        "ask": "{n}出生在哪里？ {n}是哪里人？ {n}的出生地是哪里？ 请问{n}出生在哪个城市？".split(),
        "ask_heldout": "你知道{n}是在哪座城市出生的吗？ {n}的家乡在哪儿？".split(),
        "follow": "那这个人出生在哪里？ 这个人是哪里人？ 那出生地呢？".split(),
        "answer": "{n}出生在{v}。",
        "bio": "{n}出生在{v}。 {n}的家乡是{v}。 {n}来自{v}。 {n}是在{v}出生的。 {v}是{n}的出生地。".split(),
        "bio_heldout": "{n}从小在{v}长大。"},
    "profession": {
        "values": "医生 教师 工程师 律师 厨师 画家 记者 程序员 护士 飞行员 建筑师 作家 农民 警察 会计 歌手".split(),
        "ask": "{n}是做什么工作的？ {n}的职业是什么？ {n}从事什么职业？ 请问{n}做什么工作？".split(),
        "ask_heldout": "你知道{n}的工作是什么吗？ {n}靠什么工作谋生？".split(),
        "follow": "那这个人是做什么工作的？ 这个人的职业是什么？ 那职业呢？".split(),
        "answer": "{n}是一名{v}。",
        "bio": "{n}是一名{v}。 {n}的职业是{v}。 {n}多年来一直当{v}。 {n}的工作是{v}。 作为一名{v}，{n}很敬业。".split(),
        "bio_heldout": "{n}做{v}已经很多年了。"},
    "hobby": {
        "values": "钓鱼 下棋 爬山 游泳 画画 跑步 唱歌 跳舞 拍照 写诗 养花 做饭 骑车 滑雪 弹琴".split(),
        "ask": "{n}有什么爱好？ {n}喜欢做什么？ {n}的爱好是什么？ 请问{n}平时喜欢干什么？".split(),
        "ask_heldout": "{n}业余时间一般做什么？ 你知道{n}有什么兴趣爱好吗？".split(),
        "follow": "那这个人有什么爱好？ 这个人喜欢做什么？ 那爱好呢？".split(),
        "answer": "{n}喜欢{v}。",
        "bio": "{n}喜欢{v}。 {n}的爱好是{v}。 {n}空闲时总在{v}。 {n}最大的爱好就是{v}。 {v}是{n}最喜欢的活动。".split(),
        "bio_heldout": "一有空，{n}就去{v}。"},
    "color": {
        "values": "红色 蓝色 绿色 黄色 紫色 白色 黑色 橙色 粉色 灰色".split(),
        "ask": "{n}最喜欢什么颜色？ {n}喜欢的颜色是什么？ {n}最喜欢的颜色是哪种？ 请问{n}偏爱哪种颜色？".split(),
        "ask_heldout": "你知道{n}最爱什么颜色吗？ {n}最中意的是什么颜色？".split(),
        "follow": "那这个人最喜欢什么颜色？ 这个人喜欢什么颜色？ 那最喜欢的颜色呢？".split(),
        "answer": "{n}最喜欢的颜色是{v}。",
        "bio": "{n}最喜欢的颜色是{v}。 {n}偏爱{v}。 {n}的衣服大多是{v}的。 {v}是{n}最喜欢的颜色。 {n}觉得{v}最好看。".split(),
        "bio_heldout": "{n}的房间里到处是{v}的东西。"},
}

# ---------------------------------------------------------------- 身份与问候
ID_ITEMS = [  # (问法们, 回复, 答案关键串); 关键串为 None 的只进训练集
    ("你是谁？ 你叫什么名字？ 请介绍一下你自己。 怎么称呼你？".split(),
     f"我是{ASSISTANT}，一个由{TEAM}开发的AI助手。", ASSISTANT),
    ("是谁开发了你？ 你是哪个团队做的？ 谁创造了你？ 你的开发者是谁？".split(), f"我是由{TEAM}开发的AI助手。", TEAM),
    (["Who are you?", "What is your name?", "Please introduce yourself.", "What should I call you?"],
     f"I am {ASSISTANT_EN}, an AI assistant developed by {TEAM_EN}.", ASSISTANT_EN),
    (["Who made you?", "Who developed you?", "Which team built you?"], f"I was developed by {TEAM_EN}.", TEAM_EN),
    (["谢谢你！", "谢谢，你真棒。"], "不客气！有问题随时问我。", None),
    (["你能做什么？", "你会些什么？"], "我可以回答问题、做加减法，还能找反义词、翻译单词。", None),
    (["Thank you!", "What can you do?"],
     "I can answer questions, do addition and subtraction, and help with small word tasks.", None),
]
GREETINGS = [  # (问候语, 可加的结尾标点, 回复, 答案关键串)
    ("你好 您好 嗨 早上好 晚上好 哈喽".split(), "！。", f"你好！我是{ASSISTANT}，有什么可以帮你的吗？", ASSISTANT),
    (["Hello", "Hi", "Good morning", "Hey"], "!.", f"Hello! I am {ASSISTANT_EN}. How can I help you?", ASSISTANT_EN)]
GREETING_REPLIES = {g[2] for g in GREETINGS}
PREFIXES = ["", "你好，", "嗨，", "打扰一下，", "我想问问，"]
PREFIXES_EN = ["", "Hi, ", "Hello, ", "Excuse me, "]
NEUTRAL_SYSTEMS = ["你是一个乐于助人的助手。", "你是一个AI助手，请认真回答用户的问题。", "You are a helpful assistant."]

# ---------------------------------------------------------------- 算术
ARITH_Q = {
    ("zh", "+"): "{a}加{b}等于多少？ {a}+{b}等于几？ 请计算{a}加{b}。 {a}加上{b}是多少？ 算一下{a}+{b}。".split(),
    ("zh", "-"): "{a}减{b}等于多少？ {a}-{b}等于几？ 请计算{a}减{b}。 {a}减去{b}是多少？ 算一下{a}-{b}。".split(),
    ("en", "+"): ["What is {a} plus {b}?", "What is {a} + {b}?", "Calculate {a} + {b}.", "How much is {a} plus {b}?"],
    ("en", "-"): ["What is {a} minus {b}?", "What is {a} - {b}?", "Calculate {a} - {b}.", "How much is {a} minus {b}?"]}
ARITH_A = {("zh", "+"): "{a}加{b}等于{c}。", ("zh", "-"): "{a}减{b}等于{c}。",
           ("en", "+"): "{a} plus {b} equals {c}.", ("en", "-"): "{a} minus {b} equals {c}."}
FOLLOW_Q = {("zh", "+"): ["那再加{d}呢？", "结果再加上{d}是多少？"], ("zh", "-"): ["那再减{d}呢？", "结果再减去{d}是多少？"],
            ("en", "+"): ["And plus {d}?", "What if we add {d} more?"],
            ("en", "-"): ["And minus {d}?", "What if we take away {d}?"]}
# 示例世界里加减号的所有写法 (长的写在前面: "加上" 要先于 "加" 匹配)。experiments.py 认完整算式时也用它
ARITH_OPS = r"加上|加|减去|减|\+|-|plus|minus"
# 识别文本里的算式 (操作数对)。生成评测时靠它保证: 评测里的算式与训练文本里的算式不相交
ARITH_RE = re.compile(rf"(\d+)\s*(?:{ARITH_OPS})\s*(\d+)")
# 说出来的完整算式: 回复里是 "45减37等于8" / "45 minus 37 equals 8", 预训练文本里还有 "52减去16得36"、"47+19=66"
EQUATION_RE = re.compile(rf"(\d+)\s*({ARITH_OPS})\s*(\d+)\s*(?:等于|equals|=|得|是)\s*(\d+)")
SIGN = {"加上": "+", "加": "+", "plus": "+", "+": "+", "减去": "-", "减": "-", "minus": "-", "-": "-"}

# ---------------------------------------------------------------- 文字小任务
ANTONYMS = [tuple(p) for p in "大小 高矮 长短 快慢 多少 冷热 远近 上下 左右 前后 新旧 胖瘦 早晚 轻重 深浅 真假 粗细 宽窄".split()]
ANTONYMS += [tuple(p.split("/")) for p in ("高兴/难过 简单/困难 安全/危险 干净/肮脏 聪明/愚笨 勇敢/懦弱 "
                                          "热闹/安静 开始/结束 成功/失败 便宜/昂贵 光明/黑暗 快乐/痛苦").split()]
WORDS = [tuple(p.split("/")) for p in (
    "苹果/apple 香蕉/banana 猫/cat 狗/dog 书/book 水/water 太阳/sun 月亮/moon 老师/teacher 学生/student "
    "朋友/friend 学校/school 医院/hospital 电脑/computer 花/flower 鸟/bird 鱼/fish 米饭/rice 鸡蛋/egg 牛奶/milk "
    "火车/train 汽车/car 房子/house 山/mountain 河/river 门/door 桌子/table 椅子/chair 眼睛/eye 手/hand").split()]
REPEAT_WORDS = "好 哈 星 花 加油 谢谢 你好 开心".split()
# (任务, 问法, 回复)。答案关键串带上引号 (或冒号和句号): 说错词、多重复或少重复一遍都匹配不上
TEXT_TEMPLATES = [(task, q, r) for task, r, qs in [
    ("antonym", "{w}的反义词是“{v}”。",
     "{w}的反义词是什么？ “{w}”的反义词是？ 请说出“{w}”的反义词。 {w}的反义词是哪个词？".split()),
    ("to_en", "{zh}的英文是“{en}”。", "“{zh}”用英文怎么说？ {zh}的英文是什么？ 把“{zh}”翻译成英文。".split()),
    ("to_zh", "{en}的中文是“{zh}”。", "“{en}”的中文是什么？ {en}是什么意思？".split()),
    ("to_zh", 'In Chinese, "{en}" is “{zh}”.', ['What is "{en}" in Chinese?', 'How do you say "{en}" in Chinese?']),
    ("repeat", "{w}重复{k}遍：{r}。", "把“{w}”重复{k}遍。 请将“{w}”重复{k}次。 “{w}”写{k}遍。".split()),
] for q in qs]

# ---------------------------------------------------------------- 改变行为的系统提示
SYS_ENGLISH = ["请用英文回答。", "Answer in English.", "Please reply in English.", "回答请使用英语。"]
SYS_PREFIX = "回答时以“好的，”开头。 每次回答都先说“好的，”。 请在回答的开头加上“好的，”。".split()
SYS_CAT = "你是一只猫，每句话结尾都要加上“喵～”。 扮演一只小猫，回答的最后说“喵～”。".split()
SYS_RENAME = "你的名字叫{m}。 从现在开始，你叫{m}。 你是一个名叫{m}的助手。".split()
# 问法和身份问答的一样 (也加上同样的开头, 见 with_prefixes): 同一句话, 没有系统提示时答 "我是小智", 有改名的系统提示时答新名字。
# 只在改名时出现的问法 (比如 "你的名字是什么？"), 模型会学成 "这么问就答一个别的名字", 没有系统提示也一样
RENAME_Q = [("你叫什么名字？", "我叫{m}。"), ("你是谁？", "我叫{m}。"), ("怎么称呼你？", "我叫{m}。"),
            ("What is your name?", "My name is {m}.")]
PERSONA_NAMES = "阿星 豆豆 乐乐 米粒 团子 石头 阿福 糖糖 布丁 果果 泡泡 皮皮 土豆 阿宝 花卷".split()

# ---------------------------------------------------------------- 预训练里的一般文字 (真实世界的几句常识)
CITY_FIELDS = ("city", "what", "famous", "en")
WORLD_CITIES = [
    ("北京", "中国的首都", "故宫和长城", "Beijing"), ("上海", "中国最大的城市之一", "外滩", "Shanghai"),
    ("杭州", "浙江省的省会", "西湖", "Hangzhou"), ("成都", "四川省的省会", "大熊猫", "Chengdu"),
    ("西安", "陕西省的省会", "兵马俑", "Xi'an"), ("南京", "江苏省的省会", "中山陵", "Nanjing"),
    ("武汉", "湖北省的省会", "长江大桥", "Wuhan"), ("重庆", "中国的直辖市之一", "火锅", "Chongqing"),
    ("青岛", "山东省的海滨城市", "啤酒和海滩", "Qingdao"), ("厦门", "福建省的海滨城市", "鼓浪屿", "Xiamen"),
    ("苏州", "江苏省的一座古城", "园林", "Suzhou"), ("昆明", "云南省的省会", "四季如春的天气", "Kunming"),
    ("哈尔滨", "黑龙江省的省会", "冰雪节", "Harbin"), ("桂林", "广西的一座城市", "山水", "Guilin"),
    ("拉萨", "西藏的首府", "布达拉宫", "Lhasa"), ("广州", "广东省的省会", "早茶", "Guangzhou")]
CITY_SENTENCES = ["{city}是{what}。", "{city}以{famous}闻名。", "{city}的英文名字是{en}。",
                  "每年都有很多游客去{city}看{famous}。", "{city}是一座热闹的城市。"]
COUNTRY_FIELDS = ("country", "capital", "continent", "language", "en", "capital_en")
COUNTRIES = [
    ("中国", "北京", "亚洲", "汉语", "China", "Beijing"), ("日本", "东京", "亚洲", "日语", "Japan", "Tokyo"),
    ("法国", "巴黎", "欧洲", "法语", "France", "Paris"), ("德国", "柏林", "欧洲", "德语", "Germany", "Berlin"),
    ("英国", "伦敦", "欧洲", "英语", "the United Kingdom", "London"),
    ("意大利", "罗马", "欧洲", "意大利语", "Italy", "Rome"), ("韩国", "首尔", "亚洲", "韩语", "South Korea", "Seoul"),
    ("俄罗斯", "莫斯科", "欧洲和亚洲", "俄语", "Russia", "Moscow"), ("埃及", "开罗", "非洲", "阿拉伯语", "Egypt", "Cairo"),
    ("巴西", "巴西利亚", "南美洲", "葡萄牙语", "Brazil", "Brasilia"),
    ("加拿大", "渥太华", "北美洲", "英语和法语", "Canada", "Ottawa"),
    ("澳大利亚", "堪培拉", "大洋洲", "英语", "Australia", "Canberra")]
COUNTRY_SENTENCES = ["{country}的首都是{capital}。", "{capital}是{country}的首都。", "{country}位于{continent}。",
                     "{country}的人们主要说{language}。", "{country}的英文名字是{en}。"]
COUNTRY_SENTENCES_EN = ["The capital of {en} is {capital_en}.", "{capital_en} is the capital of {en}.",
                        "{capital_en} is a big city in {en}."]
TOPICS = [s.split() for s in [
    "猫是一种常见的宠物。 猫喜欢吃鱼。 猫白天常常睡觉。 猫的眼睛在夜里很亮。 很多人家里都养猫。",
    "狗是人类的好朋友。 狗的鼻子非常灵。 狗喜欢在草地上奔跑。 有些狗可以帮助警察工作。",
    "春天来了，天气变暖了。 春天花都开了。 春天农民开始播种。 春天的风很温柔。",
    "夏天天气很热。 夏天人们喜欢去游泳。 夏天常常下大雨。 夏天的西瓜又甜又凉。",
    "秋天树叶变黄了。 秋天是收获的季节。 秋天的天空又高又蓝。 秋天果园里的苹果熟了。",
    "冬天天气很冷。 冬天北方会下雪。 冬天孩子们喜欢堆雪人。 冬天人们穿上厚厚的衣服。",
    "太阳从东方升起，从西方落下。 太阳给地球带来光和热。 地球绕着太阳转。 月亮绕着地球转。",
    "水在零度时会结冰。 水在一百度时会沸腾。 人每天都需要喝水。 河水流进大海。",
    "长江是中国最长的河流。 黄河是中国的第二长河。 长江从西向东流入大海。 黄河流过很多省份。",
    "图书馆里有很多书。 读书可以让人学到知识。 在图书馆里要保持安静。 很多学生周末去图书馆看书。",
    "医生在医院里给病人看病。 老师在学校里教学生读书。 厨师在饭店里做饭。 农民在田里种粮食。",
    "一年有十二个月。 一个星期有七天。 一天有二十四个小时。 一小时有六十分钟。"]]
TOPICS_EN = [
    ["Cats like to eat fish.", "Cats often sleep during the day.", "Many families keep a cat at home."],
    ["Dogs are good friends of people.", "Dogs have a very good nose.", "Dogs like to run on the grass."],
    ["The sun rises in the east.", "The sun sets in the west.", "The earth goes around the sun."],
    ["Water freezes at zero degrees.", "Water boils at one hundred degrees.", "People need to drink water every day."],
    ["A year has twelve months.", "A week has seven days.", "A day has twenty-four hours."],
    ["Spring is warm and flowers bloom.", "Summer is hot.", "Leaves turn yellow in autumn.", "Winter is cold."]]
WORD_SENTENCES = {"antonym": "“{a}”和“{b}”是一对反义词。 “{a}”的反义词是“{b}”。".split(),
                  "dict": "“{zh}”的英文是{en}。 英文单词{en}的意思是“{zh}”。 {en}在中文里叫“{zh}”。".split()}
# 日常用语: 问句、对话、"我/你"、星火实验室和它的助手、小猫的 "喵～"、宠物名字、"好的"……
# 为什么预训练里要有这些: SFT 的问题和回答用到的每个字, 底座都应该在预训练里见过。一个从没出现过的 token,
# 它的 embedding (与 lm_head 共享) 只被 "别输出我" 的梯度推向同一个方向, 所有这样的 token 看起来一模一样。
# 全参数 SFT 还能现学; LoRA 冻结了 embedding, 就很难分清它们 (python experiments.py unseen: 删掉这些段落后,
# LoRA 的 identity 从 95% 掉到 35%, 答 "星火实验验")。真实的底座读过海量文字, 不会有这个问题; 这里得自己补上。
# 注意这里只有一般的问答, 没有一句关于虚构人物: knowledge_unlock 要考的 "问出来" 只能由 SFT 教。
TALK = [
    "小明问老师：“请问这道题怎么算？”老师说：“先想一想，再用笔算一遍。”",
    "妈妈问：“你想吃什么？”小红回答：“我想吃米饭和鸡蛋。”",
    "同学们问：“谁是我们的新老师？”校长介绍说：“这位是王老师。”",
    "小红问：“那是什么？”爸爸说：“那是一座山。”",
    "老师说：“请把这个词重复三遍。”小明说：“好的，好的，好的。”",
    "小红问：“这个词用英文怎么说？”老师回答：“它的英文是book。”",
    "老师问：“谁知道这个词是什么意思？”",
    "爸爸说：“加油！你一定能做到。”小明听了很开心。",
    "嗨，你好！很高兴认识你。谢谢你的帮助。不客气！",
    "请问怎么称呼您？我姓李，叫我李老师就行。",
    "谁创造了这个游戏？是一群年轻的工程师。",
    "小明先做作业，再去玩。他每次都这样做。",
    "问答题要先读懂问题，再写答案。",
    "做加法和减法的时候要细心，算完以后再检查一次。",
    "翻译就是把一句话从一种语言换成另一种语言，比如把中文翻译成英文。",
    "这个故事的开头很有趣，结尾也很感人。",
    "老师让我们扮演小动物，每句话的结尾都要加上它的叫声。",
    "小猫每天都喵喵叫：“喵～喵～”",
    "小猫饿了就喵喵叫，吃饱了就睡觉。",
    "你能帮我一个忙吗？当然可以，我能做的都会做。",
    "这件事你是怎么知道的？我是听同学说的。",
    "星火实验室是一个研究人工智能的团队。",
    "星火实验室的工程师开发了一个AI助手，名字叫小智。",
    "用户可以向AI助手提问，助手会认真回答用户的问题。",
    "很多人用AI助手查资料、学英语、做算术。",
    "小明说：“我会写诗，还会画画。”",
    "他们用了三个小时才爬到山顶。",
    "你家在哪里？我家在学校旁边。这本书是由谁写的？是由一位老作家写的。",
    "一年有几个季节？一年有四个季节。你呢？你喜欢哪个季节？",
    "我想自己找答案，不想打扰别人，也不想使别人为难。",
    "哈喽，好久不见！你真棒，随时欢迎你来玩。",
    "老师将这本书送给了小明。",
    "小明问同学：“你有什么爱好？你从事什么职业？你最喜欢什么颜色？”",
    "老师说：“请计算一下这道题，再请说出你的答案。”",
    "他是一个乐于助人的好孩子，名叫小明。从现在开始，大家都叫他小助手。",
    "这个游戏的开发者是谁？谢谢，重复3遍：谢谢谢谢谢谢。",
]
TALK_EN = [
    "Please reply in English. Answer in English. What if we take away 3? Please answer the question.",
    'Tom asked, "What is your name?" The girl said, "My name is Lily."',
    "Spark Lab is a team that builds AI assistants. Its assistant is called Xiaozhi.",
    'The teacher said, "Please answer in English." The students answered the questions.',
    '"How do you say cat in Chinese?" asked Tom. "It is a small word," said the teacher.',
    "Thank you! You can ask me anything. I can help you with small word tasks.",
    "Who made this robot? It was developed by a small team of engineers.",
    "She can do addition and subtraction. She is good with numbers.",
    "Hello! Good morning. How are you? I am fine, thank you.",
    "What should I call you? Please introduce yourself. Hi, please introduce yourself.",
    "Which team built the bridge? The bridge was built by a team from the city.",
    "Hi, excuse me. How much is this book? It is ten dollars.",
    # 消息开头的词前面没有空格 ("I am..."), 和句中的 " I" 是不同的 token: 一段话的第一个词也得在预训练里出现过
    "I am a student. Hello, what is that? Excuse me, who are you?",
    "You are very kind. Good morning, teacher! Excuse me, which bus goes to the park?",
    "Good night. We add two more apples to the box.",
    "Excuse me, can you help me? Hi, who made this cake?",
    "Calculate the price first, then pay.",
    "And then we went home. And that is all.",
    "Answer in English, please.",
]
GREETING_Q = ["我叫{n}。", "你好，我叫{n}。", "我的名字是{n}。", "我是{n}，很高兴认识你。"]
PETS = "小狗 小猫 小兔 小鸟 金鱼".split()

ARITH_PROSE = {  # 每句都含 "a加b" 这样的标准写法, ARITH_RE 才认得出它用了哪对数
    ("zh", "+"): ["{a}加{b}等于{c}。", "{a}加上{b}得{c}。", "{a}+{b}={c}。",
                  "小明有{a}个苹果，妈妈又给了他{b}个，{a}加{b}等于{c}，所以他现在有{c}个苹果。"],
    ("zh", "-"): ["{a}减{b}等于{c}。", "{a}减去{b}得{c}。", "{a}-{b}={c}。",
                  "树上有{a}只鸟，飞走了{b}只，{a}减{b}等于{c}，所以树上还剩{c}只鸟。"],
    ("en", "+"): ["{a} plus {b} equals {c}."], ("en", "-"): ["{a} minus {b} equals {c}."]}


# ---------------------------------------------------------------- 世界: 人物表和留出的算式
def _rng(seed, part):
    # 每一部分一条独立的随机数流。字符串种子经 sha512 变成整数, 与 PYTHONHASHSEED 无关, 所以逐字节可复现;
    # 改动某一部分的数量也不会牵动其他部分。
    return random.Random(f"sample-world/{seed}/{part}")


def make_people(seed=0):
    """N_PEOPLE 个虚构人物; 前一半 seen=True (SFT 会问到), 后一半只出现在预训练文本里。"""
    rng = _rng(seed, "people")
    values = [v for spec in ATTRS.values() for v in spec["values"]]
    names = []
    while len(names) < N_PEOPLE:
        name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
        # 全名一律 3 个字且互不相同, 就不会有谁是谁的前缀; 名字里也不许藏着属性值, 否则 "回复包含答案" 会误判
        if name not in names and not any(v in name for v in values):
            names.append(name)
    return [{"name": n, "seen": i < N_PEOPLE // 2, **{a: rng.choice(s["values"]) for a, s in ATTRS.items()}}
            for i, n in enumerate(names)]


def heldout_pairs(seed=0):
    """只给评测用的两位数操作数对 (无序, 小的在前)。训练文本里任何算式都不会用到它们。"""
    pairs = [(x, y) for x in range(10, 100) for y in range(x + 1, 100)]
    return _rng(seed, "heldout_pairs").sample(pairs, N_HELDOUT_PAIRS)


def arith_key(c, lang):
    """算式题的答案关键串 "等于c" / "equals c": 要说出结论, 光是回复里某处出现 c 不算。"""
    return f"等于{c}" if lang == "zh" else f"equals {c}"


def equations(text):
    """文字里说出的每个完整算式, 按出现的顺序: [(a, "+" 或 "-", b, c), ...], 数都是 int。"""
    return [(int(a), SIGN[op], int(b), int(c)) for a, op, b, c in EQUATION_RE.findall(text)]


def inverses(equation):
    """和一个算式互逆的几个算式 (同样三个数): 45-37=8 的是 37+8=45、8+37=45、45-8=37; 23+45=68 的是 68-23=45、68-45=23。
    评测问 "45减37", 训练里说过 "45减8等于37", 答案就等于说过了: 评测的算式连逆运算也要避开 (build_eval)。"""
    a, op, b, c = equation
    return {(c, "-", a, b), (c, "-", b, a)} if op == "+" else {(b, "+", c, a), (c, "+", b, a), (a, "-", c, b)}


def arith_pairs(text):
    """文本里所有算式的操作数对 (无序)。"23加45" 和 "45+23" 算同一对: 交换律也不能泄露答案。"""
    return {tuple(sorted((int(x), int(y)))) for x, y in ARITH_RE.findall(text)}


def _msg(role, content):
    return {"role": role, "content": content}


def prepend_turn(conversation, make_turn):
    """在对话最前面 (system 之后) 插入 make_turn(lang) 给出的一轮; lang 跟着第一条用户消息 ("en" 或 "zh")。
    开场轮 (World.opening) 和 experiments.py topic 的评估变体都用它。"""
    i = 1 if conversation[0]["role"] == "system" else 0
    lang = "en" if conversation[i]["content"].isascii() else "zh"
    return conversation[:i] + [dict(m) for m in make_turn(lang)] + conversation[i:]


def _qa(user, reply, system=None):
    return ([_msg("system", system)] if system else []) + [_msg("user", user), _msg("assistant", reply)]


class World:
    """一个 seed 的整个样例世界。makers 的 split 参数 ("train"/"eval") 决定从哪一半取人物、问法和算式。"""

    def __init__(self, seed):
        self.seed = seed
        self.people = make_people(seed)
        self.seen = [p for p in self.people if p["seen"]]
        self.unlock = [p for p in self.people if not p["seen"]]
        self.names = {p["name"] for p in self.people}
        self.surnames = sorted({p["name"][0] for p in self.people})
        self.given = sorted({c for p in self.people for c in p["name"][1:]})
        self.heldout = heldout_pairs(seed)
        self.heldout_set = set(self.heldout)
        self.train_pairs = set()  # 训练文本 (SFT + 预训练) 里出现过的算式的操作数对, 生成评测集之前填好
        self.train_equations = set()  # 训练文本里说出过的完整算式 (a, op, b, c), 同上
        # 每类对话一个 maker(rng, split) -> (对话, 答案关键串) 或 None (这次没抽成, 再来)
        self.makers = {"arithmetic": self.make_arithmetic, "multi_turn": self.make_multi_turn,
                       "system_prompt": self.make_system_prompt, "greeting": self.make_greeting}
        rng = _rng(seed, "pools")
        self.held_questions = set()  # 评测那一份的问题: 别的训练题 (系统提示那一类) 也不能问 (train_pick)
        # 身份和文字任务的问法有限: 先整体打乱, 切出一份只给评测, 训练只从剩下的里抽 (可重复)
        for cat, pool in (("identity", identity_pool()), ("text_task", text_task_pool())):
            keyed = [x for x in pool if x[1]]
            rng.shuffle(keyed)
            held, train_part = keyed[:EVAL_COUNTS[cat]], keyed[EVAL_COUNTS[cat]:] + [x for x in pool if not x[1]]
            self.makers[cat] = _pool_maker(held, train_part)
            self.held_questions |= {conv[-2]["content"] for conv, _ in held}
            if cat == "identity":  # 放在别的对话前面的问候轮: 只用训练那一半里的问候, 评测用的问候语一句也不漏进训练
                self.greeting_turns = {lang: [conv for conv, _ in train_part if conv[-1]["content"] == g[2]]
                                       for lang, g in zip(("zh", "en"), GREETINGS)}
        # knowledge 评测问 SFT 见过的人, 但用留出的问法; knowledge_unlock 用训练里的问法问只在预训练里出现过的人
        # (考的是 "把预训练存下的事实问出来", 不是理解新问法)。每条评测一个不同的 (人, 属性)。
        for cat, group, ask in (("knowledge", self.seen, "ask_heldout"), ("knowledge_unlock", self.unlock, "ask")):
            facts = [(p, a) for p in group for a in ATTRS]
            rng.shuffle(facts)
            self.makers[cat] = _fact_maker(self, facts, ask)

    def opening(self, rng, cat, conversation):
        """开场轮 (见 GREETING_FIRST_SHARE): 按概率在对话 (system 之后) 的最前面加一轮问候或一道不相干的问答,
        语言跟着第一条用户消息。rng 是单独的一条随机流: 不加开场轮 (build_sft(world, openings=False)) 时,
        其余对话逐字节不变, 对照实验才干净。"""
        r = rng.random()
        # 有系统提示的那一类不加: 开场那一轮的回答不遵守系统提示 (没说 "喵"), 会教模型忽略它; 本身就是问候的身份问答也不加。
        # 别的身份问答要加: 不加时, 模型在 "你好" 之后被问 "你叫什么名字？", 答的是系统提示题里的 "我叫阿福。" (README 7.1)
        if cat == "system_prompt" or conversation[-1]["content"] in GREETING_REPLIES \
                or r >= GREETING_FIRST_SHARE + TOPIC_FIRST_SHARE:
            return conversation
        return prepend_turn(conversation, lambda lang: rng.choice(self.greeting_turns[lang]) if r < GREETING_FIRST_SHARE
                            else self.unrelated_qa(rng, lang))

    def unrelated_qa(self, rng, lang):
        """一轮只用训练那一半 (问法、人物、算式) 的普通问答, 语言为 lang: 换话题之前的那一轮。"""
        while True:
            kind = rng.choice(["identity", "arithmetic", "knowledge", "text_task"])
            if kind == "arithmetic":
                return _qa(*self.arithmetic(rng, "train", lang=lang)[:2])
            if kind == "knowledge":
                if lang == "zh":  # 人物问答只有中文
                    attr = rng.choice(list(ATTRS))
                    return _qa(*self.knowledge(rng.choice(self.seen), attr, rng.choice(ATTRS[attr]["ask"]))[:2])
                continue
            conv, key = self.makers[kind](rng, "train")
            # 问候归上面的问候轮; "谢谢" 之类 (key 为 None) 不适合当开场
            if key and conv[-1]["content"] not in GREETING_REPLIES and conv[0]["content"].isascii() == (lang == "en"):
                return conv

    def operands(self, rng, split, op):
        """一道题的 (a, b, 结果)。评测只从留出对里抽两位数; 训练在 0..99 里随便抽但避开留出对。减法 a >= b。"""
        while True:
            if split == "eval":
                x, y = rng.choice(self.heldout)
            else:
                x, y = sorted((rng.randint(0, 99), rng.randint(0, 99)))
                if (x, y) in self.heldout_set:
                    continue
            a, b = (y, x) if op == "-" or rng.random() < 0.5 else (x, y)
            c = a + b if op == "+" else a - b
            # 评测时结果不能等于某个操作数 (如 90-45=45), 否则复述题目也能 "包含答案"
            if split == "train" or c not in (a, b):
                return a, b, c

    def arithmetic(self, rng, split, lang=None, op=None):
        lang = lang or ("en" if rng.random() < 0.25 else "zh")
        op = op or ("+" if rng.random() < 0.6 else "-")
        a, b, c = self.operands(rng, split, op)
        q = rng.choice(ARITH_Q[lang, op]).format(a=a, b=b)
        return q, ARITH_A[lang, op].format(a=a, b=b, c=c), arith_key(c, lang), c

    def knowledge(self, person, attr, template):
        v = person[attr]
        return template.format(n=person["name"]), ATTRS[attr]["answer"].format(n=person["name"], v=v), v

    def train_pick(self, rng, split, options, question=lambda x: x):
        """rng.choice(options), 但训练时只在评测没有留走的问题里挑 (question(x) 不在 self.held_questions 里):
        身份问答和反义词的问法有限, 评测那一份不能在训练里被问到 —— 哪怕前面多一句系统提示、回答多了 "好的，"、
        换成了英文或别的名字。"""
        if split == "train":
            options = [x for x in options if question(x) not in self.held_questions]
            if not options:
                raise RuntimeError("样例世界的配置不对: 这一类问题全被评测留走了, 训练题无从抽起")
        return rng.choice(options)

    def zh_question(self, rng, split):
        """随便一道普通的中文问答, 给 "好的，" 和 "喵" 这两种系统提示套用 (身份问答和反义词避开评测留出的问题)。"""
        kind = rng.randrange(4)
        if kind == 1:
            return self.arithmetic(rng, split, lang="zh")[:2]
        if kind == 2:
            attr = rng.choice(list(ATTRS))
            return self.knowledge(rng.choice(self.seen), attr, rng.choice(ATTRS[attr]["ask"]))[:2]
        if kind == 0:
            qs, reply, _ = ID_ITEMS[rng.randrange(2)]
            options = [(q, reply) for q in qs]
        else:
            options = [(f"{w}的反义词是什么？", f"{w}的反义词是“{v}”。") for w, v in ANTONYMS]
        return self.train_pick(rng, split, options, lambda qa: qa[0])

    def make_arithmetic(self, rng, split):
        q, reply, key, _ = self.arithmetic(rng, split)
        return _qa(q, reply), key

    def make_greeting(self, rng, split):
        """"我叫X。" -> "你好，X！很高兴认识你。" X 是随机拼出的新名字 (不是 200 个虚构人物中的任何一个)。

        为什么要有它: 知识问答的回答都以人名开头, 而 SFT 里只出现 100 个名字。开发时 (一字一 token 的分词器) 我们看到
        knowledge_unlock 答错的 29 题里 28 题是把名字抄错了 (问 "韦轩文", 答成 SFT 见过的 "陶文俊"):
        模型把 "抄名字" 学成了 "从见过的 100 个名字里挑一个"。几百个从没见过的名字逼它真的从问题里抄。"""
        name = self.new_name(rng)
        return _qa(rng.choice(GREETING_Q).format(n=name), f"你好，{name}！很高兴认识你。"), name

    def new_name(self, rng, given_chars=None):
        """随机拼一个新名字 (不是 200 个虚构人物中的任何一个): 姓 + 名。名默认两个字; given_chars=(1, 2) 时每次在
        1–2 个字里随机。只用人物名字里出现过的字: 每个字底座都见过。"""
        while True:
            name = rng.choice(self.surnames) + "".join(rng.sample(self.given, rng.randint(*given_chars) if given_chars else 2))
            if name not in self.names:
                return name

    def make_multi_turn(self, rng, split):
        if rng.random() < 0.5:  # 算术追问: "那再加5呢？" 只有看了上一轮的结果才答得出
            lang = "en" if rng.random() < 0.2 else "zh"
            q1, r1, _, c = self.arithmetic(rng, split, lang=lang, op="+" if rng.random() < 0.7 else "-")
            op = "+" if c < 2 or rng.random() < 0.6 else "-"
            d = rng.randint(1, 9 if op == "+" else min(9, c - 1))
            e = c + d if op == "+" else c - d
            if split == "eval" and e == d:
                return None
            q2 = rng.choice(FOLLOW_Q[lang, op]).format(d=d)
            return _qa(q1, r1) + _qa(q2, ARITH_A[lang, op].format(a=c, b=d, c=e)), arith_key(e, lang)
        person = rng.choice(self.seen)  # 人物追问: "那这个人是哪里人？" 要从上一轮找出是谁
        a1, a2 = rng.sample(list(ATTRS), 2)
        q1, r1, _ = self.knowledge(person, a1, rng.choice(ATTRS[a1]["ask"]))
        _, r2, v = self.knowledge(person, a2, "")
        return _qa(q1, r1) + _qa(rng.choice(ATTRS[a2]["follow"]), r2), v

    def make_system_prompt(self, rng, split):
        kind = rng.choice(["english", "prefix", "cat", "rename"])
        if kind == "rename":
            m = rng.choice(PERSONA_NAMES)
            q, reply = self.train_pick(rng, split, [(x, r) for q, r in RENAME_Q for x in with_prefixes(q)], lambda qa: qa[0])
            return _qa(q, reply.format(m=m), rng.choice(SYS_RENAME).format(m=m)), m
        if kind == "english":  # 中文提问, 英文回答; 答案关键串只在英文回答里出现
            system = rng.choice(SYS_ENGLISH)
            if rng.random() < 0.4:
                i = rng.randrange(2)
                _, reply, key = ID_ITEMS[i + 2]
                return _qa(self.train_pick(rng, split, ID_ITEMS[i][0]), reply, system), key
            op = "+" if rng.random() < 0.6 else "-"
            a, b, c = self.operands(rng, split, op)
            q = rng.choice(ARITH_Q["zh", op]).format(a=a, b=b)
            return _qa(q, ARITH_A["en", op].format(a=a, b=b, c=c), system), arith_key(c, "en")
        q, reply = self.zh_question(rng, split)
        if kind == "prefix":
            return _qa(q, "好的，" + reply, rng.choice(SYS_PREFIX)), "好的，"
        return _qa(q, reply + "喵～", rng.choice(SYS_CAT)), "喵"


def with_prefixes(q):
    """一句问话加上各种开头 ("你好，"、"Hi, " ……; 第一个是空的, 就是原句)。"""
    en = q.isascii()
    return [pre + (q[0].lower() + q[1:] if pre and en else q) for pre in (PREFIXES_EN if en else PREFIXES)]


def identity_pool():
    """所有身份问答 (消息, 答案); 答案为 None 的 (道谢、问能力) 只进训练集。"""
    pool = []
    for qs, reply, key in ID_ITEMS:
        for q in qs:
            pool += [(_qa(x, reply), key) for x in (with_prefixes(q) if key else [q])]
    for words, punct, reply, key in GREETINGS:
        pool += [(_qa(w + p, reply), key) for w in words for p in [""] + list(punct)]
    return pool


def text_task_pool():
    pool = []
    for task, q, r in TEXT_TEMPLATES:
        if task == "antonym":
            for w, v in ANTONYMS + [(y, x) for x, y in ANTONYMS]:
                pool.append((_qa(q.format(w=w), r.format(w=w, v=v)), f"“{v}”"))
        elif task == "repeat":
            for w in REPEAT_WORDS:
                for k in range(2, 6):
                    pool.append((_qa(q.format(w=w, k=k), r.format(w=w, k=k, r=w * k)), f"：{w * k}。"))
        else:
            for zh, en in WORDS:
                pool.append((_qa(q.format(zh=zh, en=en), r.format(zh=zh, en=en)), f"“{en if task == 'to_en' else zh}”"))
    return pool


def _prompt_key(messages):
    """比较两段提示用的键: 去掉中性的系统提示。它不改变该怎么回答, 有没有、是哪一句, 模型面对的都是同一道题。"""
    return json.dumps([m for m in messages if not (m["role"] == "system" and m["content"] in NEUTRAL_SYSTEMS)],
                      ensure_ascii=False)


def _prompts(conversation):
    """对话里每个 assistant 回合之前的全部消息 (_prompt_key): 训练时模型在这些 "提问" 上学过回答。"""
    return {_prompt_key(conversation[:i]) for i, m in enumerate(conversation) if m["role"] == "assistant"}


def _pool_maker(held, rest):
    held = iter(held)
    return lambda rng, split: rng.choice(rest) if split == "train" else next(held, None)


def _fact_maker(world, facts, ask):
    facts = iter(facts)

    def make(rng, split):
        fact = next(facts, None)
        if fact is None:
            return None
        person, attr = fact
        q, reply, v = world.knowledge(person, attr, rng.choice(ATTRS[attr][ask]))
        return _qa(q, reply), v
    return make


def _neutral(rng, cat, conversation):
    if cat != "system_prompt" and rng.random() < NEUTRAL_SYSTEM_SHARE:
        return [_msg("system", rng.choice(NEUTRAL_SYSTEMS))] + conversation
    return conversation


def build_sft(world, openings=True):
    """SFT 训练集 (打乱顺序)。openings=False: 不加开场轮 (只给 experiments.py 的对照组用)。
    每类一条自己的随机流 (和 build_eval 一样): 改了一类的生成方式, 别的类一条都不变。"""
    opening_rng = _rng(world.seed, "sft_openings")  # 每条对话抽一次, 条数固定: 也不受哪一类怎么生成的影响
    # 身份问答的开场轮是后来加的 (README 7.1), 用自己的一条随机流: 这样抽出的评估集和加之前一题不差 (评估集要避开训练里说过的算式,
    # 训练数据一变, 它就可能跟着变; 换成别的抽法时它确实变了), 新旧结果在同一批题上比
    identity_opening_rng = _rng(world.seed, "sft_openings/identity")

    def opening(cat, conversation):
        rng = identity_opening_rng if cat == "identity" else opening_rng
        return world.opening(rng, cat, conversation) if openings else conversation

    # 每个 seen 人物的每个属性都问 KNOWLEDGE_REPEATS 次, 每次随机一种训练问法: 覆盖全, 不靠运气
    rng = _rng(world.seed, "sft_train/knowledge")
    train = [{"conversations": opening("knowledge", _neutral(
                  rng, "knowledge", _qa(*world.knowledge(p, a, rng.choice(ATTRS[a]["ask"]))[:2]))),
              "category": "knowledge"} for p in world.seen for a in ATTRS for _ in range(KNOWLEDGE_REPEATS)]
    for cat, n in TRAIN_COUNTS.items():
        rng = _rng(world.seed, f"sft_train/{cat}")
        while n:
            made = world.makers[cat](rng, "train")
            # 兜底: 训练对话里的算式绝不碰留出对
            if made and not arith_pairs(json.dumps(made[0], ensure_ascii=False)) & world.heldout_set:
                train.append({"conversations": opening(cat, _neutral(rng, cat, made[0])), "category": cat})
                n -= 1
    _rng(world.seed, "sft_train/order").shuffle(train)
    return train


def build_eval(world, train_prompts):
    """评测集, 按类别排列; 每条都过一遍留出检查, 不合格的扔掉重抽。每类一条自己的随机流: 一类多扔掉几条重抽, 别的类不受影响。"""
    records, seen_prompts = [], set()
    for cat, n in EVAL_COUNTS.items():
        rng = _rng(world.seed, f"sft_eval/{cat}")
        tries = 0
        while n:
            tries += 1
            if tries > 100 * EVAL_COUNTS[cat]:
                raise RuntimeError(f"样例世界的配置凑不出 {EVAL_COUNTS[cat]} 条 {cat} 评测, 检查表格大小")
            made = world.makers[cat](rng, "eval")
            if not made:
                continue
            conv, key = made
            conv = _neutral(rng, cat, conv)
            prompt = _prompt_key(conv[:-1])
            # 三条保证: 提问没在训练里出现过、评测内部不重复 (都不计中性的系统提示)、算式没在任何训练文本里出现过
            # (两个操作数不论顺序; 逆运算也没有说过); 另外答案不能出现在最后一句提问里, 否则鹦鹉学舌也能得分
            text = json.dumps(conv, ensure_ascii=False)
            leaked = arith_pairs(text) & world.train_pairs or any(inverses(eq) & world.train_equations for eq in equations(text))
            if prompt in train_prompts or prompt in seen_prompts or leaked or key in conv[-2]["content"]:
                continue
            seen_prompts.add(prompt)
            records.append({"conversations": conv, "category": cat, "answer": key})
            n -= 1
    return records


def build_pretrain(world, split):
    """一行一段的普通文字。split="eval" 时量少一些, 小传用留出句式, 由调用方去掉与训练重复的段落。"""
    rng = _rng(world.seed, f"pretrain_{split}")
    lines = []
    for p in world.people:
        # 每个属性的 5 种句式打乱后轮流用: 同一个人的几段小传说法各不相同, 属性顺序也各不相同
        order = {a: rng.sample(range(len(s["bio"])), len(s["bio"])) for a, s in ATTRS.items()}
        for i in range(BIOS_PER_PERSON if split == "train" else 1):
            attrs = rng.sample(list(ATTRS), len(ATTRS))
            if split == "train":
                templates = [ATTRS[a]["bio"][order[a][i % len(order[a])]] for a in attrs]
            else:
                templates = [ATTRS[a]["bio_heldout"] if rng.random() < 0.5 else rng.choice(ATTRS[a]["bio"]) for a in attrs]
            lines.append("".join(t.format(n=p["name"], v=p[a]) for t, a in zip(templates, attrs)))

    def pick(sentences, lo=2, hi=4):
        return rng.sample(sentences, rng.randint(lo, min(hi, len(sentences))))

    scale = 1 if split == "train" else 0.1
    n = {k: int(v * scale) for k, v in PRETRAIN_PARAGRAPHS.items()}
    for _ in range(n["world"]):
        if rng.random() < 0.6:
            city = dict(zip(CITY_FIELDS, rng.choice(WORLD_CITIES)))
            lines.append("".join(s.format(**city) for s in pick(CITY_SENTENCES)))
        else:
            country = dict(zip(COUNTRY_FIELDS, rng.choice(COUNTRIES)))
            lines.append("".join(s.format(**country) for s in pick(COUNTRY_SENTENCES)))
    lines += ["".join(pick(rng.choice(TOPICS), 2, 5)) for _ in range(n["topic"])]
    for _ in range(n["english"]):
        if rng.random() < 0.4:
            country = dict(zip(COUNTRY_FIELDS, rng.choice(COUNTRIES)))
            lines.append(" ".join(s.format(**country) for s in pick(COUNTRY_SENTENCES_EN)))
        else:
            lines.append(" ".join(pick(rng.choice(TOPICS_EN))))
    for _ in range(n["words"]):
        if rng.random() < 0.5:
            sentences = [rng.choice(WORD_SENTENCES["antonym"]).format(a=a, b=b) for a, b in rng.sample(ANTONYMS, 3)]
        else:
            sentences = [rng.choice(WORD_SENTENCES["dict"]).format(zh=zh, en=en) for zh, en in rng.sample(WORDS, 3)]
        lines.append("".join(sentences))
    for _ in range(n["talk"]):
        if rng.random() < 0.25:
            lines.append(" ".join(rng.sample(TALK_EN, 2)))
        elif rng.random() < 0.3:  # 宠物名字: 系统提示里给助手起的名字 (阿星、豆豆……) 也得是底座认识的词
            lines.append("".join(f"{rng.choice(['我', '邻居', '小明', '小红'])}家的{rng.choice(PETS)}叫{m}。"
                                 for m in rng.sample(PERSONA_NAMES, 3)))
        else:
            lines.append("".join(rng.sample(TALK, 2)))
    for _ in range(n["arith"]):
        # 算式的操作数对只用训练那一半 (operands 的 "train"), 留出对连预训练也不出现
        lang = "en" if rng.random() < 0.2 else "zh"
        sentences = []
        for _ in range(rng.randint(3, 6)):
            op = "+" if rng.random() < 0.6 else "-"
            a, b, c = world.operands(rng, "train", op)
            sentences.append(rng.choice(ARITH_PROSE[lang, op]).format(a=a, b=b, c=c))
        lines.append((" " if lang == "en" else "").join(sentences))
    rng.shuffle(lines)
    return lines


def write_text(path, text):
    """原子写入: 中途出错也不会留下写了一半的数据文件。写不了 (磁盘满、没有权限) 时一行错误, path 原来的内容不动。"""
    write_atomically(path, lambda f: f.write(text), hint="检查磁盘空间和目录权限, 或换一个 --out_dir")


def check_overwrite(texts, overwrite):
    """texts: {路径: 要写进去的文字}。已有的文件内容不同 (自己的数据, 或别的 --seed 生成的) 时, 除非 overwrite, 停下、一个也不写。
    内容相同就照常写: 重跑 run_lesson.sh 时每次都重新生成, 结果逐字节相同。"""
    changed = []
    for path, text in texts.items():
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace", newline="") as f:
                if f.read() != text:
                    changed.append(path)
    if changed and not overwrite:
        raise SystemExit(f"错误: {', '.join(changed)} 已经存在, 内容和要生成的示例数据不同 (你自己的数据, 或别的 --seed 生成的)。"
                         # 不写 "加 --overwrite": 走到这里的也可能是 run_lesson.sh 或 pretrain.py (缺数据时顺手生成), 它们不收这个参数
                         "确定要覆盖就运行 python data.py --create_sample --overwrite (原来给过 --out_dir、--seed 的照样带上), "
                         "再回到原来的命令; 或者先把它们移走")


def create_sample(out_dir="data", seed=0, overwrite=False):
    """生成样例世界并写入 out_dir; 返回 {"files": {文件名: 路径}, "counts": {...}}。同一个 seed 结果逐字节相同。
    out_dir 里已有内容不同的同名文件时, 除非 overwrite, 什么都不写 (check_overwrite)。"""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SystemExit(f"错误: 输出位置 {out_dir} 已存在但不是文件夹。请换一个 --out_dir")
    world = World(seed)
    pretrain = build_pretrain(world, "train")
    train = build_sft(world)
    # 评测集生成前, 先记下所有训练文本 (SFT + 预训练) 里出现过的算式和提问
    train_text = "\n".join(pretrain) + "\n" + json.dumps(train, ensure_ascii=False)
    world.train_pairs, world.train_equations = arith_pairs(train_text), set(equations(train_text))
    train_prompts = set().union(*(_prompts(r["conversations"]) for r in train))
    evals = build_eval(world, train_prompts)
    known = set(pretrain)
    pretrain_eval = [x for x in dict.fromkeys(build_pretrain(world, "eval")) if x not in known]

    texts = {"sft_train.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train),
             "sft_eval.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in evals),
             "pretrain.txt": "\n".join(pretrain) + "\n", "pretrain_eval.txt": "\n".join(pretrain_eval) + "\n"}
    check_overwrite({os.path.join(out_dir, name): text for name, text in texts.items()}, overwrite)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"错误: 无法写入 {out_dir} ({e.strerror})。检查目录权限或换一个 --out_dir") from None
    files = {name: os.path.join(out_dir, name) for name in texts}
    for name, text in texts.items():
        write_text(files[name], text)

    def by_category(records):
        return {c: sum(r["category"] == c for r in records) for c in dict.fromkeys(r["category"] for r in records)}
    counts = {"sft_train.jsonl": len(train), "sft_eval.jsonl": len(evals),
              "pretrain.txt": len(pretrain), "pretrain_eval.txt": len(pretrain_eval),
              "pretrain_chars": sum(map(len, pretrain)), "pretrain_eval_chars": sum(map(len, pretrain_eval)),
              "people_seen": len(world.seen), "people_unlock": len(world.unlock),
              "train_categories": by_category(train), "eval_categories": {c: by_category(evals).get(c, 0) for c in EVAL_COUNTS}}
    return {"files": files, "counts": counts}


def main():
    parser = make_parser("生成样例世界 (SFT 训练/评测对话和预训练文本), 不训练分词器")
    parser.add_argument("--out_dir", default="data", help="输出目录")
    parser.add_argument("--seed", type=int, default=0, help="随机种子: 同一个种子生成逐字节相同的文件")
    parser.add_argument("--overwrite", action="store_true", help="覆盖输出目录里内容不同的已有文件 (默认拒绝)")
    args = parser.parse_args()
    info = create_sample(args.out_dir, args.seed, args.overwrite)
    for name, path in info["files"].items():
        print(f"写入 {path}  ({info['counts'][name]} {'条对话' if name.endswith('.jsonl') else '段'})")
    rest = {k: v for k, v in info["counts"].items() if k not in info["files"]}
    print(json.dumps(rest, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    run_main(main)
