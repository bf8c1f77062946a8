"""Streams: server-sent events out of a job's events, and noticing a client that leaves.

``events(reply, job)`` is the SSE body of one response (``data: {chunk}`` ... ``data:
[DONE]``); ``EventStream`` sends it and cancels the job when the client hangs up, even
while the job still waits in the queue; ``cancel_on_disconnect`` does the same for a
response that is not streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import traceback
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from scratchllm.serving.choice import Delta
from scratchllm.serving.errors import APIError
from scratchllm.serving.responses import Response as Reply
from scratchllm.serving.worker import Job


class cancel_on_disconnect:
    """While a non-streamed response is computed, cancel its job if the client leaves."""

    def __init__(self, request: Request, job: Job) -> None:
        self.request, self.job = request, job

    async def _watch(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                self.job.cancel()
                return

    async def __aenter__(self) -> None:
        self.task = asyncio.ensure_future(self._watch())

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()


def stopping() -> APIError:
    return APIError(503, "the generation was cancelled: the server is stopping", "server_error")


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def events(reply: Reply, job: Job):
    """The SSE stream of one response; an error after the first byte is an error event.

    The events that piled up while the last write went out are written together, so a
    client that reads slowly (or a busy machine) costs one write per pile, not per token.
    """
    done = False
    try:
        opened: set[int] = set()
        async for batch in job.batches():
            out = []
            for index, event in batch:
                if index not in opened:
                    opened.add(index)
                    first = reply.first_chunk(index)
                    if first is not None:
                        out.append(_sse(first))
                if isinstance(event, Delta):
                    out.append(_sse(reply.delta_chunk(index, event)))
                elif event.reason == "cancelled":  # the server is stopping
                    raise stopping()
                else:
                    out.append(
                        _sse(reply.finish_chunk(index, event.reason, event.completion_tokens))
                    )
            yield "".join(out)
        if reply.include_usage:
            yield _sse(reply.usage_chunk())
        done = True
    except APIError as e:
        done = True
        yield _sse(e.body())
    except Exception as e:  # a bug in the server: say so in the stream, the status is sent
        done = True
        traceback.print_exception(e, file=sys.stderr)
        yield _sse(APIError(500, f"internal error: {type(e).__name__}: {e}", "server_error").body())
    finally:
        if not done:
            job.cancel()  # the client left (or the server is stopping): stop generating
    yield "data: [DONE]\n\n"


class EventStream(StreamingResponse):
    """A streaming response that notices a client leaving even while it has nothing to send.

    Starlette stops listening for ``http.disconnect`` under ASGI 2.4 servers and learns of
    the client only when a write fails; a job waiting in the queue writes nothing. Here the
    stream and the listener run side by side and whichever ends first cancels the other,
    which runs the stream generator's ``finally`` (it cancels the job).
    """

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client went away mid-write
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
