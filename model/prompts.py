"""Caption presets and HumanVLM's two prompt formats.

Formats (see docs/humanvlm.md):
- `llama3`: what HumanVLM was trained with (xtuner's llama3_chat):
  `<|start_header_id|>user<|end_header_id|>\\n\\n{input}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n`,
  the answer ends with `<|eot_id|>`.
- `card`: the model card's snippet: `USER: <image>\\n{text}\\nASSISTANT:`, ending on the
  tokenizer's end-of-sequence token.
The image always sits in the first user turn; later turns are text only.

User text (questions, custom prompts, captions in the history and in training data) can never
become a control token: `escape_special` breaks up any special-token literal typed in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
# Inserted after the first character of a control-token literal found in user text: the
# tokenizer then reads `<\u200b|eot_id|>` as ordinary text (it matches added tokens on the
# raw string) and the model sees what was typed, minus the power to end a turn or add an image.
ZERO_WIDTH_SPACE = "\u200b"

# Human-scene caption presets: name -> prompt. `detailed` asks for a HumanCaption-HQ caption.
PRESETS: dict[str, str] = {
    "detailed": (
        "Describe this photo of a person in detail: the face (age, expression, hair, facial "
        "features), the body and clothing, the action or pose, and the background."
    ),
    "face": "Describe the face of the person in this photo: age, gender presentation, expression, hair and facial features.",
    "body": "Describe the body, pose and clothing of the person in this photo.",
    "background": "Describe the background and setting of this photo.",
    "brief": "Describe this photo of a person in one sentence.",
}
DEFAULT_PRESET = "detailed"


@dataclass(frozen=True)
class PromptFormat:
    name: str
    user_prefix: str  # before the user's text
    user_suffix: str  # after it: the assistant's turn begins
    turn_end: str  # closes an assistant answer in the history
    stop_token: str | None  # generation stops on it; None = the tokenizer's eos token

    def render(self, turns: list[tuple[str, str | None]], escape: Callable[[str], str] | None = None) -> str:
        """Render a conversation: [(user text, answer or None for the turn to generate)].

        The `<image>` placeholder is added to the first user turn. Only the last turn may
        lack an answer. `escape` (from `special_escaper`) is applied to every question and
        answer, so typed control tokens stay text.
        """
        if escape is not None:
            turns = [(escape(q), None if a is None else escape(a)) for q, a in turns]
        out = []
        for i, (question, answer) in enumerate(turns):
            text = f"{IMAGE_TOKEN}\n{question}" if i == 0 else question
            out.append(f"{self.user_prefix}{text}{self.user_suffix}")
            if answer is not None:
                out.append(f"{self._answer_sep}{answer}{self.turn_end}")
        return "".join(out)

    @property
    def _answer_sep(self) -> str:
        # The card format leaves a space between "ASSISTANT:" and the answer in the history.
        return " " if self.name == "card" else ""


LLAMA3 = PromptFormat(
    name="llama3",
    user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
    user_suffix="<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    turn_end="<|eot_id|>",
    stop_token="<|eot_id|>",
)
CARD = PromptFormat(
    name="card",
    user_prefix="USER: ",
    user_suffix="\nASSISTANT:",
    turn_end="\n",
    stop_token=None,
)
FORMATS = {f.name: f for f in (LLAMA3, CARD)}


def detect_format(tokenizer) -> PromptFormat:
    """A tokenizer that knows Llama-3's header tokens gets the Llama-3 format; others the card's."""
    vocab = tokenizer.get_vocab()
    return LLAMA3 if "<|start_header_id|>" in vocab and "<|eot_id|>" in vocab else CARD


def special_escaper(tokenizer) -> Callable[[str], str]:
    """A function that escapes the tokenizer's control tokens in user text (see ZERO_WIDTH_SPACE).

    Control tokens are the special tokens (Llama-3's 256 `<|...|>`, `<image>`, `<pad>`, eos) and
    any other added token spelt like a tag (`<...>`), in both prompt formats.
    """
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    literals = {t.content for t in added if t.special or (t.content.startswith("<") and t.content.endswith(">"))}
    literals |= set(getattr(tokenizer, "all_special_tokens", []))
    literals = sorted((t for t in literals if len(t) > 1), key=len, reverse=True)  # longest match first
    if not literals:
        return lambda text: text
    pattern = re.compile("|".join(map(re.escape, literals)))
    return lambda text: pattern.sub(lambda m: m[0][0] + ZERO_WIDTH_SPACE + m[0][1:], text)


def resolve_prompt(preset: str | None = None, prompt: str | None = None) -> str:
    """Free text wins over a preset; an unknown preset is a clear error."""
    if prompt and prompt.strip():
        return prompt.strip()
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise UnknownPreset(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


class UnknownPreset(ValueError):
    user_facing = True
