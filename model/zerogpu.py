"""ZeroGPU, Hugging Face's shared GPUs: `gpu(duration=...)` is `spaces.GPU(duration=...)` on a
ZeroGPU Space and returns the function untouched everywhere else (a laptop, a dedicated GPU,
a CPU-only machine), so one code path serves all of them.

How ZeroGPU runs a decorated call: the platform sets `SPACES_ZERO_GPU`; the model is put on
CUDA at start-up (outside decorated functions, virtually: `spaces` patches torch); each call
is scheduled for at most `duration(*args)` seconds (shorter requests queue ahead of longer
ones) and runs in a forked worker process that holds a real GPU. Arguments and results cross
to that worker pickled, which is why a `VLM` pickles by reference (`remember` / `recall`):
the worker, forked after the model loaded, already holds it. Exceptions come back from the
worker only as their class name unless they are `gr.Error`s, so the product's user-facing
errors are converted on the way out, and ZeroGPU's own refusals (quota spent, queue full,
duration too long) become `GpuQuotaExceeded`, which the UI shows as one clear message.
`torch.compile` is not supported there; nothing here uses it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import threading
import weakref
from collections.abc import Callable

ZEROGPU_ENV = "SPACES_ZERO_GPU"  # set by the platform on ZeroGPU hardware

# Seconds a call asks for, for HumanVLM (8B, 16-bit) on one ZeroGPU slice (an H200 share).
# Deliberately generous: a call that outlives its duration is killed mid-answer, while one that
# asks for a little too much only waits a little longer in the queue and costs the visitor
# nothing extra (quota is charged for the time actually used).
TOKENS_PER_S = 20.0  # new tokens per second, one sequence
BATCH_STEP_COST = 0.15  # each extra sequence in a batch makes a decoding step this much slower
PREFILL_S = 1.5  # per image: the vision tower and the prompt (728 image features)
OVERHEAD_S = 5.0  # worker hand-over, inputs in, text out
LOAD_S = 60.0  # loading another version (~17 GB) onto the GPU, for a comparison
MIN_S, MAX_S = 10, 120  # ZeroGPU refuses requests above a few minutes; 120 s is always allowed


class ZeroGpuError(RuntimeError):
    """A GPU call on ZeroGPU that failed with a message for the visitor."""

    user_facing = True


class GpuQuotaExceeded(ZeroGpuError):
    """ZeroGPU refused to schedule the call: the visitor's GPU quota is spent or the queue is full."""


def on_zerogpu() -> bool:
    return os.environ.get(ZEROGPU_ENV, "").lower() in ("1", "t", "true")


def generation_seconds(max_new_tokens: int, batch: int = 1, loads: int = 0) -> int:
    """GPU seconds to ask for: `batch` images answered with up to `max_new_tokens` each,
    after loading `loads` other model versions. Grows with each; clamped to [MIN_S, MAX_S]."""
    batch = max(1, int(batch))
    decode = max(1, int(max_new_tokens)) / TOKENS_PER_S * (1 + BATCH_STEP_COST * (batch - 1))
    seconds = OVERHEAD_S + PREFILL_S * batch + decode + LOAD_S * max(0, int(loads))
    return int(min(MAX_S, max(MIN_S, round(seconds))))


def gpu(duration: Callable[..., int]):
    """Decorator: `spaces.GPU(duration=duration)` on ZeroGPU, the function itself elsewhere.

    `duration` takes the decorated function's own arguments and returns seconds.
    """

    def decorate(fn):
        if not on_zerogpu():
            return fn
        import spaces  # only on ZeroGPU: it patches torch and hooks Gradio's launch

        scheduled = spaces.GPU(duration=duration)(_readable_errors(fn))
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def stream(*args, **kwargs):
                try:
                    yield from scheduled(*args, **kwargs)
                except Exception as exc:
                    raise translate_error(exc) from None

            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return scheduled(*args, **kwargs)
            except Exception as exc:
                raise translate_error(exc) from None

        return call

    return decorate


# Title given to the product's own errors while they cross back from the GPU worker.
_OURS = "HumanVLM"


def _readable_errors(fn):
    """Inside the worker: a user-facing error travels back as a gr.Error with its message."""

    def as_gradio(exc: Exception):
        import gradio as gr

        return gr.Error(str(exc), title=_OURS, print_exception=False)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                if getattr(exc, "user_facing", False):
                    raise as_gradio(exc) from None
                raise

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if getattr(exc, "user_facing", False):
                raise as_gradio(exc) from None
            raise

    return call


def translate_error(exc: Exception) -> Exception:
    """ZeroGPU's gr.Errors as the product's user-facing errors; anything else unchanged."""
    title = getattr(exc, "title", None)
    if not isinstance(title, str) or not getattr(exc, "message", None):
        return exc
    message = str(exc.message)
    if title == _OURS:
        return ZeroGpuError(message)
    if "quota" in title.lower() or "queue" in title.lower() or "credits" in title.lower():
        return GpuQuotaExceeded(f"no GPU for you right now ({message.rstrip('. ')}). Sign in with Hugging Face "
                                "for a larger daily GPU quota, or try again later.")
    if title.startswith("ZeroGPU"):
        return ZeroGpuError(f"{title}: {message}")
    return exc


# ---- objects that cross to the GPU worker by reference ---------------------------------------
# A fork of this process holds every object remembered before the fork; pickling one sends
# only its key. Weak values: a released model does not stay alive for this table.
_live: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()
_keys = itertools.count(1)
_lock = threading.Lock()


def remember(obj) -> int:
    with _lock:
        key = next(_keys)
        _live[key] = obj
    return key


def recall(key: int):
    found = _live.get(key)
    if found is None:
        raise ZeroGpuError("the model changed while this GPU worker was running: try again")
    return found
