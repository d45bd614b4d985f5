"""A small real HTTP server that talks like vLLM's OpenAI API, for the tools' mechanics only.

It counts one token per whitespace-separated word (plus one BOS), streams one token per chunk
at a set rate, reports usage, and refuses prompts that do not fit ``max_model_len``. It never
decides whether a feature works against vLLM; the ``vllm``-marked tests do that.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

CHAT_TEMPLATE_TOKENS = 5


@dataclass
class FakeConfig:
    model: str = "fake-model"
    max_model_len: int = 512
    token_delay_s: float = 0.002
    tokenize: bool = True
    usage: str = "ok"  # ok | missing | short
    status: dict[str, Any] | None = None
    replies: dict[str, str] = field(default_factory=dict)  # substring of the prompt -> reply
    # At most this many streams generate at once; the others wait for a place (a server whose
    # throughput stops growing at this concurrency: the knee ``tune concurrency`` must find).
    capacity: int | None = None
    images: bool = True  # False: refuse image parts with a 400, as a text-only model does
    requests: list[dict[str, Any]] = field(default_factory=list)


def count(text: str) -> int:
    return len(text.split()) + 1


def error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


def chat_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts += [p.get("text", "[image]") for p in content if isinstance(p, dict)]
        else:
            parts.append(str(content))
    return " ".join(parts)


def has_image(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def build_app(config: FakeConfig) -> FastAPI:
    app = FastAPI()
    places = asyncio.Semaphore(config.capacity) if config.capacity else None

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": config.model, "object": "model", "max_model_len": config.max_model_len}
            ],
        }

    @app.get("/status")
    async def status() -> Response:
        if config.status is None:
            return error(404, "not found")
        return JSONResponse(config.status)

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Response:
        if not config.tokenize:
            return error(404, "not found")
        body = await request.json()
        if "messages" in body:
            n = count(chat_text(body["messages"])) + CHAT_TEMPLATE_TOKENS
        else:
            n = count(body["prompt"])
        return JSONResponse({"count": n, "max_model_len": config.max_model_len, "tokens": []})

    async def generate(request: Request, chat: bool) -> Response:
        body = await request.json()
        config.requests.append(body)
        if chat and not config.images and has_image(body["messages"]):
            return error(400, f"{config.model} is not a multimodal model: it takes no images")
        if chat:
            text = chat_text(body["messages"])
            prompt_tokens = count(text) + CHAT_TEMPLATE_TOKENS
        else:
            text = body["prompt"]
            prompt_tokens = count(text)
        max_tokens = int(body.get("max_tokens") or 16)
        if prompt_tokens + max_tokens > config.max_model_len:
            return error(
                400,
                f"This model's maximum context length is {config.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens",
            )
        reply = next((r for key, r in config.replies.items() if key in text), None)
        pieces = reply.split() if reply is not None else [f"t{i}" for i in range(max_tokens)]
        if not body.get("ignore_eos") and reply is None:
            pieces = pieces[: min(len(pieces), 8)]
        pieces = pieces[:max_tokens]
        completion = len(pieces)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion - (1 if config.usage == "short" else 0),
            "total_tokens": prompt_tokens + completion,
        }
        if not body.get("stream"):
            content = " ".join(pieces)
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": content}}
                if chat
                else {"index": 0, "text": content}
            )
            return JSONResponse({"model": config.model, "choices": [choice], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            if chat:
                first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
                yield f"data: {json.dumps(first)}\n\n".encode()
            if places is not None:
                await places.acquire()
            try:
                async for chunk in tokens():
                    yield chunk
            finally:
                if places is not None:
                    places.release()
            if config.usage != "missing":
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        async def tokens() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                await asyncio.sleep(config.token_delay_s)
                text_piece = piece if i == 0 else " " + piece
                choice = (
                    {"index": 0, "delta": {"content": text_piece}}
                    if chat
                    else {"index": 0, "text": text_piece}
                )
                yield f"data: {json.dumps({'choices': [choice]})}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    return app


@dataclass
class FakeServer:
    base_url: str
    config: FakeConfig


def serve(config: FakeConfig) -> Iterator[FakeServer]:
    """Bind port 0, keep the socket, serve in a thread. Connections made before the loop runs
    wait in the listen backlog, so nobody has to wait for "started"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_app(config), log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield FakeServer(f"http://127.0.0.1:{port}", config)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
