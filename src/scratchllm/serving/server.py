"""Load a checkpoint into an ``Engine`` and run the app under uvicorn.

>>> engine = load_engine("runs/shakespeare", ServerConfig())     # doctest: +SKIP
>>> with Server(engine) as server:                              # doctest: +SKIP
...     print(server.url)                                       # a thread serves meanwhile
http://127.0.0.1:8000
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from scratchllm.serving.app import create_app
from scratchllm.serving.backend import load_chat_format
from scratchllm.serving.config import ServerConfig
from scratchllm.serving.engine import Engine


def load_engine(
    path: str | Path, config: ServerConfig, device: str = "cpu", best: bool = False
) -> Engine:
    """The checkpoint at ``path`` (a run or checkpoint directory) ready to serve."""
    from scratchllm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, device=device, which="best" if best else "last")
    chat, why = load_chat_format(ckpt.path, ckpt.tokenizer)
    name = config.model_name or default_model_name(path)
    return Engine(ckpt.model, ckpt.tokenizer, name, config, chat, why)


def default_model_name(path: str | Path) -> str:
    """The run's directory name: ``runs/shakespeare/last`` -> ``shakespeare``."""
    path = Path(path).expanduser().resolve()
    return path.parent.name if path.name in ("last", "best") else path.name


GRACE = 3  # seconds open streams get to finish when the server stops


class Server:
    """uvicorn serving ``create_app(engine)`` on a socket bound here (port 0: a free one).

    ``run()`` serves in this thread until Ctrl-C; as a context manager it serves in a
    background thread and stops on exit.
    """

    def __init__(self, engine: Engine, log_level: str = "warning") -> None:
        import uvicorn

        config = engine.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections
        # whose socket says TCP, and with Nagle on, a response's second write waits for the
        # client's delayed ACK: 40 ms on every request after a keep-alive connection's first.
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((config.host, config.port))
        except OSError as e:
            self.socket.close()
            raise OSError(
                f"cannot listen on {config.host}:{config.port} ({e.strerror}); "
                "pick another --port (0 takes a free one)"
            ) from None
        self.socket.listen(2048)  # from now on clients wait in the backlog, never refused
        self.port = self.socket.getsockname()[1]
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        self.url = f"http://{host}:{self.port}"
        self.app = create_app(engine)
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level=log_level,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=GRACE,
            )
        )
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.uvicorn.run(sockets=[self.socket])

    def __enter__(self) -> Server:
        self._thread = threading.Thread(target=self.run, name="scratchllm-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.app.state.worker.close()  # open streams end now instead of holding the exit
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.socket.close()
