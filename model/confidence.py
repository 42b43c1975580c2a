"""The model's confidence in a caption it generated, from the scores `generate` already returns.

`generate(..., output_scores=True, return_dict_in_generate=True)` keeps each step's logits;
`compute_transition_scores(normalize_logits=True)` turns them into the log-probability of the
token actually chosen. No second forward pass. A caption's confidence is the mean and the
minimum of those log-probabilities (nats, <= 0) over its own tokens: padding after a finished
sequence and the stop token are left out. Low means first is what `--order confidence` serves.
"""

from __future__ import annotations


def caption_confidence(model, output, prompt_length: int, ignore_ids) -> list[tuple[float | None, float | None]]:
    """(mean, min) token log-probability per sequence of a `return_dict_in_generate` output."""
    import torch

    logprobs = model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)  # (batch, new)
    tokens = output.sequences[:, prompt_length:]  # (batch, new)
    keep = ~torch.isin(tokens, torch.tensor(sorted(ignore_ids), device=tokens.device)) & torch.isfinite(logprobs)
    result = []
    for row, mask in zip(logprobs.float(), keep):
        chosen = row[mask]
        if not chosen.numel():
            result.append((None, None))
            continue
        result.append((round(chosen.mean().item(), 4), round(chosen.min().item(), 4)))
    return result
