"""The AUTOMATIC1111 prompt language, as pure functions and plain data (no torch).

A prompt goes through these steps, in A1111's order, before any text reaches a text encoder:
1. `strip_comments` (optional, A1111's "Enable comments" option): `# ...` up to the end of a line is dropped.
2. `extract_extra_networks`: `<lora:name:0.8>`, `<hypernet:name>` ... are removed and returned as references.
3. `build_conditioning`: the prompt is split on `AND` into weighted parts (positive prompts only), each becoming a
   step schedule of plain texts (prompt editing `[from:to:when]`, alternation `[a|b]`): a `ConditioningPlan`.
4. `parse_attention`, done by the encoder on each scheduled text: `(word:1.2)`, `[word]`, `BREAK`.

Every function here accepts any string and never raises on it: unparsable syntax falls back to the literal text,
as in A1111, and input on which A1111 itself crashes takes the nearest fallback (each function says which).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import lark

log = logging.getLogger(__name__)

BREAK_TEXT = "BREAK"
BREAK_WEIGHT = -1.0
"""`parse_attention` marks a BREAK keyword as the piece (BREAK_TEXT, BREAK_WEIGHT), as A1111 does."""

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1


# --- data types ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledPrompt:
    """A text to condition on up to and including sampling step `end_at_step` (A1111's step numbering)."""

    end_at_step: int
    text: str


PromptSchedule = list[ScheduledPrompt]


def select_scheduled(schedule: Sequence[ScheduledPrompt], step: int) -> ScheduledPrompt:
    """The entry used at sampler step `step` (0-based, as A1111's CFG denoiser counts).

    A1111 (`reconstruct_cond_batch`) takes the first entry with `step <= end_at_step`, and the first entry of all
    when `step` is past the end of the schedule.
    """
    for entry in schedule:
        if step <= entry.end_at_step:
            return entry
    return schedule[0]


@dataclass(frozen=True)
class ComposablePart:
    """One `AND`-separated part of a prompt: its weight and its step schedule (never empty)."""

    weight: float
    schedule: tuple[ScheduledPrompt, ...]

    def text_at(self, step: int) -> str:
        """The text of this part at sampler step `step` (see `select_scheduled`)."""
        return select_scheduled(self.schedule, step).text


@dataclass(frozen=True)
class PromptConditioning:
    """What one prompt of a batch conditions on: its parts (a single part of weight 1 without `AND`)."""

    prompt: str
    parts: tuple[ComposablePart, ...]


@dataclass(frozen=True)
class ConditioningPlan:
    """The conditioning of a whole batch (one entry per prompt, in batch order), before any encoding."""

    prompts: tuple[PromptConditioning, ...]
    steps: int

    def texts(self) -> tuple[str, ...]:
        """Every distinct text the encoder must encode, in first-seen order."""
        seen: dict[str, None] = {}
        for prompt in self.prompts:
            for part in prompt.parts:
                seen.update((entry.text, None) for entry in part.schedule)
        return tuple(seen)

    def at_step(self, step: int) -> tuple[tuple[tuple[str, float], ...], ...]:
        """Per prompt, the `(text, weight)` of each part at sampler step `step`."""
        return tuple(tuple((part.text_at(step), part.weight) for part in p.parts) for p in self.prompts)


@dataclass(frozen=True)
class ExtraNetworkRef:
    """One `<kind:name:arg:...>` reference, e.g. `<lora:film grain:0.8>` -> kind 'lora', name 'film grain'.

    `args` are the colon-separated fields after the name, as text; each network type reads its own
    (LoRA: text-encoder multiplier, UNet multiplier, or `te=`/`unet=`/`dyn=` named fields).
    """

    kind: str
    name: str
    args: tuple[str, ...] = ()

    @property
    def items(self) -> tuple[str, ...]:
        """All fields, name included (A1111 `ExtraNetworkParams.items`)."""
        return (self.name, *self.args)

    @property
    def positional(self) -> tuple[str, ...]:
        """Fields without a single `=` (A1111 `ExtraNetworkParams.positional`; the name is the first)."""
        return tuple(item for item in self.items if len(item.split("=", 2)) != 2)

    @property
    def named(self) -> dict[str, str]:
        """`key=value` fields (A1111 `ExtraNetworkParams.named`)."""
        pairs = (item.split("=", 2) for item in self.items)
        return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


# --- attention: (word:1.2), [word], BREAK -------------------------------------------------------------------------

_ATTENTION_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]              # an escaped bracket or backslash: that character, literally
    | \\                        # a lone backslash: dropped
    | [(\[]                     # an opening bracket
    | :\s*([+-]?[.\d]+)\s*\)    # ':1.3)' - an explicit weight that closes a round bracket
    | [)\]]                     # a closing bracket
    | [^\\()\[\]:]+             # plain text
    | :                         # a colon that starts no weight
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def _to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _append_plain(pieces: list[list], text: str) -> None:
    for index, part in enumerate(_BREAK.split(text)):
        if index:
            pieces.append([BREAK_TEXT, BREAK_WEIGHT])
        pieces.append([part, 1.0])


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into `(text, weight)` pieces, exactly as A1111's `parse_prompt_attention`.

    `(x)` multiplies by 1.1, `[x]` divides by 1.1, `(x:w)` multiplies by w; `\\(` `\\)` `\\[` `\\]` `\\\\` are
    literal characters. Brackets still open at the end apply their multiplier; closing brackets that close nothing
    are plain text. `BREAK` becomes the piece `("BREAK", -1.0)`; inside brackets that marker is multiplied too
    (`(a BREAK b)` gives `("BREAK", -1.1)`), and A1111's encoder then no longer treats it as a break. Adjacent
    pieces of equal weight merge; an empty prompt gives `[("", 1.0)]`. A1111 raises on a malformed weight like
    `(a:1.2.3)`; we read `:1.2.3)` as text.
    """
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), _to_float(match.group(1))
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token in ("(", "["):
            (round_open if token == "(" else square_open).append(len(pieces))
        elif weight is not None and round_open:
            _multiply_from(pieces, round_open.pop(), weight)
        elif token == ")" and round_open:
            _multiply_from(pieces, round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            _multiply_from(pieces, square_open.pop(), SQUARE_MULTIPLIER)
        else:
            _append_plain(pieces, token)
    for start in round_open:
        _multiply_from(pieces, start, ROUND_MULTIPLIER)
    for start in square_open:
        _multiply_from(pieces, start, SQUARE_MULTIPLIER)
    return _merge_equal_weights(pieces or [["", 1.0]])


def _multiply_from(pieces: list[list], start: int, multiplier: float) -> None:
    for piece in pieces[start:]:
        piece[1] *= multiplier


def _merge_equal_weights(pieces: list[list]) -> list[tuple[str, float]]:
    merged: list[tuple[str, float]] = []
    for piece_text, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece_text, weight)
        else:
            merged.append((piece_text, weight))
    return merged


# --- scheduling: [from:to:when], [a|b] ----------------------------------------------------------------------------

# Earley with A1111's rule shapes, so that ambiguous inputs resolve as they do there. Brackets and colons that
# pair with nothing are kept verbatim at the top level; `(...)` and `[...]` without a step are ordinary text here
# (the attention parser reads them later); `literal` keeps its backslash escapes for the same reason.
_SCHEDULE_GRAMMAR = r"""
!start: (text | /[][():]/+)*
text: (emphasis | edit | alternation | literal | WHITESPACE)*
!emphasis: "(" text ")"
         | "(" text ":" text ")"
         | "[" text "]"
edit: "[" [text ":"] text ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternation: "[" text ("|" [text])+ "]"
WHITESPACE: /\s+/
literal: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@dataclass(frozen=True)
class _Edit:
    """`[before:after:when]`; `when` is the number exactly as written (its spelling decides its meaning)."""

    before: tuple[_Piece, ...]
    after: tuple[_Piece, ...]
    when: str


@dataclass(frozen=True)
class _Alternation:
    options: tuple[tuple[_Piece, ...], ...]


_Piece = str | _Edit | _Alternation


def _join(children: Iterable[object]) -> tuple[_Piece, ...]:
    """Flatten transformed children into pieces, merging neighbouring strings (None = an absent optional)."""
    out: list[_Piece] = []
    for child in children:
        for piece in child if isinstance(child, tuple) else (() if child is None else (child,)):
            if isinstance(piece, str) and out and isinstance(out[-1], str):
                out[-1] = out[-1] + str(piece)
            else:
                out.append(str(piece) if isinstance(piece, str) else piece)
    return tuple(out)


class _ToPieces(lark.Transformer):
    """Turns the parse tree into nested `_Piece` tuples (text, edits, alternations)."""

    def start(self, children: list) -> tuple[_Piece, ...]:
        return _join(children)

    text = emphasis = literal = start

    def edit(self, children: list) -> tuple[_Piece, ...]:
        before, after, _, when, _ = children
        return (_Edit(before or (), after or (), str(when)),)

    def alternation(self, children: list) -> tuple[_Piece, ...]:
        return (_Alternation(tuple(option or () for option in children)),)


@dataclass(frozen=True)
class _StepRule:
    """How `when` numbers become steps: A1111's current rule (optionally for a hires pass) or its old rule."""

    steps: int
    int_offset: int = 0
    float_offset: float = 0.0
    old: bool = False

    def resolve(self, when: str) -> int:
        """The last step of `before` (may be < 1: `after` from the start); A1111 `CollectSteps.scheduled`."""
        value = float(when)
        if self.old:
            value = value * self.steps if value < 1 else value
        elif "." in when:
            value = (value - self.float_offset) * self.steps
        else:
            value = value - self.int_offset
        if not math.isfinite(value):  # '1e999': A1111 overflows here; clamp as min(steps, inf) would
            return self.steps if value > 0 else -1
        return min(self.steps, int(value))


def _step_rule(base_steps: int, hires_steps: int | None, use_old_scheduling: bool) -> _StepRule:
    if hires_steps is None or use_old_scheduling:
        return _StepRule(base_steps, old=use_old_scheduling)
    # A hires pass counts on from the first pass: integers are steps after `base_steps`, fractions run 1.0-2.0.
    return _StepRule(hires_steps, int_offset=base_steps, float_offset=1.0)


def _change_steps(pieces: tuple[_Piece, ...], rule: _StepRule, found: set[int]) -> None:
    for piece in pieces:
        if isinstance(piece, _Edit):
            when = rule.resolve(piece.when)
            if when >= 1:
                found.add(when)
            _change_steps(piece.before, rule, found)
            _change_steps(piece.after, rule, found)
        elif isinstance(piece, _Alternation):
            found.update(range(1, rule.steps + 1))
            for option in piece.options:
                _change_steps(option, rule, found)


def _render(pieces: tuple[_Piece, ...], step: int, rule: _StepRule) -> str:
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif isinstance(piece, _Edit):
            out.append(_render(piece.before if step <= rule.resolve(piece.when) else piece.after, step, rule))
        else:
            out.append(_render(piece.options[(step - 1) % len(piece.options)], step, rule))
    return "".join(out)


MAX_SCHEDULE_BRACKETS = 256
"""Prompts with more bracket characters than this are not searched for edits (see `ScheduleParser`)."""

_BRACKETS = re.compile(r"[\[\]()]")


class ScheduleParser:
    """Parses prompt editing and alternation. Build once and reuse: building the Earley parser takes a while.

    Earley parsing (A1111's choice, kept so that ambiguous prompts resolve identically) grows steeply with the
    number of brackets: about 2 s for 50 weighted groups plus one edit on a slow CPU, 30 s for 150. A prompt
    without `[`, or without both `:` and `|`, cannot hold an edit or an alternation and is returned as it is without
    parsing (the same result, instantly). A prompt with more than `max_brackets` bracket characters is kept
    literally, with a warning, so that one request cannot hold the worker for minutes; A1111 has no such limit.
    """

    def __init__(self, max_brackets: int = MAX_SCHEDULE_BRACKETS) -> None:
        self._lark = lark.Lark(_SCHEDULE_GRAMMAR)
        self.max_brackets = max_brackets

    def _pieces(self, prompt: str) -> tuple[_Piece, ...] | None:
        if "[" not in prompt or (":" not in prompt and "|" not in prompt):
            return (prompt,)
        if len(_BRACKETS.findall(prompt)) > self.max_brackets:
            log.warning("prompt has more than %d brackets: kept as it is, without prompt editing or alternation",
                        self.max_brackets)
            return None
        try:
            return _ToPieces().transform(self._lark.parse(prompt))
        except (lark.exceptions.LarkError, RecursionError):
            log.debug("prompt kept literally, its schedule syntax does not parse: %r", prompt)
            return None

    def schedule(self, prompt: str, rule: _StepRule) -> PromptSchedule:
        """One prompt's schedule; the literal prompt for all steps when its syntax does not parse."""
        pieces = self._pieces(prompt)
        if pieces is None:
            return [ScheduledPrompt(rule.steps, prompt)]
        found = {rule.steps}
        _change_steps(pieces, rule, found)
        return [ScheduledPrompt(step, _render(pieces, step, rule)) for step in sorted(found)]

    def schedules(self, prompts: Sequence[str], steps: int, hires_steps: int | None = None,
                  use_old_scheduling: bool = False) -> list[PromptSchedule]:
        """A1111 `get_learned_conditioning_prompt_schedules`: one schedule per prompt (each prompt parsed once)."""
        rule = _step_rule(steps, hires_steps, use_old_scheduling)
        cache = {prompt: self.schedule(prompt, rule) for prompt in dict.fromkeys(prompts)}
        return [list(cache[prompt]) for prompt in prompts]



@functools.cache
def shared_parser() -> ScheduleParser:
    """The parser with the default bracket limit, built once per process (building it takes ~40 ms, more than
    parsing a prompt). Sharing it is safe: lark's Earley parser keeps each parse's state in the call."""
    return ScheduleParser()

def get_schedules(prompts: Sequence[str], steps: int, hires_steps: int | None = None,
                  use_old_scheduling: bool = False, parser: ScheduleParser | None = None) -> list[PromptSchedule]:
    """Step schedules of `prompts` for a run of `steps` sampling steps (A1111 semantics exactly).

    `[from:to:when]` shows `from` up to step `when`, then `to`; `[to:when]` and `[from::when]` leave one side
    empty. `when` written with a decimal point is a fraction of `steps` (`0.25`, `1.0`), without one it is a
    step number (`5`). For a hires pass give the first pass's step count as `steps` and the hires pass's as
    `hires_steps`: integers then count on from the first pass and fractions run from 1.0 to 2.0.
    `use_old_scheduling` is A1111's compatibility option: numbers below 1 are fractions, others steps, and the
    hires pass is scheduled like the first. `[a|b|c]` cycles through its options at every step.
    """
    return (parser or shared_parser()).schedules(prompts, steps, hires_steps, use_old_scheduling)


# --- composable diffusion: a AND b :0.5 ---------------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_composable(prompt: str) -> list[tuple[str, float]]:
    """Split a prompt on `AND` into `(text, weight)` parts (A1111 `get_multicond_prompt_list`).

    A part ending in `:number` takes that weight (default 1.0); trailing blanks are dropped, leading ones kept.
    """
    parts: list[tuple[str, float]] = []
    for part in _AND.split(prompt):
        match = _PART_WEIGHT.search(part)
        if match is None:  # the pattern matches every string; kept for safety
            parts.append((part, 1.0))
            continue
        text, weight = match.groups()
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


def build_conditioning(prompts: Sequence[str], steps: int, *, hires_steps: int | None = None,
                       use_old_scheduling: bool = False, composable: bool = True,
                       parser: ScheduleParser | None = None) -> ConditioningPlan:
    """The conditioning plan of a batch of prompts (after extra networks were extracted).

    `composable=True` splits on `AND` (A1111 does this for positive prompts); negative prompts use
    `composable=False` and keep `AND` as text, as A1111's `get_learned_conditioning` does.
    """
    parser = parser or shared_parser()
    split = [split_composable(p) if composable else [(p, 1.0)] for p in prompts]
    texts = list(dict.fromkeys(text for parts in split for text, _ in parts))
    schedules = dict(zip(texts, parser.schedules(texts, steps, hires_steps, use_old_scheduling), strict=True))
    return ConditioningPlan(
        prompts=tuple(
            PromptConditioning(prompt, tuple(ComposablePart(weight, tuple(schedules[text])) for text, weight in parts))
            for prompt, parts in zip(prompts, split, strict=True)
        ),
        steps=steps,
    )


# --- extra networks and comments ----------------------------------------------------------------------------------

_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


def extract_extra_networks(text: str) -> tuple[str, list[ExtraNetworkRef]]:
    """Remove `<kind:name[:arg...]>` references from a prompt and return them in order (A1111 `parse_prompt`)."""
    found: list[ExtraNetworkRef] = []

    def take(match: re.Match[str]) -> str:
        name, *args = match.group(2).split(":")
        found.append(ExtraNetworkRef(match.group(1), name, tuple(args)))
        return ""

    return _EXTRA_NETWORK.sub(take, text), found


def extract_extra_networks_batch(prompts: Sequence[str]) -> tuple[list[str], list[ExtraNetworkRef]]:
    """Strip references from every prompt of a batch; as in A1111, the first prompt's references apply to all."""
    stripped = [extract_extra_networks(prompt) for prompt in prompts]
    return [text for text, _ in stripped], (stripped[0][1] if stripped else [])


_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_LINE_END_COMMENT = re.compile(r"#[^\n]*(\n|$)")


def strip_comments(text: str) -> str:
    """Drop `#` comments up to the end of their line (A1111's "Enable comments" option; a line break stays)."""
    return _LINE_END_COMMENT.sub("\n", _WHOLE_LINE_COMMENT.sub("\n", text))
