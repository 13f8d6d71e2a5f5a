"""An OpenAI-compatible chat server on loopback that answers from a script: the only stand-in the tests use,
for the remote model provider. The code under test talks to it with the real `openai` client over HTTP.

Besides answers it plays a provider's faults, one per request, from `faults`: `Fault(status=429,
retry_after=0)`, `Fault(status=500)`, `Fault(sleep=2.0)` (slower than the client's timeout), and
`Fault(cut_after=3)` (a stream that stops after three chunks, without its end)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.loopback import LoopbackServer

# A script gets the request body and returns the reply text, or {"tool": name, "arguments": {...}}.
Script = Callable[[dict[str, Any]], str | dict[str, Any]]


def last_user_message(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    retry_after: float | None = None
    sleep: float = 0.0
    cut_after: int | None = None


class ScriptedLLM:
    """`with ScriptedLLM(script) as llm:` serves /v1/chat/completions at `llm.base_url`; `llm.requests` keeps
    every request body. Usage counts words as tokens; `cached_tokens` reports a fixed prompt-cache hit."""

    def __init__(
        self,
        script: Script,
        cached_tokens: int = 0,
        faults: list[Fault | None] | None = None,
        usage: bool = True,
    ) -> None:
        self.script = script
        self.cached_tokens = cached_tokens
        self.faults = list(faults or [])
        # False: the server reports no usage (as some compatible servers do).
        self.usage = usage
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)
        self.server = LoopbackServer(self.app, "scripted model")
        self.port = self.server.port
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def _complete(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append(body)
        fault = self.faults.pop(0) if self.faults else None
        if fault and fault.sleep:
            await asyncio.sleep(fault.sleep)
        if fault and fault.status:
            headers = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
            error = {"error": {"message": f"scripted {fault.status}", "type": "scripted"}}
            return JSONResponse(error, status_code=fault.status, headers=headers)
        reply = self.script(body)
        if body.get("stream"):
            return StreamingResponse(
                self._chunks(body, str(reply), fault.cut_after if fault else None),
                media_type="text/event-stream",
            )
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
            "usage": self._usage(body, completion_tokens) if self.usage else None,
        }

    async def _chunks(self, body: dict[str, Any], reply: str, cut_after: int | None) -> Any:
        """The reply as SSE deltas of a few characters, then usage (when asked) and [DONE]."""
        pieces = [reply[i : i + 7] for i in range(0, len(reply), 7)]
        for number, piece in enumerate(pieces):
            if cut_after is not None and number >= cut_after:
                raise RuntimeError("scripted cut: the stream stops mid-answer")
            delta = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            yield f"data: {json.dumps({**self._head(body), **delta})}\n\n"
            await asyncio.sleep(0)
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps({**self._head(body), **end})}\n\n"
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            usage = {"choices": [], "usage": self._usage(body, len(reply.split()))}
            yield f"data: {json.dumps({**self._head(body), **usage})}\n\n"
        yield "data: [DONE]\n\n"

    def _head(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
        }

    def _usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt_tokens)},
        }

    def __enter__(self) -> ScriptedLLM:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()
