"""Publishing a folder (an export, a trained version) as a Hugging Face Hub repository.

A thin layer over `huggingface_hub.HfApi`: create the repository (or reuse it), upload the
folder in one commit. The token and the endpoint come from huggingface_hub's own settings
(`HF_TOKEN` or `hf auth login`, `HF_ENDPOINT`); failures become one `PublishFailed` line.
"""

from __future__ import annotations

from pathlib import Path

from annotate.errors import QueueError

REPO_TYPES = ("dataset", "model")


class PublishFailed(QueueError):
    """The folder could not be pushed to the Hub (bad repository id, no token, offline...)."""


def check_repo_id(repo_id: str) -> str:
    """`owner/name`, as the Hub spells repository ids; anything else is refused before any work."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishFailed(f"{repo_id!r} is not a Hub repository id: {str(exc).splitlines()[0]}") from exc
    if repo_id.count("/") != 1:
        raise PublishFailed(f"{repo_id!r}: give the repository as OWNER/NAME")
    return repo_id


def upload_plan(folder: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """The files (relative, sorted) that `push_folder` uploads, with the same filter it uses."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(files, ignore_patterns=list(ignore) or None))


def push_folder(folder: str | Path, repo_id: str, repo_type: str, private: bool = False,
                ignore: tuple[str, ...] = (), message: str = "Upload from HumanVLM Studio") -> str:
    """Create (or reuse) the repository and upload `folder` in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    if repo_type not in REPO_TYPES:
        raise PublishFailed(f"unknown repository type {repo_type!r}; use {' or '.join(REPO_TYPES)}")
    check_repo_id(repo_id)
    folder = Path(folder)
    if not upload_plan(folder, ignore):
        raise PublishFailed(f"{folder} has nothing to upload")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private or None, exist_ok=True)  # None: the account default
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                                   ignore_patterns=list(ignore) or None, commit_message=message)
    except Exception as exc:  # HTTP, network, offline mode, auth: all become one line, the cause chained
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PublishFailed(f"could not push {folder} to the {repo_type} repository {repo_id}: {reason}") from exc
    return str(getattr(commit, "commit_url", commit))
