"""The A1111 prompt language: golden outputs of AUTOMATIC1111's `prompt_parser.py` (its doctests and more).

Expected values were produced by A1111 1.10's own functions; floats are compared exactly, as the encoder
multiplies by them.
"""

from __future__ import annotations

import random

import pytest

from modules.prompts.parser import (
    BREAK_TEXT,
    BREAK_WEIGHT,
    MAX_SCHEDULE_BRACKETS,
    ComposablePart,
    ConditioningPlan,
    ExtraNetworkRef,
    ScheduledPrompt,
    ScheduleParser,
    build_conditioning,
    extract_extra_networks,
    extract_extra_networks_batch,
    get_schedules,
    parse_attention,
    select_scheduled,
    split_composable,
    strip_comments,
)


@pytest.fixture(scope="module")
def parser() -> ScheduleParser:
    return ScheduleParser()


def schedule(parser: ScheduleParser, prompt: str, steps: int = 10, hires: int | None = None,
             old: bool = False) -> list[list]:
    return [[e.end_at_step, e.text] for e in get_schedules([prompt], steps, hires, old, parser=parser)[0]]


# --- attention ----------------------------------------------------------------------------------------------------

ATTENTION_GOLDEN = [
    # A1111 doctests
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
        ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    # more, from A1111's function
    ("(a, b:0.8)", [("a, b", 0.8)]),
    ("((word))", [("word", 1.2100000000000002)]),
    ("[word]", [("word", 0.9090909090909091)]),
    ("[[word]]", [("word", 0.8264462809917354)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("(a: 1.5 )", [("a", 1.5)]),
    ("(a:-1)", [("a", -1.0)]),
    ("(a:+.5)", [("a", 0.5)]),
    ("((a:1.5) b)", [("a", 1.6500000000000001), (" b", 1.1)]),
    ("(a:1.2:1.3)", [("a:1.2", 1.3)]),
    ("[a", [("a", 0.9090909090909091)]),
    ("a) b] c", [("a) b] c", 1.0)]),
    (" (a)", [(" ", 1.0), ("a", 1.1)]),
    (r"\\(a\\)", [("\\", 1.0), ("a\\", 1.1)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    (r"a\b", [("ab", 1.0)]),  # a lone backslash is dropped
    ("", [("", 1.0)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("BREAK", [("", 1.0), ("BREAK", -1.0), ("", 1.0)]),
    ("aBREAK b", [("aBREAK b", 1.0)]),
    ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),  # inside brackets the marker is scaled too
]


@pytest.mark.parametrize(("text", "expected"), ATTENTION_GOLDEN)
def test_attention_matches_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_attention(text) == expected


def test_break_marker_constants() -> None:
    assert (BREAK_TEXT, BREAK_WEIGHT) in parse_attention("a BREAK b")


def test_malformed_weight_is_text_instead_of_an_error() -> None:
    # A1111 raises ValueError here; the weight token is read as plain text and the bracket stays open.
    assert parse_attention("(a:1.2.3) b") == [("a:1.2.3) b", 1.1)]
    assert parse_attention("x (a:.)") == [("x ", 1.0), ("a:.)", 1.1)]


# --- schedules ----------------------------------------------------------------------------------------------------

SCHEDULE_GOLDEN = [
    # A1111 doctests (steps 10)
    ("test", 10, None, False, [[10, "test"]]),
    ("a [b:3]", 10, None, False, [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", 10, None, False, [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", 10, None, False, [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", 10, None, False, [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", 10, None, False, [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", 10, None, False, [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", 10, None, False, [[10, "a [unbalanced"]]),
    ("a [b:.5] c", 10, None, False, [[5, "a  c"], [10, "a b c"]]),
    # A1111's doctest expects [[5, "a  c"], [10, "a {b|d{ c"]] ("not handling this right now"), but its own
    # function returns the literal prompt since `|` became alternation syntax; we match the function.
    ("a [{b|d{:.5] c", 10, None, False, [[10, "a [{b|d{:.5] c"]]),
    ("((a][:b:c [d:3]", 10, None, False, [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", 10, None, False, [[s, "a" if s % 2 else "(b:1.1)"] for s in range(1, 11)]),
    ("[fe|]male", 10, None, False, [[s, "female" if s % 2 else "male"] for s in range(1, 11)]),
    ("[fe|||]male", 10, None, False, [[s, "female" if s % 4 == 1 else "male"] for s in range(1, 11)]),
    ("a [b:.5] c", 10, 10, False, [[10, "a b c"]]),
    ("a [b:1.5] c", 10, 10, False, [[5, "a  c"], [10, "a b c"]]),
    # more, from A1111's function
    ("[a|b|c]", 5, None, False, [[1, "a"], [2, "b"], [3, "c"], [4, "a"], [5, "b"]]),
    ("[a|]", 3, None, False, [[1, "a"], [2, ""], [3, "a"]]),
    ("[a:b:1]", 10, None, False, [[1, "a"], [10, "b"]]),  # no decimal point: a step number
    ("[a:b:1.0]", 10, None, False, [[10, "a"]]),  # decimal point: a fraction of the steps
    ("[a:b:1.0]", 10, None, True, [[1, "a"], [10, "b"]]),  # old rule: >= 1 is a step number
    ("[a:b:0.5]", 10, None, True, [[5, "a"], [10, "b"]]),
    ("[a:b:3]", 10, None, True, [[3, "a"], [10, "b"]]),
    ("[a:b:0.33]", 10, None, False, [[3, "a"], [10, "b"]]),
    ("[a:b:2.]", 5, None, False, [[5, "a"]]),
    ("[a:b:+2]", 5, None, False, [[2, "a"], [5, "b"]]),
    ("[a:b: 2 ]", 5, None, False, [[2, "a"], [5, "b"]]),
    ("[a:b:0]", 10, None, False, [[10, "b"]]),
    ("[a:b:-1]", 10, None, False, [[10, "b"]]),
    ("[a:b:25]", 10, None, False, [[10, "a"]]),
    ("[[a|b]:c:3]", 6, None, False, [[1, "a"], [2, "b"], [3, "a"], [4, "c"], [5, "c"], [6, "c"]]),
    ("[a:[b|c]:2]", 4, None, False, [[1, "a"], [2, "a"], [3, "b"], [4, "c"]]),
    ("(a:1.2) [b:c:2] \\[d:3\\]", 5, None, False, [[2, "(a:1.2) b \\[d:3\\]"], [5, "(a:1.2) c \\[d:3\\]"]]),
    ("a [b:3] AND c", 10, None, False, [[3, "a  AND c"], [10, "a b AND c"]]),
    ("", 5, None, False, [[5, ""]]),
    # hires pass: integers count on from the first pass's 10 steps, fractions run 1.0-2.0
    ("a [b:15] c", 10, 10, False, [[5, "a  c"], [10, "a b c"]]),
    ("a [b:5] c", 10, 10, False, [[10, "a b c"]]),
    ("a [b:1.5] c", 10, 20, False, [[10, "a  c"], [20, "a b c"]]),
    ("a [b:c:.5]", 10, 20, True, [[5, "a b"], [10, "a c"]]),  # old rule ignores the hires pass
]


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "steps", "hires", "old", "expected"), SCHEDULE_GOLDEN)
def test_schedules_match_a1111(parser: ScheduleParser, prompt: str, steps: int, hires: int | None, old: bool,
                               expected: list[list]) -> None:
    assert schedule(parser, prompt, steps, hires, old) == expected


def test_a1111_comment_example_at_100_steps(parser: ScheduleParser) -> None:
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
              "[ in background:0.25] [shoddy:masterful:0.5]")
    assert schedule(parser, prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_schedules_keep_batch_order_and_types(parser: ScheduleParser) -> None:
    result = get_schedules(["x [a:b:2]", "y", "x [a:b:2]"], 4, parser=parser)
    assert result[0] == [ScheduledPrompt(2, "x a"), ScheduledPrompt(4, "x b")]
    assert result[1] == [ScheduledPrompt(4, "y")]
    assert result[2] == result[0] and result[2] is not result[0]


def test_overflowing_step_number_does_not_raise(parser: ScheduleParser) -> None:
    # A1111 raises OverflowError; min(steps, inf) is what it means.
    assert schedule(parser, "[a:b:1e999]", 5) == [[5, "a"]]
    assert schedule(parser, "[a:b:-1e999]", 5) == [[5, "b"]]


@pytest.mark.slow
def test_deep_nesting_is_parsed_up_to_the_bracket_limit(parser: ScheduleParser) -> None:
    depth = MAX_SCHEDULE_BRACKETS // 2 - 1
    prompt = "[" * depth + "a:b:2" + "]" * depth
    inner = "[" * (depth - 1) + "a" + "]" * (depth - 1)
    assert schedule(parser, prompt, 4) == [[2, inner], [4, inner.replace("a", "b")]]


def test_too_many_brackets_keep_the_prompt_literally(parser: ScheduleParser) -> None:
    prompt = "(c:1.2) " * MAX_SCHEDULE_BRACKETS + "[a:b:2]"
    assert schedule(parser, prompt, 4) == [[4, prompt]]
    deep = "[" * 5000 + "a:b:2" + "]" * 5000
    assert schedule(parser, deep, 4) == [[4, deep]]
    assert schedule(ScheduleParser(max_brackets=2), "x [a:b:2]", 4) == [[2, "x a"], [4, "x b"]]


def test_prompts_without_edit_syntax_skip_the_parser(parser: ScheduleParser) -> None:
    # far above the bracket limit, yet exact: without '[', or without ':' and '|', there is nothing to schedule
    assert schedule(parser, "(c:1.2), " * 400, 4) == [[4, "(c:1.2), " * 400]]
    assert schedule(parser, "[x] (y) " * 400, 4) == [[4, "[x] (y) " * 400]]


def test_select_scheduled_uses_a1111_step_rule() -> None:
    entries = (ScheduledPrompt(3, "a"), ScheduledPrompt(10, "b"))
    assert [select_scheduled(entries, s).text for s in (0, 3, 4, 10, 11)] == ["a", "a", "b", "b", "a"]


# --- AND, conditioning plan ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "expected"), [
    ("a cat AND a dog :0.5", [("a cat", 1.0), (" a dog", 0.5)]),
    ("a:1.2", [("a", 1.2)]),
    ("a AND b:-1 AND c: +.5 ", [("a", 1.0), (" b", -1.0), (" c", 0.5)]),
    ("ANDROID", [("ANDROID", 1.0)]),
    ("(a:1.2)", [("(a:1.2)", 1.0)]),
    ("", [("", 1.0)]),
    ("x AND", [("x", 1.0), ("", 1.0)]),
])
def test_split_composable_matches_a1111(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert split_composable(prompt) == expected


def test_build_conditioning_tree(parser: ScheduleParser) -> None:
    plan = build_conditioning(["a [b:c:2] AND d :0.5", "e"], 4, parser=parser)
    assert isinstance(plan, ConditioningPlan) and plan.steps == 4
    first = plan.prompts[0]
    assert first.prompt == "a [b:c:2] AND d :0.5"
    assert first.parts == (
        ComposablePart(1.0, (ScheduledPrompt(2, "a b"), ScheduledPrompt(4, "a c"))),
        ComposablePart(0.5, (ScheduledPrompt(4, " d"),)),
    )
    assert plan.prompts[1].parts == (ComposablePart(1.0, (ScheduledPrompt(4, "e"),)),)
    assert plan.texts() == ("a b", "a c", " d", "e")
    assert plan.at_step(1) == ((("a b", 1.0), (" d", 0.5)), (("e", 1.0),))
    assert plan.at_step(3) == ((("a c", 1.0), (" d", 0.5)), (("e", 1.0),))


def test_negative_prompts_keep_and_as_text(parser: ScheduleParser) -> None:
    plan = build_conditioning(["ugly AND blurry:0.5"], 4, composable=False, parser=parser)
    assert plan.prompts[0].parts == (ComposablePart(1.0, (ScheduledPrompt(4, "ugly AND blurry:0.5"),)),)


def test_texts_are_shared_between_prompts(parser: ScheduleParser) -> None:
    plan = build_conditioning(["a AND b", "b AND a", "a"], 3, parser=parser)
    assert plan.texts() == ("a", " b", "b", " a")


def test_hires_conditioning(parser: ScheduleParser) -> None:
    plan = build_conditioning(["x [y:15]"], 10, hires_steps=10, parser=parser)
    assert plan.prompts[0].parts[0].schedule == (ScheduledPrompt(5, "x "), ScheduledPrompt(10, "x y"))


# --- extra networks, comments -------------------------------------------------------------------------------------

def test_extract_extra_networks() -> None:
    text, refs = extract_extra_networks("a cat <lora:film grain:0.8>, <lora:x:0.5:0.7> <hypernet:h> <bad> <lora:>")
    assert text == "a cat ,   <bad> <lora:>"
    assert refs == [
        ExtraNetworkRef("lora", "film grain", ("0.8",)),
        ExtraNetworkRef("lora", "x", ("0.5", "0.7")),
        ExtraNetworkRef("hypernet", "h"),
    ]


def test_extra_network_named_and_positional_fields() -> None:
    _, (ref,) = extract_extra_networks("<lora:n:0.5:te=0.3:unet=1.2:a=b=c>")
    assert ref.items == ("n", "0.5", "te=0.3", "unet=1.2", "a=b=c")
    assert ref.positional == ("n", "0.5", "a=b=c")
    assert ref.named == {"te": "0.3", "unet": "1.2"}


def test_batch_uses_first_prompt_networks() -> None:
    texts, refs = extract_extra_networks_batch(["a <lora:x:1>", "b <lora:y:1>"])
    assert texts == ["a ", "b "] and refs == [ExtraNetworkRef("lora", "x", ("1",))]
    assert extract_extra_networks_batch([]) == ([], [])


def test_strip_comments() -> None:
    assert strip_comments("# note\na cat # fluffy\nBREAK dog") == "\na cat \nBREAK dog"
    assert strip_comments("no comment") == "no comment"


# --- never raise --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_random_strings_never_raise(parser: ScheduleParser) -> None:
    alphabet = list("[]():|\\ ab,.0123<>-e\n") + ["AND", "BREAK", ":0.5", ":2", "1e999", "<lora:a:1>", "\\("]
    rng = random.Random(1234)
    prompts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for prompt in prompts:
        text, _ = extract_extra_networks(strip_comments(prompt))
        assert isinstance(parse_attention(text), list)
        assert isinstance(split_composable(text), list)
    plan = build_conditioning(prompts[:800], 6, parser=parser)  # Earley parsing is the slow part
    assert len(plan.prompts) == 800
    for text in plan.texts():
        assert parse_attention(text)
    hires = build_conditioning(prompts[800:1000], 6, hires_steps=4, use_old_scheduling=False, parser=parser)
    assert all(part.schedule[-1].end_at_step == 4 for p in hires.prompts for part in p.parts)
