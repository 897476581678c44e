"""Model folders on a Hugging Face Hub-style repository: push a saved model, load one by repository id.

A repository id (``owner/name``) resolves, in order, to: a folder of that path, if one exists; the folder
``HUB_DIR/owner/name`` of a *local hub* (``hub_dir=`` or the environment variable ``PERSONALIGN_HUB_DIR``): a
plain folder of repositories in the Hub's layout, e.g. a shared drive, and the path the tests take; otherwise the
Hugging Face Hub itself through ``huggingface_hub`` (its cache, ``HF_TOKEN``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``
and ``local_files_only=True`` all apply).

A local hub keeps one version of each repository (a push replaces it): a ``revision`` other than ``main`` is a
Hugging Face Hub feature and is refused there rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from personalign.errors import ConfigError

HUB_DIR_ENV = "PERSONALIGN_HUB_DIR"
# the Hub's own rule for repository ids: owner/name of letters, digits, '-', '_' and '.'
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` has the form of a Hub repository id (``owner/name``)."""
    return bool(_REPO_ID.match(str(name))) and ".." not in str(name)


def hub_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local hub in use: ``explicit``, else ``$PERSONALIGN_HUB_DIR``, else None (the Hugging Face Hub)."""
    value = explicit if explicit is not None else os.environ.get(HUB_DIR_ENV)
    return Path(value).expanduser() if value else None


LOCAL_REVISION = "main"


def _check_local_revision(revision: str | None, local: Path, repo_id: str) -> None:
    """ConfigError for a revision the local hub cannot give (it holds only the latest push, ``main``)."""
    if revision not in (None, LOCAL_REVISION):
        raise ConfigError(
            f"{repo_id}: revision {revision!r} asked of the local hub {local}, which keeps only the latest push "
            f"({LOCAL_REVISION!r}); revisions need the Hugging Face Hub (unset {HUB_DIR_ENV})"
        )


def _check_repo_id(repo_id: str) -> None:
    if not is_repo_id(repo_id):
        raise ConfigError(f"{repo_id!r}: not a repository id; expected owner/name (letters, digits, - _ .)")


def resolve(
    name_or_path: str | os.PathLike,
    *,
    hub: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local folder of a saved model: the path itself, or the repository ``owner/name`` fetched from the
    local hub or the Hugging Face Hub (ConfigError naming where it looked when there is none)."""
    p = Path(name_or_path)
    if p.exists() or not is_repo_id(name_or_path):
        return p
    local = hub_dir(hub)
    if local is not None:
        _check_local_revision(revision, local, str(name_or_path))
        folder = local / str(name_or_path)
        if not folder.is_dir():
            raise ConfigError(
                f"{name_or_path}: no such folder, and no repository {name_or_path} in the hub {local}"
            )
        return folder
    return _download(str(name_or_path), revision, token, local_files_only)


def _download(repo_id: str, revision: str | None, token: str | bool | None, local_files_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    from personalign import __version__

    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            local_files_only=local_files_only,
            library_name="personalign",
            library_version=__version__,
        )
    except LocalEntryNotFoundError as exc:
        raise ConfigError(
            f"{repo_id}: no such folder, and the repository is not in the Hugging Face cache "
            f"(offline, or local_files_only): {exc}"
        ) from exc
    except (HfHubHTTPError, HFValidationError, OSError) as exc:
        raise ConfigError(
            f"{repo_id}: no such folder, and the Hugging Face Hub did not give it: {exc}"
        ) from exc
    return Path(path)


def push(
    write: Callable[[Path], object],
    repo_id: str,
    *,
    hub: str | os.PathLike | None = None,
    token: str | bool | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload personalign model",
) -> str:
    """Write a model folder with ``write(folder)`` and publish it as ``repo_id``: into the local hub (replacing
    the repository's files atomically), or to the Hugging Face Hub (creating the repository if needed). Returns
    the repository's folder or URL."""
    _check_repo_id(repo_id)
    local = hub_dir(hub)
    if local is not None:
        _check_local_revision(revision, local, repo_id)
        target = local / repo_id
        write(target)  # a model folder is written atomically: the repository is the old model or the new one
        return str(target)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="personalign-push-") as tmp:
        folder = Path(tmp) / "model"
        write(folder)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision
            )
        except (HfHubHTTPError, OSError) as exc:
            raise ConfigError(f"{repo_id}: push to the Hugging Face Hub failed: {exc}") from exc
    return str(url)
