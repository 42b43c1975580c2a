"""What the Train tab says on ZeroGPU, where training cannot run.

A ZeroGPU call holds a GPU for a couple of minutes at most and fine-tuning takes minutes to
hours, so on ZeroGPU the Train tab shows this note instead of a Start button: get the reviewed
captions out (the Export button, or the Space's backup repository) and run the exact `train`
command on a dedicated GPU: a workstation, a server, or a Space on GPU hardware.
"""

from __future__ import annotations

import shlex

from model.loader import HUMANVLM_ID


def zerogpu_note(base: str = HUMANVLM_ID, export_dir: str = "exports/v1", out_dir: str = "models/v1",
                 method: str = "qlora", backup_repo: str | None = None) -> str:
    """Markdown for the Train tab on ZeroGPU: why not here, and the commands to run elsewhere."""
    q = shlex.quote
    fetch = []
    if backup_repo:  # the queue itself, from the Space's backups: export it where the GPU is
        fetch = [f"hf download {q(backup_repo)} --repo-type dataset --local-dir backups",
                 "python app.py restore --from backups",
                 f"python app.py export --format llava --out {q(export_dir)}"]
    lines = [
        *fetch,
        f"python app.py train --data {q(export_dir)} --base {q(base)} --out {q(out_dir)} --method {q(method)} --evaluate",
        f"python app.py --model {q(base)} --adapter {q(out_dir)}   # serve the new version",
    ]
    where = ("restore the Space's latest backup, export it and train" if backup_repo
             else f"download the export (Export, LLaVA format) into `{export_dir}` and train")
    return (
        "**Training does not run on ZeroGPU.** A ZeroGPU call holds a GPU for a couple of minutes at most; "
        "fine-tuning takes minutes to hours. On a machine with a dedicated GPU (16 GB or more for QLoRA on "
        f"HumanVLM), or on a copy of this Space with GPU hardware, {where}:\n\n"
        "```bash\n" + "\n".join(lines) + "\n```"
    )
