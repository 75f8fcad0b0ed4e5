"""Upload a publish folder to a Hugging Face model repo with `HfApi`, or copy it to a local directory.

One publish is one commit: the folder's files are added, files the folder no longer has are deleted.
Before anything is sent, the remote tree is compared with the folder (git blob sha1, or sha256 for LFS
files); unchanged content makes no commit at all. New repos are private unless asked otherwise. The
token comes from HF_TOKEN in the environment and goes only into HfApi: it is never printed or stored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Literal

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile
from pydantic import BaseModel

from fr_agent.core.errors import FrAgentError
from fr_agent.core.secrets import redact_text

KEEP_REMOTE = {".gitattributes"}  # the hub creates it with the repo; the folder never has one


class UploadPlan(BaseModel):
    target: str
    kind: Literal["hub", "dir"]
    exists: bool
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    deleted: list[str] = []

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


class UploadResult(BaseModel):
    plan: UploadPlan
    dry_run: bool
    commit: str | None = None
    url: str | None = None
    created: bool = False


def local_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def same_content(path: Path, remote) -> bool:
    data = path.read_bytes()
    if getattr(remote, "lfs", None):
        return hashlib.sha256(data).hexdigest() == remote.lfs.sha256
    return git_blob_sha1(data) == remote.blob_id


def hub_api():
    if constants.is_offline_mode():
        raise FrAgentError("HF_HUB_OFFLINE is set: uploading needs the hub (unset it), or use --to DIR")
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=os.environ.get("HF_TOKEN") or False)


def hub_error(err: Exception) -> FrAgentError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return FrAgentError(f"hub: {redact_text(first)}")


def plan_hub(api, repo_id: str, folder: Path) -> UploadPlan:
    files = local_files(folder)
    try:
        remote = {f.path: f for f in api.list_repo_tree(repo_id, recursive=True) if isinstance(f, RepoFile)}
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return UploadPlan(target=repo_id, kind="hub", exists=False, added=list(files))
    plan = UploadPlan(target=repo_id, kind="hub", exists=True)
    for name, path in files.items():
        if name not in remote:
            plan.added.append(name)
        elif same_content(path, remote[name]):
            plan.unchanged.append(name)
        else:
            plan.changed.append(name)
    plan.deleted = sorted(set(remote) - set(files) - KEEP_REMOTE)
    return plan


def upload_to_hub(
    folder: Path, repo_id: str, *, private: bool = True, dry_run: bool = False, message: str = "fr-agent publish"
) -> UploadResult:
    api = hub_api()
    if not dry_run and not os.environ.get("HF_TOKEN"):
        raise FrAgentError(
            "HF_TOKEN is not set: export a write token to upload (it is read from the environment "
            "and never stored), or use --dry-run / --to DIR"
        )
    try:
        plan = plan_hub(api, repo_id, folder)
        if dry_run or not plan.has_changes:
            head = api.repo_info(repo_id).sha if plan.exists and not dry_run else None
            return UploadResult(plan=plan, dry_run=dry_run, commit=head, url=f"{api.endpoint}/{repo_id}")
        created = False
        if not plan.exists:
            api.create_repo(repo_id, private=private, exist_ok=True)
            created = True
        files = local_files(folder)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(files[name]))
            for name in plan.added + plan.changed
        ]
        operations += [CommitOperationDelete(path_in_repo=name) for name in plan.deleted]
        info = api.create_commit(repo_id, operations=operations, commit_message=message)
    except HfHubHTTPError as err:
        raise hub_error(err) from None
    return UploadResult(plan=plan, dry_run=False, commit=info.oid, url=f"{api.endpoint}/{repo_id}", created=created)


MARKER = ".fr-agent-publish"  # in a local target: the files fr-agent put there, one a line


def plan_local(folder: Path, target: Path) -> UploadPlan:
    files = local_files(folder)
    existing = {name: path for name, path in (local_files(target) if target.is_dir() else {}).items() if name != MARKER}
    if existing and not (target / MARKER).is_file():
        raise FrAgentError(f"--to {target}: not empty and not an fr-agent publish target; pick an empty directory")
    ours = set((target / MARKER).read_text().split()) if (target / MARKER).is_file() else set()
    plan = UploadPlan(target=str(target), kind="dir", exists=target.is_dir())
    for name, path in files.items():
        if name not in existing:
            plan.added.append(name)
        elif existing[name].read_bytes() == path.read_bytes():
            plan.unchanged.append(name)
        else:
            plan.changed.append(name)
    plan.deleted = sorted((set(existing) & ours) - set(files))  # never a file fr-agent did not write
    return plan


def copy_to_dir(folder: Path, target: Path, *, dry_run: bool = False) -> UploadResult:
    """The local target: `target` ends up holding the folder's files (and a marker listing them)."""
    if target.exists() and not target.is_dir():
        raise FrAgentError(f"--to {target}: exists and is not a directory")
    if target.resolve() == folder.resolve():
        raise FrAgentError(f"--to {target}: is the publish folder itself")
    plan = plan_local(folder, target)
    if dry_run or not plan.has_changes:
        return UploadResult(plan=plan, dry_run=dry_run)
    files = local_files(folder)
    for name in plan.added + plan.changed:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[name], target / name)
    for name in plan.deleted:
        (target / name).unlink()
    (target / MARKER).write_text("".join(f"{name}\n" for name in files))
    return UploadResult(plan=plan, dry_run=False)
