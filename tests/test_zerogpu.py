"""ZeroGPU: GPU seconds asked for grow with the work; off ZeroGPU the decorator changes nothing
and the decorated functions (streaming, batch captioning, version comparison) work on CPU;
a model crosses to a forked GPU worker by reference; ZeroGPU's refusals become one clear
user-facing error."""

import inspect
import multiprocessing
import pickle
from dataclasses import replace

import gradio as gr
import pytest
from PIL import Image

from model import zerogpu
from model.generate import VLM, GenerationError, GenerationSettings
from model.loader import LoadConfig
from model.slot import ModelSlot
from model.zerogpu import MAX_S, MIN_S, GpuQuotaExceeded, ZeroGpuError, generation_seconds, gpu, translate_error
from tests.conftest import ASTRONAUT
from train.versions import compare_captions

SHORT = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def photos():
    return [Image.open(ASTRONAUT).convert("RGB"), Image.open(ASTRONAUT.with_name("camera.png")).convert("RGB")]


def test_more_tokens_larger_batches_and_model_loads_ask_for_more_time():
    tokens = [generation_seconds(n) for n in (1, 50, 200, 400, 800, 1600, 4000)]
    assert tokens == sorted(tokens) and tokens[0] == MIN_S and tokens[-1] == MAX_S
    assert generation_seconds(200) < generation_seconds(400) < generation_seconds(800)  # strictly, inside the range
    batches = [generation_seconds(200, batch=b) for b in (1, 2, 4, 8, 16)]
    assert batches == sorted(batches) and len(set(batches)) == len(batches)
    assert generation_seconds(200, loads=1) > generation_seconds(200)
    assert all(MIN_S <= generation_seconds(n, b, l) <= MAX_S for n in (0, 1, 10**6) for b in (0, 1, 64) for l in (0, 3))


def test_off_zerogpu_the_decorator_is_the_identity(monkeypatch):
    monkeypatch.delenv(zerogpu.ZEROGPU_ENV, raising=False)

    def caption(x):
        return x

    assert gpu(duration=lambda x: 1)(caption) is caption
    assert inspect.isgeneratorfunction(VLM.stream)  # still the plain generator method here


def test_decorated_functions_work_on_cpu(demo_vlm, photos):
    streamed = "".join(demo_vlm.stream(photos[0], [("Describe the person.", None)], SHORT))
    assert streamed.strip()
    batch = demo_vlm.generate_batch(photos, [[("Describe the person.", None)]] * 2, SHORT)
    assert len(batch) == 2 and all(isinstance(c, str) for c in batch)
    assert batch[0] == streamed.strip()  # greedy: the same answer either way


def test_version_comparison_works_on_cpu(demo_vlm, photos):
    slot = ModelSlot(LoadConfig(model="demo"), loader=lambda config: demo_vlm)
    other = replace(slot.config, prompt_format="card")  # another config: loaded, used, released
    same, card = compare_captions(slot, [slot.config, other], photos[0], "Describe the person.", SHORT)
    assert same == demo_vlm.caption(photos[0], "Describe the person.", SHORT)
    assert isinstance(card, str)


def test_a_model_pickles_by_reference_never_by_weights(demo_vlm):
    data = pickle.dumps(demo_vlm)
    assert len(data) < 200  # a key, not 10 MB of weights (17 GB for HumanVLM)
    assert pickle.loads(data) is demo_vlm


def _worker(jobs, results):  # a forked process, as ZeroGPU's GPU worker is
    import torch

    torch.set_num_threads(1)
    vlm, images, conversations, settings = jobs.get()  # unpickled here: the model by reference
    results.put(vlm.generate_batch(images, conversations, settings))
    # Streaming too: the parent's generation thread did not come across the fork.
    results.put("".join(vlm.stream(images[0], conversations[0], settings)))


def test_a_forked_worker_answers_with_the_model_it_inherited(demo_vlm, photos):
    conversations = [[("Describe the person.", None)]] * 2
    expected = demo_vlm.generate_batch(photos, conversations, SHORT)
    streamed = "".join(demo_vlm.stream(photos[0], conversations[0], SHORT))  # the parent's thread exists
    fork = multiprocessing.get_context("fork")
    jobs, results = fork.Queue(), fork.Queue()
    worker = fork.Process(target=_worker, args=(jobs, results), daemon=True)
    worker.start()
    jobs.put((demo_vlm, photos, conversations, SHORT))
    assert results.get(timeout=120) == expected
    assert results.get(timeout=120) == streamed
    worker.join(30)
    assert worker.exitcode == 0


def test_zerogpu_refusals_become_one_clear_user_facing_error():
    refused = translate_error(gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). "
                                       "Try again in 0:03:10.", title="ZeroGPU quota exceeded"))
    assert isinstance(refused, GpuQuotaExceeded) and refused.user_facing is True
    assert "Try again in 0:03:10" in str(refused) and "Sign in with Hugging Face" in str(refused)
    assert "\n" not in str(refused)
    for title in ("ZeroGPU queue timeout", "ZeroGPU pending credits exceeded"):
        assert isinstance(translate_error(gr.Error("No GPU was available", title=title)), GpuQuotaExceeded)
    aborted = translate_error(gr.Error("GPU task aborted", title="ZeroGPU worker error"))
    assert type(aborted) is ZeroGpuError and str(aborted) == "ZeroGPU worker error: GPU task aborted"
    plain = gr.Error("Upload a photo first")
    assert translate_error(plain) is plain
    other = ValueError("x")
    assert translate_error(other) is other


def test_a_user_facing_error_keeps_its_message_across_the_worker_boundary():
    def generate():
        raise GenerationError("max new tokens must be at least 1")

    with pytest.raises(gr.Error) as crossing:  # what the worker sends back (a class name otherwise)
        zerogpu._readable_errors(generate)()
    back = translate_error(pickle.loads(pickle.dumps(crossing.value)))  # pickled, as the worker's result is
    assert isinstance(back, ZeroGpuError) and str(back) == "max new tokens must be at least 1"

    def broken():
        raise KeyError("bug")

    with pytest.raises(KeyError):  # a bug stays a bug, with its traceback
        zerogpu._readable_errors(broken)()


def test_the_train_tab_note_gives_commands_the_cli_accepts():
    import shlex

    from app.cli import build_parser
    from train.zerogpu import zerogpu_note

    for note in (zerogpu_note(), zerogpu_note(base="demo", backup_repo="me/studio-backups")):
        assert "Training does not run on ZeroGPU" in note
        commands = [line.split("#")[0] for line in note.split("```bash\n", 1)[1].split("```")[0].splitlines()]
        ours = [shlex.split(c)[2:] for c in commands if c.startswith("python app.py")]
        assert any(argv[0] == "train" for argv in ours)
        for argv in ours:
            args = build_parser().parse_args(argv if argv[0] != "--model" else ["serve", *argv])
            assert callable(args.func)
    assert "hf download me/studio-backups --repo-type dataset" in zerogpu_note(backup_repo="me/studio-backups")
