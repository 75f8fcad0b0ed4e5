"""Builds the bundled task sets in evals/data: multiple-choice items for knowledge, reasoning, math and code.

All items are authored for fr-agent (CC0-1.0, see data/LICENSES.md): the knowledge questions are
written by hand from common public facts; reasoning, math and code items come from templates with a
fixed seed, and every code answer is computed by running the expression in Python. The files are
checked in; `python -m fr_agent.evals.build_tasks` rewrites them, and a test checks they match.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from fr_agent.evals.tasks import TaskItem, file_name

ITEMS_PER_CATEGORY = 80
SEED = 20261123
DATA_DIR = Path(__file__).parent / "data"
LICENCE = "CC0-1.0"


# One question a line: question | correct answer | three wrong answers; an indented "| ..." continues the line above.
KNOWLEDGE_TEXT = """\
What is the capital of France? | Paris | Lyon | Marseille | Nice
What is the capital of Japan? | Tokyo | Osaka | Kyoto | Nagoya
What is the capital of Italy? | Rome | Milan | Naples | Turin
What is the capital of Canada? | Ottawa | Toronto | Vancouver | Montreal
What is the capital of Australia? | Canberra | Sydney | Melbourne | Perth
What is the capital of Germany? | Berlin | Munich | Hamburg | Frankfurt
What is the capital of Spain? | Madrid | Barcelona | Seville | Valencia
What is the capital of Egypt? | Cairo | Alexandria | Luxor | Giza
What is the capital of Brazil? | Brasilia | Rio de Janeiro | Sao Paulo | Salvador
What is the capital of Kenya? | Nairobi | Mombasa | Kisumu | Nakuru
What is the capital of Norway? | Oslo | Bergen | Trondheim | Stavanger
What is the capital of Portugal? | Lisbon | Porto | Braga | Coimbra
What is the capital of Greece? | Athens | Thessaloniki | Patras | Heraklion
What is the capital of Peru? | Lima | Cusco | Arequipa | Trujillo
What is the capital of South Korea? | Seoul | Busan | Incheon | Daegu
What is the capital of Turkey? | Ankara | Istanbul | Izmir | Bursa
What is the largest planet in the solar system? | Jupiter | Saturn | Neptune | Earth
Which planet is closest to the Sun? | Mercury | Venus | Mars | Earth
Which planet is known as the red planet? | Mars | Venus | Jupiter | Mercury
Which planet has the most prominent rings? | Saturn | Mars | Mercury | Venus
What is the natural satellite of the Earth called? | the Moon | Phobos | Titan | Europa
What star is at the center of the solar system? | the Sun | Sirius | Polaris | Vega
What is the chemical symbol for gold? | Au | Ag | Gd | Go
What is the chemical symbol for iron? | Fe | Ir | In | Fr
What is the chemical symbol for sodium? | Na | So | Sd | Sn
What is the chemical symbol for potassium? | K | P | Po | Pt
What is the chemical symbol for oxygen? | O | Ox | Og | Os
What is the chemical symbol for silver? | Ag | Si | Sv | Au
Which gas do plants absorb from the air for photosynthesis? | carbon dioxide | oxygen | nitrogen | helium
Which gas makes up most of the Earth's atmosphere? | nitrogen | oxygen | carbon dioxide | argon
What is the chemical formula of water? | H2O | CO2 | O2 | NaCl
What is the chemical formula of table salt? | NaCl | KCl | H2O | CaCO3
At what temperature in degrees Celsius does pure water boil at sea level? | 100 | 90 | 80 | 120
At what temperature in degrees Celsius does pure water freeze at sea level? | 0 | 10 | -10 | 4
What is the SI unit of force? | newton | joule | watt | pascal
What is the SI unit of energy? | joule | newton | volt | tesla
What is the SI unit of power? | watt | joule | ampere | ohm
What is the SI unit of electric current? | ampere | volt | ohm | coulomb
What is the SI unit of electrical resistance? | ohm | volt | watt | farad
What is the SI unit of pressure? | pascal | newton | kelvin | joule
What is the SI base unit of temperature? | kelvin | celsius | fahrenheit | joule
How many bits are in a byte? | 8 | 4 | 16 | 10
How many days are in a leap year? | 366 | 365 | 364 | 360
How many continents are there by the most common count? | 7 | 5 | 6 | 8
How many legs does a spider have? | 8 | 6 | 10 | 4
How many legs does an insect have? | 6 | 8 | 4 | 10
How many sides does a hexagon have? | 6 | 5 | 7 | 8
How many sides does an octagon have? | 8 | 6 | 10 | 12
How many minutes are in an hour? | 60 | 100 | 30 | 24
How many hours are in a day? | 24 | 12 | 60 | 48
What is the largest ocean on Earth? | the Pacific Ocean | the Atlantic Ocean | the Indian Ocean | the Arctic Ocean
What is the longest river in South America? | the Amazon | the Parana | the Orinoco | the Madeira
On which continent is the Sahara desert? | Africa | Asia | Australia | South America
What is the highest mountain above sea level? | Mount Everest | K2 | Kangchenjunga | Mont Blanc
Which organ pumps blood through the human body? | the heart | the liver | the lungs | the kidney
Which organ do humans breathe with? | the lungs | the heart | the stomach | the liver
What is the hardest natural mineral? | diamond | quartz | topaz | graphite
What is the largest mammal? | the blue whale | the elephant | the giraffe | the hippopotamus
Which animal is known as the king of the jungle? | the lion | the tiger | the bear | the wolf
What do bees make? | honey | silk | wax paper | milk
What is the main language spoken in Brazil? | Portuguese | Spanish | French | English
What is the main language spoken in Mexico? | Spanish | Portuguese | English | French
Who wrote the play Romeo and Juliet? | William Shakespeare | Charles Dickens | Jane Austen | Mark Twain
Who developed the theory of general relativity? | Albert Einstein | Isaac Newton | Niels Bohr | Galileo Galilei
Who formulated the laws of motion and universal gravitation? | Isaac Newton | Albert Einstein
    | Johannes Kepler | Michael Faraday
Who proposed the theory of evolution by natural selection? | Charles Darwin | Gregor Mendel
    | Louis Pasteur | Isaac Newton
Who painted the Mona Lisa? | Leonardo da Vinci | Michelangelo | Raphael | Rembrandt
In which year did the First World War begin? | 1914 | 1918 | 1939 | 1905
In which year did the Second World War end? | 1945 | 1939 | 1950 | 1918
In which year did humans first land on the Moon? | 1969 | 1959 | 1975 | 1981
What is the freezing point of water in degrees Fahrenheit? | 32 | 0 | 100 | 212
What is the speed of light in vacuum, approximately, in kilometres per second? | 300000 | 30000 | 3000 | 3000000
What is the smallest prime number? | 2 | 1 | 3 | 0
What is the square root of 81? | 9 | 8 | 7 | 81
Which metal is liquid at room temperature? | mercury | iron | copper | aluminium
What is the most abundant element in the universe? | hydrogen | helium | oxygen | carbon
What part of a plant conducts photosynthesis most? | the leaves | the roots | the bark | the seeds
What is the boiling point of water in degrees Fahrenheit at sea level? | 212 | 100 | 180 | 250
Which blood cells carry oxygen? | red blood cells | white blood cells | platelets | plasma cells
What is the largest country by area? | Russia | Canada | China | the United States
"""
KNOWLEDGE = [tuple(line.split(" | ")) for line in KNOWLEDGE_TEXT.replace("\n    | ", " | ").splitlines()]

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
THINGS = [
    ("cats", "animals"),
    ("roses", "flowers"),
    ("oaks", "trees"),
    ("trout", "fish"),
    ("sparrows", "birds"),
    ("violins", "instruments"),
    ("hammers", "tools"),
    ("apples", "fruits"),
]
ADJECTIVES = [
    ("taller", "shortest", "tallest"),
    ("older", "youngest", "oldest"),
    ("faster", "slowest", "fastest"),
    ("heavier", "lightest", "heaviest"),
]


def mc(rng: random.Random, category: str, index: int, question: str, correct: str, wrong: list[str]) -> TaskItem:
    choices = [correct, *[w for w in dict.fromkeys(wrong) if w != correct]][:4]
    rng.shuffle(choices)
    return TaskItem(
        id=f"{category}-{index:03d}",
        category=category,
        question=question,
        choices=choices,
        answer=choices.index(correct),
    )


def knowledge(rng: random.Random) -> list[TaskItem]:
    return [mc(rng, "knowledge", i, q, a, list(w)) for i, (q, a, *w) in enumerate(KNOWLEDGE)]


def reasoning_order(rng: random.Random) -> tuple[str, str, list[str]]:
    people = rng.sample(NAMES, 3)  # people[0] > people[1] > people[2]
    comparative, least, most = rng.choice(ADJECTIVES)
    facts = [f"{people[0]} is {comparative} than {people[1]}.", f"{people[1]} is {comparative} than {people[2]}."]
    rng.shuffle(facts)
    ask_least = rng.random() < 0.5
    question = " ".join(facts) + f" Who is the {least if ask_least else most}?"
    correct = people[2] if ask_least else people[0]
    return question, correct, [p for p in people if p != correct] + [rng.choice([n for n in NAMES if n not in people])]


def reasoning_syllogism(rng: random.Random) -> tuple[str, str, list[str]]:
    (member, group), (other, _) = rng.sample(THINGS, 2)
    name = rng.choice(NAMES)
    if rng.random() < 0.5:
        question = f"All {member} are {group}. {name} owns one of the {member}. Is it one of the {group}?"
        return question, "yes", ["no", "cannot tell"]
    question = f"All {member} are {group}. {name} owns one of the {group}. Must it be one of the {member}?"
    return question, "cannot tell", ["yes", "no"]


def reasoning_days(rng: random.Random) -> tuple[str, str, list[str]]:
    start, shift = rng.randrange(7), rng.randint(2, 12)
    question = f"If today is {DAYS[start]}, what day of the week will it be in {shift} days?"
    correct = DAYS[(start + shift) % 7]
    wrong = [DAYS[(start + shift + d) % 7] for d in (1, -1, 2)]
    return question, correct, wrong


def reasoning_sequence(rng: random.Random) -> tuple[str, str, list[str]]:
    first, step = rng.randint(1, 20), rng.randint(2, 9)
    if rng.random() < 0.5:
        terms = [first + step * i for i in range(5)]
        rule = "adds"
    else:
        terms = [first * (2**i) for i in range(5)]
        rule = "doubles"
    question = f"What number comes next in the sequence {', '.join(map(str, terms[:4]))}?"
    correct = terms[4]
    wrong = [correct + step, correct - 1, terms[3] + (terms[3] - terms[2]) * 2 if rule == "adds" else correct + 2]
    return question, str(correct), [str(w) for w in wrong]


def math_item(rng: random.Random) -> tuple[str, str, list[str]]:
    kind = rng.choice(["add", "sub", "mul", "div", "words", "percent"])
    a, b = rng.randint(12, 99), rng.randint(2, 49)
    if kind == "add":
        question, correct = f"What is {a} + {b}?", a + b
    elif kind == "sub":
        question, correct = f"What is {a} - {b}?", a - b
    elif kind == "mul":
        b = rng.randint(2, 12)
        question, correct = f"What is {a} times {b}?", a * b
    elif kind == "div":
        b = rng.randint(2, 12)
        question, correct = f"What is {a * b} divided by {b}?", a
    elif kind == "words":
        name = rng.choice(NAMES)
        question = (
            f"{name} has {a} marbles and gives {b} of them to a friend, then buys {b + 3} more. "
            f"How many marbles does {name} have now?"
        )
        correct = a - b + b + 3
    else:
        base = rng.choice([20, 40, 60, 80, 120, 200, 300, 400])
        pct = rng.choice([10, 20, 25, 50, 75])
        question, correct = f"What is {pct} percent of {base}?", base * pct // 100
    offsets = rng.sample([-10, -2, -1, 1, 2, 10], 3)
    return question, str(correct), [str(correct + d) for d in offsets]


# Each template draws one Python expression; its answer is whatever Python evaluates it to.
CODE_TEMPLATES: list[Callable[[random.Random], str]] = [
    lambda r: f"len([{', '.join(str(r.randint(0, 9)) for _ in range(r.randint(2, 7)))}])",
    lambda r: f"{r.randint(10, 60)} // {r.randint(2, 9)}",
    lambda r: f"{r.randint(10, 60)} % {r.randint(2, 9)}",
    lambda r: f"sum(range({r.randint(3, 12)}))",
    lambda r: f"'{r.choice(['chip', 'kernel', 'tensor', 'cache', 'model'])}'.upper()",
    lambda r: f"'{r.choice(['compiler', 'operator', 'pipeline', 'runtime'])}'[{r.randint(0, 3)}:{r.randint(4, 7)}]",
    lambda r: f"max([{', '.join(str(r.randint(0, 50)) for _ in range(4))}])",
    lambda r: f"sorted([{', '.join(str(r.randint(0, 9)) for _ in range(3))}])",
    lambda r: f"[x * {r.randint(2, 4)} for x in range({r.randint(2, 4)})]",
    lambda r: f"{{'a': {r.randint(1, 9)}, 'b': {r.randint(1, 9)}}}.get('c', {r.randint(0, 9)})",
    lambda r: f"'{r.choice(['a-b-c', 'x-y', 'one-two-three'])}'.split('-')",
    lambda r: f"{r.randint(2, 5)} ** {r.randint(2, 4)}",
    lambda r: f"len('{r.choice(['gpu', 'tensor', 'accelerator', 'kernel', 'npu'])}')",
    lambda r: f"bool({r.choice(['0', '1', '[]', '[0]', chr(39) * 2, repr('x')])})",
]


def wrong_values(value, rng: random.Random) -> list:
    """Plausible wrong answers of the same type as `value`."""
    if isinstance(value, bool):
        return [not value, None, value and 0 or 1]
    if isinstance(value, int):
        return [value + d for d in rng.sample([-2, -1, 1, 2, 3], 3)]
    if isinstance(value, str):
        return [value.lower() if value.isupper() else value.upper(), value[::-1], value[:-1] or value + value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [value[::-1] if value[::-1] != value else value + [0], [v + 1 for v in value], value[:-1]]
        return [value[::-1] if value[::-1] != value else value + [""], " ".join(value), value[:-1]]
    raise TypeError(type(value))


def code_item(rng: random.Random) -> tuple[str, str, list[str]]:
    expression = rng.choice(CODE_TEMPLATES)(rng)
    value = eval(
        expression,
        {"__builtins__": {"len": len, "sum": sum, "range": range, "max": max, "sorted": sorted, "bool": bool}},
    )
    question = f"What does this Python expression evaluate to? {expression}"
    return question, repr(value), [repr(w) for w in wrong_values(value, rng)]


def generated(
    category: str, make: Callable[[random.Random], tuple[str, str, list[str]]], rng: random.Random
) -> list[TaskItem]:
    items: list[TaskItem] = []
    seen: set[str] = set()
    while len(items) < ITEMS_PER_CATEGORY:
        question, correct, wrong = make(rng)
        wrong = [w for w in dict.fromkeys(wrong) if w != correct]
        if question in seen or len(wrong) < 2:
            continue
        seen.add(question)
        items.append(mc(rng, category, len(items), question, correct, wrong))
    return items


def reasoning_any(rng: random.Random) -> tuple[str, str, list[str]]:
    return rng.choice([reasoning_order, reasoning_syllogism, reasoning_days, reasoning_sequence])(rng)


def build() -> dict[str, list[TaskItem]]:
    rng = random.Random(SEED)
    return {
        "knowledge": knowledge(rng),
        "reasoning": generated("reasoning", reasoning_any, rng),
        "math": generated("math", math_item, rng),
        "code": generated("code", code_item, rng),
    }


def render(items: list[TaskItem]) -> str:
    return "".join(item.model_dump_json() + "\n" for item in items)


def manifest(sets: dict[str, list[TaskItem]]) -> dict:
    return {
        "licence": LICENCE,
        "source": "authored for fr-agent (evals/build_tasks.py); see LICENSES.md",
        "seed": SEED,
        "files": {
            file_name(c): {
                "category": c,
                "items": len(items),
                "sha256": hashlib.sha256(render(items).encode()).hexdigest(),
            }
            for c, items in sets.items()
        },
    }


def main() -> None:
    sets = build()
    for category, items in sets.items():
        (DATA_DIR / file_name(category)).write_text(render(items), encoding="utf-8")
    (DATA_DIR / "tasks-manifest.json").write_text(json.dumps(manifest(sets), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {sum(map(len, sets.values()))} items to {DATA_DIR}")


if __name__ == "__main__":
    main()
