"""The model's confidence in a caption it generated, recorded while `generate` runs.

`ConfidenceRecorder` is a logits processor: at each step it keeps the log-softmax of that
step's scores (one (batch, vocab) tensor, so memory stays flat however long the caption) and,
at the next step, reads off the log-probability of the token that was chosen. No second forward
pass, and unlike `output_scores=True` nothing grows with the caption's length (HumanVLM's
128k vocabulary x 400 steps x batch 4 would be ~0.8 GB of float32 scores). It runs after the
built-in processors (repetition penalty...) and before sampling's temperature / top-k / top-p,
so the figure is the model's own distribution, not the sampler's truncation of it.

A caption's confidence is the mean and the minimum of those log-probabilities (nats, <= 0)
over its own tokens: padding after a finished sequence and the stop tokens are left out. Low
means first is what `--order confidence` serves. Imported only by generation (torch, transformers).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class ConfidenceRecorder(LogitsProcessor):
    def __init__(self, prompt_length: int, ignore_ids):
        self.prompt_length = prompt_length
        self.ignore_ids = sorted(ignore_ids)
        self._last: torch.Tensor | None = None  # (batch, vocab) log-probs of the latest step
        self._chosen: list[torch.Tensor] = []  # per step: (batch,) log-prob of the token picked

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:  # input_ids now ends with the token the previous step picked
            self._chosen.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def confidence(self, sequences: torch.LongTensor) -> list[tuple[float | None, float | None]]:
        """(mean, min) token log-probability per sequence, from `generate`'s returned ids."""
        tokens = sequences[:, self.prompt_length:]  # (batch, new)
        if self._last is None or tokens.shape[1] == 0:
            return [(None, None)] * sequences.shape[0]
        steps = list(self._chosen[: tokens.shape[1] - 1])
        steps.append(self._last.gather(1, tokens[:, len(steps):len(steps) + 1]).squeeze(1))  # the final token
        logprobs = torch.stack(steps, dim=1)  # (batch, new)
        keep = ~torch.isin(tokens, torch.tensor(self.ignore_ids, device=tokens.device)) & torch.isfinite(logprobs)
        out = []
        for row, mask in zip(logprobs, keep):
            chosen = row[mask]
            if not chosen.numel():
                out.append((None, None))
                continue
            out.append((round(chosen.mean().item(), 4), round(chosen.min().item(), 4)))
        return out
