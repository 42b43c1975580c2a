"""Generation on a loaded model: streaming chat, single captions and batched captioning."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from model.prompts import PromptFormat, special_escaper
from model.zerogpu import generation_seconds, gpu, recall, remember


class GenerationError(RuntimeError):
    user_facing = True


@dataclass
class GenerationSettings:
    """Sampling settings. temperature 0 means greedy decoding (the model card's setting)."""

    max_new_tokens: int = field(default=400, metadata={"help": "longest answer, in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; 0.2-1.0 for varied answers"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling mass (when temperature > 0)"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "> 1 discourages repeated phrases"})
    seed: int | None = field(default=None, metadata={"help": "fixes sampling for reproducible answers"})

    def generate_kwargs(self) -> dict:
        if self.max_new_tokens < 1:
            raise GenerationError("max new tokens must be at least 1")
        kwargs = {"max_new_tokens": int(self.max_new_tokens), "repetition_penalty": float(self.repetition_penalty)}
        if self.temperature and self.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": float(self.temperature), "top_p": float(self.top_p)}
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return kwargs

    def as_dict(self) -> dict:
        return asdict(self)


Turns = list[tuple[str, str | None]]  # [(user text, answer)], the last answer None


@dataclass(frozen=True)
class Scored:
    """The last item `VLM.stream(..., scores=True)` yields after the text: the model's confidence
    in the whole answer, mean and minimum token log-probability (model/confidence.py). None when
    the answer is empty."""

    mean: float | None
    min: float | None


class _Stopped(Exception):
    """Raised inside `generate` (from the streamer) when the consumer went away."""


class _TokenStreamer:
    """Hands new token ids from the generation thread to the consumer, and carries the stop.

    transformers' TextIteratorStreamer decodes on the generation thread, re-decoding its whole
    cache at every token; on a small model that costs more than the forward pass. Here `put`
    only appends ids; the consumer decodes them in batches on its own thread. A stop request
    (the UI's stop button, a client that left) is raised from `put` at the next token, which
    costs nothing per step, unlike a stopping criterion.
    """

    def __init__(self):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = threading.Event()
        self.finished = threading.Event()  # wakes a consumer waiting for more tokens
        self._prompt_seen = False

    def put(self, value) -> None:
        if self.stop.is_set():
            raise _Stopped
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)
        self.finished.set()


# The consumer wakes at most this often: waking at every token would fight the generation
# thread for the interpreter lock, which is what limits a small model's speed on a CPU.
DRAIN_EVERY_S = 0.005


def _detokenize(streamer: _TokenStreamer, tokenizer) -> Iterator[str]:
    """Incremental decoding: emit text once it no longer ends in a partial UTF-8 character.

    Decodes only the ids since the last emitted piece (plus a few for context), so the cost
    per token stays constant however long the answer gets.
    """
    ids: list[int] = []
    prefix = read = 0  # ids[prefix:read] is the context already emitted
    done = False
    while not done:
        chunk = streamer.queue.get()
        if chunk is not None:
            streamer.finished.wait(DRAIN_EVERY_S)  # let a few more tokens arrive; decode them together
        while chunk is not None:
            ids.extend(chunk)
            try:
                chunk = streamer.queue.get_nowait()
            except queue.Empty:
                break
        done = chunk is None
        before = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
        text = tokenizer.decode(ids[prefix:], skip_special_tokens=True)
        if len(text) > len(before) and (done or not text.endswith("\ufffd")):
            yield text[len(before):]
            prefix, read = read, len(ids)


class VLM:
    """A loaded vision-language model: the only object the UI, queue and trainer talk to."""

    def __init__(self, model, processor, prompt_format: PromptFormat, info):
        self.model = model
        self.processor = processor
        self.prompt_format = prompt_format
        self.info = info
        self._lock = threading.Lock()  # one generation at a time on one model
        # Pixels go in at the vision tower's precision (kept unquantized in 4/8-bit).
        self._pixel_dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        tok = processor.tokenizer
        self._escape = special_escaper(tok)  # typed control tokens stay text
        stop = tok.convert_tokens_to_ids(prompt_format.stop_token) if prompt_format.stop_token else tok.eos_token_id
        extra = model.generation_config.eos_token_id
        extra = extra if isinstance(extra, list) else [extra] if extra is not None else []
        self.stop_ids = list(dict.fromkeys([stop, *extra]))
        self._ref = remember(self)

    def __reduce__(self):
        # By reference: ZeroGPU pickles a GPU call's arguments to its worker, a fork of this
        # process that already holds the model (model/zerogpu.py). Never the weights themselves.
        return recall, (self._ref,)

    # -- inputs -----------------------------------------------------------------------------
    def prompt_text(self, turns: Turns) -> str:
        return self.prompt_format.render(turns, escape=self._escape)

    def _inputs(self, images: list, texts: list[str]):
        batch = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        batch["pixel_values"] = batch["pixel_values"].to(self._pixel_dtype)
        return batch.to(self.model.device)

    def _gen_kwargs(self, settings: GenerationSettings | None) -> dict:
        settings = settings or GenerationSettings()
        if settings.seed is not None:
            import torch

            torch.manual_seed(settings.seed)
        return settings.generate_kwargs() | {
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }

    # -- generation (on ZeroGPU each call below gets a GPU for a duration computed from it) ---
    @gpu(duration=lambda self, image, turns, settings=None, scores=False: generation_seconds(_tokens(settings)))
    def stream(self, image, turns: Turns, settings: GenerationSettings | None = None,
               scores: bool = False) -> Iterator[str | Scored]:
        """Yield the answer to the last turn piece by piece; with `scores`, then one `Scored`.

        Generation runs on a worker thread feeding a token queue. The thread is always
        joined: closing this generator early (a stop button, a client that went away) sets an
        event that ends generation at the next token. A failure in the worker is raised here.
        A stopped answer yields no `Scored`: its confidence is unknown.
        """
        prompt = self.prompt_text(turns)
        streamer = _TokenStreamer()
        errors: list[BaseException] = []
        scored: list[Scored] = []

        def work():  # every tensor op of the answer on this one thread, the inputs' too
            try:
                import torch

                inputs = self._inputs([image], [prompt])
                extra, recorder, _ = self._recorder(inputs) if scores else ({}, None, [])
                # inference_mode is per thread: enter it here, in the thread that generates.
                with self._lock, torch.inference_mode():
                    out = self.model.generate(**inputs, **self._gen_kwargs(settings), streamer=streamer, **extra)
                if recorder is not None:
                    scored.append(Scored(*recorder.confidence(out)[0]))
            except _Stopped:
                streamer.end()
            except BaseException as exc:  # handed to the consumer below, never lost
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=work, name="vlm-generate", daemon=True)
        worker.start()
        try:
            yield from _detokenize(streamer, self.processor.tokenizer)
        finally:
            streamer.stop.set()
            worker.join()
        if errors:
            if getattr(errors[0], "user_facing", False):  # e.g. an unusable image: its message as is
                raise errors[0]
            raise _generation_error(errors[0]) from errors[0]
        yield from scored

    def _recorder(self, inputs) -> tuple[dict, object, list]:
        """generate's extra arguments that record the confidence, the recorder, an empty list."""
        from transformers import LogitsProcessorList

        from model.confidence import ConfidenceRecorder

        ignore = {*self.stop_ids, self.processor.tokenizer.pad_token_id} - {None}
        recorder = ConfidenceRecorder(inputs["input_ids"].shape[1], ignore)
        return {"logits_processor": LogitsProcessorList([recorder])}, recorder, []

    def generate(self, image, turns: Turns, settings: GenerationSettings | None = None) -> str:
        return self.generate_batch([image], [turns], settings)[0]

    def caption(self, image, prompt: str, settings: GenerationSettings | None = None) -> str:
        return self.generate(image, [(prompt, None)], settings)

    def caption_batch(self, images: list, prompt: str, settings: GenerationSettings | None = None) -> list[str]:
        """Caption many images with one `generate` call (left padding)."""
        return self.generate_batch(images, [[(prompt, None)]] * len(images), settings)

    def caption_batch_scored(self, images: list, prompt: str, settings: GenerationSettings | None = None
                             ) -> list[tuple[str, float | None, float | None]]:
        """`caption_batch` plus each caption's (mean, min) token log-probability (model/confidence.py)."""
        return self.generate_batch(images, [[(prompt, None)]] * len(images), settings, scores=True)

    @gpu(duration=lambda self, images, conversations, settings=None, scores=False:
         generation_seconds(_tokens(settings), len(images)))
    def generate_batch(self, images: list, conversations: list[Turns], settings=None, scores: bool = False) -> list:
        if not images:
            return []
        import torch

        inputs = self._inputs(images, [self.prompt_text(t) for t in conversations])
        extra, recorder, _ = self._recorder(inputs) if scores else ({}, None, [])
        try:
            with self._lock, torch.inference_mode():
                out = self.model.generate(**inputs, **self._gen_kwargs(settings), **extra)
        except Exception as exc:
            raise _generation_error(exc) from exc
        new_tokens = out[:, inputs["input_ids"].shape[1]:]  # (batch, new) after the left-padded prompt
        texts = [t.strip() for t in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        if recorder is None:
            return texts
        return [(text, mean, low) for text, (mean, low) in zip(texts, recorder.confidence(out))]

    def release(self) -> None:
        """Free the weights (before another version takes this one's place)."""
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _tokens(settings: GenerationSettings | None) -> int:
    return (settings or GenerationSettings()).max_new_tokens


def _generation_error(exc: BaseException) -> GenerationError:
    if "out of memory" in str(exc).lower():
        return GenerationError("the GPU ran out of memory: lower 'max new tokens', or load the model with --quant 4bit")
    return GenerationError(f"generation failed: {type(exc).__name__}: {exc}")
