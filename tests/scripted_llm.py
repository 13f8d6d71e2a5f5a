"""An OpenAI-compatible chat server on loopback that answers from a script: the only stand-in the tests use,
for the remote model provider. The code under test talks to it with the real `openai` client over HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

# A script gets the request body and returns the reply text, or {"tool": name, "arguments": {...}}.
Script = Callable[[dict[str, Any]], str | dict[str, Any]]


def last_user_message(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class ScriptedLLM:
    """`with ScriptedLLM(script) as llm:` serves /v1/chat/completions at `llm.base_url`; `llm.requests` keeps
    every request body. Usage counts words as tokens; `cached_tokens` reports a fixed prompt-cache hit."""

    def __init__(self, script: Script, cached_tokens: int = 0) -> None:
        self.script = script
        self.cached_tokens = cached_tokens
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    async def _complete(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append(body)
        reply = self.script(body)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        if isinstance(reply, dict):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": reply["tool"], "arguments": json.dumps(reply["arguments"])},
                    }
                ],
            }
            completion_tokens = len(json.dumps(reply["arguments"]).split())
        else:
            message = {"role": "assistant", "content": reply}
            completion_tokens = len(reply.split())
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt_tokens)},
            },
        }

    def __enter__(self) -> ScriptedLLM:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted model server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
