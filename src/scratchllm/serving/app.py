"""The HTTP API: OpenAI's routes, the learner's extras and the playground, on FastAPI.

``create_app(engine)`` builds the app; ``scratchllm serve`` runs it under uvicorn.

=========================  ===================================================================
``GET /``                  the playground (``static/``; no CDN, works offline)
``GET /health``            model, limits, chat or not, attention shape, the worker's queue
``GET /v1/models``         the one model served (and ``/v1/models/{id}``)
``POST /v1/completions``   text completion, streamed or not
``POST /v1/chat/completions``  chat, only when the checkpoint declares a chat template
``POST /tokenize``         ``{"text"}`` or ``{"messages"}`` -> ids and each token's text
``POST /detokenize``       ``{"ids"}`` -> text
``POST /chat/render``      ``{"messages"}`` -> the prompt text and ids the model reads
``POST /attention``        ``{"text"}`` -> weights ``[layer][head][T][T]`` (GPT models)
=========================  ===================================================================

Request bodies are read here, not by FastAPI's models: the size is capped while reading
(413), the JSON is parsed strictly (no NaN), and ``protocol`` checks every field, so
every mistake is a 4xx in OpenAI's error shape and nothing a client sends gives a 500.
A streamed response watches for the client leaving and cancels its job, which stops the
generation at the next token.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
import traceback
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from scratchllm.serving.choice import Delta
from scratchllm.serving.engine import MAX_BATCH, Engine, Plan
from scratchllm.serving.errors import APIError, from_status
from scratchllm.serving.protocol import parse_chat, parse_completion
from scratchllm.serving.responses import Response as Reply
from scratchllm.serving.sse import EventStream, cancel_on_disconnect, events, stopping
from scratchllm.serving.worker import Job, QueueFull, Worker

STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


def create_app(engine: Engine) -> FastAPI:
    config = engine.config
    worker = Worker(
        config.max_queue, engine.thread_setup, config.stream_interval,
        run_group=_guarded(lambda jobs: engine.run_batch(jobs, worker)), max_group=MAX_BATCH,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.close()

    app = FastAPI(
        title="scratchllm", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.engine, app.state.worker = engine, worker
    if config.api_key:
        app.add_middleware(BearerAuth, key=config.api_key)
    started = int(time.time())

    # -- errors in OpenAI's shape ----------------------------------------------------------

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.method} {request.url.path}"}.get(e.status_code)
        error = from_status(e.status_code, message or str(e.detail))
        return JSONResponse(error.body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        traceback.print_exception(e, file=sys.stderr)
        error = APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    # -- pages and facts -----------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def _page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def _asset(name: str) -> Response:
        if name not in STATIC:
            raise APIError(404, f"no static file {name!r}", code="not_found")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/health")
    def _health() -> dict[str, Any]:
        return {"status": "ok", **info(engine), "queue": worker.status()}

    @app.get("/v1/models")
    def _models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(engine.name, started)]}

    @app.get("/v1/models/{model_id:path}")
    def _model(model_id: str) -> dict[str, Any]:
        _check_model(engine, model_id)
        return _model_card(engine.name, started)

    # -- generation ----------------------------------------------------------------------

    @app.post("/v1/completions")
    async def _completions(request: Request) -> Response:
        req = parse_completion(await read_json(request, config.max_body_bytes), config.max_n)
        _check_model(engine, req.model)
        plans, prompt_tokens = engine.plan_completion(req)
        reply = Reply(False, engine.name, len(plans), prompt_tokens)
        reply.logprobs = req.sampling.logprobs is not None
        return await _generate(request, reply, plans, req.stream, req.include_usage)

    @app.post("/v1/chat/completions")
    async def _chat(request: Request) -> Response:
        req = parse_chat(await read_json(request, config.max_body_bytes), config.max_n)
        _check_model(engine, req.model)
        plans, prompt_tokens = engine.plan_chat(req)
        reply = Reply(True, engine.name, len(plans), prompt_tokens)
        reply.logprobs = req.sampling.logprobs is not None
        return await _generate(request, reply, plans, req.stream, req.include_usage)

    async def _generate(
        request: Request, reply: Reply, plans: list[Plan], stream: bool, include_usage: bool
    ) -> Response:
        batch = plans if engine.batchable(plans) else None
        job = _submit(worker, lambda job: engine.run(plans, job), batch, len(plans))
        if stream:
            reply.include_usage = include_usage
            return EventStream(
                events(reply, job),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        async with cancel_on_disconnect(request, job):
            async for index, event in job:
                if isinstance(event, Delta):
                    reply.add(index, event)
                elif event.reason == "cancelled":
                    raise stopping()
                else:
                    reply.finish(index, event.reason, event.completion_tokens)
        return JSONResponse(reply.body())

    # -- the learner's extras ------------------------------------------------------------------

    @app.post("/tokenize")
    async def _tokenize(request: Request) -> dict[str, Any]:
        body = _fields(await read_json(request, config.max_body_bytes), {"text", "messages"})
        out: dict[str, Any] = {}
        if "messages" in body:
            req = parse_chat({"model": engine.name, "messages": body["messages"]})
            ids = engine.chat_ids(req.messages)
            out["prompt"] = engine.chat_text(req.messages)
        else:
            ids = engine.encode(_text(body), param="text")
        return out | _tokens(engine, ids) | {"max_total_tokens": engine.limit}

    @app.post("/detokenize")
    async def _detokenize(request: Request) -> dict[str, Any]:
        body = _fields(await read_json(request, config.max_body_bytes), {"ids"})
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise APIError.invalid("ids must be a list of token ids (integers)", param="ids")
        ids = engine.encode(ids, param="ids") if ids else []
        return {"text": engine.tokenizer.decode(ids)}

    @app.post("/chat/render")
    async def _render(request: Request) -> dict[str, Any]:
        body = _fields(await read_json(request, config.max_body_bytes), {"messages"})
        req = parse_chat({"model": engine.name, "messages": body.get("messages")})
        ids = engine.chat_ids(req.messages)
        return {"prompt": engine.chat_text(req.messages)} | _tokens(engine, ids)

    @app.post("/attention")
    async def _attention(request: Request) -> dict[str, Any]:
        body = _fields(await read_json(request, config.max_body_bytes), {"text"})
        if not callable(getattr(engine.model, "attention_weights", None)):
            family = getattr(engine.model, "family", type(engine.model).__name__)
            raise APIError.invalid(
                f"a {family!r} model has no attention to show (only GPT models do)",
                param="text",
                code="no_attention",
            )
        ids = engine.encode(_text(body), param="text")
        keep = min(config.max_attention_tokens, engine.context_length)
        dropped = max(0, len(ids) - keep)
        ids = ids[dropped:]
        job = _submit(worker, lambda job: job.emit(engine.attention(ids)))
        async with cancel_on_disconnect(request, job):
            results = [w async for w in job]
        if not results:
            raise APIError(499, "the client left before the attention was computed")
        weights = results[0]
        return _tokens(engine, ids) | {
            "dropped": dropped,  # tokens cut from the start to fit max_attention_tokens
            "n_layer": int(weights.shape[0]),
            "n_head": int(weights.shape[1]),
            "attention": weights.round(decimals=4).tolist(),  # [layer][head][query][key]
        }

    return app


# -- helpers ------------------------------------------------------------------------------------


def info(engine: Engine) -> dict[str, Any]:
    """What the playground and a curious client want to know about the served model."""
    model = engine.model
    config = getattr(model, "config", None)
    has_attention = callable(getattr(model, "attention_weights", None))
    return {
        "model": engine.name,
        "family": getattr(model, "family", type(model).__name__),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": engine.vocab_size,
        "context_length": engine.context_length,
        "max_total_tokens": engine.limit,
        "chat": engine.chat_format is not None,
        "attention": {"n_layer": config.n_layer, "n_head": config.n_head}
        if has_attention
        else None,
    }


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body: 413 past ``limit`` bytes, 400 when it is not JSON."""
    length = request.headers.get("content-length", "")
    too_big = APIError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="request_too_large",
    )
    if length.isdigit() and int(length) > limit:
        raise too_big
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_big
    if not data.strip():
        raise APIError.invalid("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(bytes(data), parse_constant=_no_constants)
    except ValueError as e:
        raise APIError.invalid(
            f"We could not parse the JSON body of your request ({e}); send valid JSON",
            code="invalid_json",
        ) from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _fields(body: Any, known: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError.invalid("the request body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - known - {"model"})
    if unknown:
        raise APIError.invalid(
            f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0]
        )
    return body


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise APIError.invalid("text must be a string", param="text")
    return text


def _tokens(engine: Engine, ids: list[int]) -> dict[str, Any]:
    return {"ids": ids, "tokens": [engine.texts(i)[0] for i in ids], "count": len(ids)}


def _check_model(engine: Engine, model: str) -> None:
    if model != engine.name:
        raise APIError.model_not_found(model, engine.name)


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "scratchllm"}


def _static(name: str) -> bytes:
    return resources.files("scratchllm.serving").joinpath("static", name).read_bytes()


def _guarded(fn):  # noqa: ANN001, ANN202
    """``fn`` with the generation library's refusal of an input (ValueError) made the
    client's error, a 400."""

    def guarded(arg) -> None:  # noqa: ANN001 (a job, or run_group's list of jobs)
        try:
            fn(arg)
        except ValueError as e:
            raise APIError.invalid(str(e)) from None

    return guarded


def _submit(worker: Worker, fn, group=None, rows: int = 1) -> Job:  # noqa: ANN001
    try:
        return worker.submit(_guarded(fn), group, rows)
    except QueueFull as e:
        raise APIError.overloaded(e.waiting) from None


class BearerAuth:
    """ASGI middleware: every route but the page, its files and /health needs the key.

    (A plain ASGI class rather than ``@app.middleware``: Starlette's ``BaseHTTPMiddleware``
    sits between a streamed response and the client and hides the client's leaving.)
    """

    def __init__(self, app, key: str) -> None:  # noqa: ANN001
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        path = scope.get("path", "")
        public = path in ("/", "/health") or path.startswith("/static/")
        if scope["type"] != "http" or public:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers", [])).get(b"authorization", b"")
        if secrets.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        error = APIError(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>' with "
            "the key the server was started with",
            code="invalid_api_key",
        )
        await JSONResponse(error.body(), status_code=401)(scope, receive, send)
