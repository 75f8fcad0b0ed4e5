"""The bundled task sets: reproducible from their builder, licences recorded, answers right."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources

from fr_agent.evals import build_tasks
from fr_agent.evals.tasks import CATEGORIES, context, file_name, load_tasks, requests

DATA = resources.files("fr_agent.evals").joinpath("data")


def test_bundled_files_are_what_the_builder_writes():
    sets = build_tasks.build()
    for category, items in sets.items():
        assert DATA.joinpath(file_name(category)).read_text(encoding="utf-8") == build_tasks.render(items), category
    assert json.loads(DATA.joinpath("tasks-manifest.json").read_text()) == build_tasks.manifest(sets)


def test_a_few_hundred_items_across_four_categories():
    items = load_tasks()
    assert len(items) == 320 and {i.category for i in items} == set(CATEGORIES)
    assert len({i.id for i in items}) == 320 and len({i.question for i in items}) == 320
    assert [i.category for i in load_tasks(3)] == [c for c in CATEGORIES for _ in range(3)]
    # answers are not always in the same slot, or position alone would score
    assert len({i.answer for i in items}) >= 3


def test_every_data_file_has_its_licence_recorded():
    licences = DATA.joinpath("LICENSES.md").read_text()
    names = sorted(p.name for p in DATA.iterdir() if p.is_file() and p.name != "LICENSES.md")
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| (CC0-1\.0|Apache-2\.0)[^|]*\|", licences, re.M))
    assert sorted(rows) == names


def test_code_answers_are_what_python_says():
    for item in load_tasks():
        if item.category != "code":
            continue
        expression = item.question.split("evaluate to? ", 1)[1]
        value = eval(
            expression,
            {"__builtins__": {"len": len, "sum": sum, "range": range, "max": max, "sorted": sorted, "bool": bool}},
        )
        assert ast.literal_eval(item.choices[item.answer]) == value, item.id
        assert sum(choice == repr(value) for choice in item.choices) == 1, item.id


def test_math_answers_are_right():
    for item in load_tasks():
        m = re.fullmatch(r"What is (\d+) (\+|-|times|divided by) (\d+)\?", item.question)
        if not m:
            continue
        a, op, b = int(m[1]), m[2], int(m[3])
        expected = {"+": a + b, "-": a - b, "times": a * b, "divided by": a // b}[op]
        assert int(item.choices[item.answer]) == expected, item.id


def test_requests_pair_each_choice_with_its_question():
    items = load_tasks(1)
    reqs = requests(items, lambda text: [1, len(text)], lambda text: [ord(c) for c in text[:3]])
    assert len(reqs) == sum(len(i.choices) for i in items)
    first = items[0]
    assert reqs[0] == ([1, len(context(first))], [ord(c) for c in (" " + first.choices[0])[:3]])
