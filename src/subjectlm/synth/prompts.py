"""The teacher's prompts: pure functions from data to chat messages, in the documents' language.

Every prompt gives the teacher only what the item needs: a rewrite or the facts of a chunk see that
chunk alone (with its section headings as context); a question, its fact alone. Replies asked as
JSON name their shape in the prompt, so that any model (not only one that takes `response_format`)
knows it. English (`en`) and Chinese (`zh`) texts say the same thing.
"""

from __future__ import annotations

SYSTEM = {
    "en": "You write study material strictly from the given text. Never add information that is not in it.",
    "zh": "你严格依据给定的文本编写学习材料，绝不添加文本中没有的信息。",
}

# One instruction per rewrite style (config.REWRITE_STYLES); `entities` and `relations` as in EntiGraph.
STYLES = {
    "en": {
        "textbook": "Rewrite the text below as a paragraph of a textbook.",
        "notes": "Rewrite the text below as concise study notes: short bulleted points.",
        "fact_list": "Rewrite the text below as a numbered list of facts, one complete sentence per line.",
        "entities": "List the entities the text below names (places, people, things, terms) and, for each, "
                    "explain in a few sentences what the text says about it.",
        "relations": "Take pairs of entities the text below names and, for each pair, explain how the two are "
                     "related according to the text.",
    },
    "zh": {
        "textbook": "把下面的文本改写成教科书中的一段话。",
        "notes": "把下面的文本改写成简明的学习笔记：分条列出要点。",
        "fact_list": "把下面的文本改写成编号的事实列表，每行一个完整的句子。",
        "entities": "列出下面文本提到的实体（地点、人物、事物、术语），并对每个实体用几句话说明文本对它的描述。",
        "relations": "从下面的文本中选取成对的实体，对每一对说明文本中它们之间的关系。",
    },
}


def _context(headings: tuple[str, ...] | list[str], text: str, lang: str) -> str:
    section = " > ".join(headings)
    if lang == "zh":
        head = f"章节：{section}\n\n" if section else ""
        return f"{head}文本：\n\"\"\"\n{text}\n\"\"\""
    head = f"Section: {section}\n\n" if section else ""
    return f"{head}Text:\n\"\"\"\n{text}\n\"\"\""


def _messages(lang: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM[lang]}, {"role": "user", "content": user}]


def facts_prompt(headings: tuple[str, ...], text: str, limit: int, lang: str) -> list[dict[str, str]]:
    if lang == "zh":
        ask = (f"列出上面文本陈述的至多 {limit} 条原子事实。每条事实是一个简短、独立的句子，写明它的主语（不用“它”“这”）。"
               "每条事实都附上文本中陈述它的原话，一字不改地抄在 \"quote\" 中。\n"
               "只回复 JSON：{\"facts\": [{\"fact\": \"...\", \"quote\": \"...\"}]}")
    else:
        ask = (f"List up to {limit} atomic facts stated in the text above. Each fact is one short, self-contained "
               "sentence that names its subject (no \"it\" or \"this\"). With each fact, copy the exact words of "
               "the text that state it as \"quote\".\n"
               "Reply with JSON only: {\"facts\": [{\"fact\": \"...\", \"quote\": \"...\"}]}")
    return _messages(lang, f"{_context(headings, text, lang)}\n\n{ask}")


def rewrite_prompt(headings: tuple[str, ...], text: str, style: str, lang: str) -> list[dict[str, str]]:
    if lang == "zh":
        rule = "只使用文本中的信息，不要添加任何其他内容；名称和数字与原文完全一致。只回复改写后的文本。"
    else:
        rule = ("Use only information from the text and add nothing else; keep every name and number exactly as "
                "written. Reply with the rewritten text only.")
    space = "" if lang == "zh" else " "  # Chinese sentences follow each other without a space
    return _messages(lang, f"{STYLES[lang][style]}{space}{rule}\n\n{_context(headings, text, lang)}")


def questions_prompt(headings: tuple[str, ...], fact: str, n: int, lang: str) -> list[dict[str, str]]:
    """n questions asking for one fact, its answer as a sentence, and a short answer (the exam's option)."""
    topic = " > ".join(headings)
    if lang == "zh":
        head = f"主题：{topic}\n" if topic else ""
        ask = (f"写出 {n} 个都在问这条事实的问题，每个问题的措辞都不同（换用不同的词语和句式，而不只是调换顺序），"
               "每个问题单独读也清楚它问的是什么，且只凭这条事实就能回答。再用一个完整的句子写出答案，"
               "并写出几个字的简短答案（问题所问的名称、数字或术语）。\n"
               "只回复 JSON：{\"questions\": [\"...\"], \"answer\": \"...\", \"short_answer\": \"...\"}")
        return _messages(lang, f"{head}事实：{fact}\n\n{ask}")
    head = f"Topic: {topic}\n" if topic else ""
    ask = (f"Write {n} questions that each ask for this fact, every one worded differently (other words and "
           "sentence structure, not only a new order), each clear on its own about what it asks and answerable "
           "from the fact alone. Then write the answer as one complete sentence, and a short answer of a few "
           "words (the name, number or term the questions ask for).\n"
           "Reply with JSON only: {\"questions\": [\"...\"], \"answer\": \"...\", \"short_answer\": \"...\"}")
    return _messages(lang, f"{head}Fact: {fact}\n\n{ask}")


def multi_fact_prompt(facts: list[str], n: int, lang: str) -> list[dict[str, str]]:
    listed = "\n".join(f"{i}. {fact}" for i, fact in enumerate(facts, start=1))
    if lang == "zh":
        ask = (f"写出 {n} 个问题，每个问题都需要用到上面两条或更多事实才能回答，并只依据这些事实用一两句话回答每个问题。\n"
               "只回复 JSON：{\"items\": [{\"question\": \"...\", \"answer\": \"...\"}]}")
        return _messages(lang, f"事实：\n{listed}\n\n{ask}")
    ask = (f"Write {n} questions that each need two or more of the facts above to answer, and answer each from "
           "the facts alone in one or two sentences.\n"
           "Reply with JSON only: {\"items\": [{\"question\": \"...\", \"answer\": \"...\"}]}")
    return _messages(lang, f"Facts:\n{listed}\n\n{ask}")


def distractors_prompt(question: str, short_answer: str, fact: str, lang: str) -> list[dict[str, str]]:
    if lang == "zh":
        ask = ("写出这个问题的三个错误但看似合理的答案：与正确答案同类、形式相同（相近的数字、名称或术语），"
               "彼此不同，也不同于正确答案，长度与它相当。\n"
               "只回复 JSON：{\"distractors\": [\"...\", \"...\", \"...\"]}")
        return _messages(lang, f"问题：{question}\n正确答案：{short_answer}\n事实：{fact}\n\n{ask}")
    ask = ("Write three wrong answers to the question that look plausible: of the same kind and form as the "
           "correct answer (a similar number, name or term), different from each other and from the correct "
           "answer, and about as long as it.\n"
           "Reply with JSON only: {\"distractors\": [\"...\", \"...\", \"...\"]}")
    return _messages(lang, f"Question: {question}\nCorrect answer: {short_answer}\nFact: {fact}\n\n{ask}")


def wrong_answer_prompt(question: str, answer: str, lang: str) -> list[dict[str, str]]:
    """The rejected side of a preference pair: the grounded answer with one detail changed."""
    if lang == "zh":
        ask = ("写出这个问题的一个错误答案，语气同样肯定：与正确答案同一个句子，只改动一个细节（一个数字、一个名称或一种关系），"
               "使它看似合理却是错的。\n"
               "只回复 JSON：{\"wrong_answer\": \"...\"}")
        return _messages(lang, f"问题：{question}\n正确答案：{answer}\n\n{ask}")
    ask = ("Write a wrong answer to the question that sounds just as sure: the same sentence with one detail "
           "changed (a number, a name or a relation), so that it is plausible but false.\n"
           "Reply with JSON only: {\"wrong_answer\": \"...\"}")
    return _messages(lang, f"Question: {question}\nCorrect answer: {answer}\n\n{ask}")


def reword_prompt(question: str, short_answer: str, lang: str) -> list[dict[str, str]]:
    """An exam question that overlaps the training data, asked once more in other words."""
    if lang == "zh":
        ask = ("改写这个问题，使它用不同的说法问同一个答案：尽量改变句式、换用其他词语。\n"
               "只回复 JSON：{\"question\": \"...\"}")
        return _messages(lang, f"问题：{question}\n答案：{short_answer}\n\n{ask}")
    ask = ("Reword this question so that it asks for the same answer in different words: change the sentence "
           "structure and use other words wherever you can.\n"
           "Reply with JSON only: {\"question\": \"...\"}")
    return _messages(lang, f"Question: {question}\nAnswer: {short_answer}\n\n{ask}")
