"""Many clients at once: every answer right, a client that leaves stops its generation, a
full queue answers 503 at once, and the server serves on afterwards."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from serving_util import LONG, expected, health, leave, open_stream, raw, wait_until


def test_eight_parallel_clients_all_get_their_own_answer(server, reference):
    jobs = []
    for i in range(8):
        prompt = ["The ", "Return ", "A list", "If the", "x = ", "def ", "None", "Raise"][i]
        kw = {"temperature": 0} if i % 2 == 0 else {"temperature": 1.0, "seed": 100 + i}
        jobs.append((prompt, kw, i % 4 == 1))  # some streamed, some not
    want = [expected(reference, p, 40, **kw) for p, kw, _ in jobs]
    got: list[str | None] = [None] * 8
    errors = []
    start = threading.Barrier(8)

    def client_thread(i: int) -> None:
        prompt, kw, stream = jobs[i]
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        start.wait()
        try:
            if stream:
                chunks = client.completions.create(
                    model="tiny", prompt=prompt, max_tokens=40, stream=True, **kw
                )
                got[i] = "".join(c.choices[0].text for c in chunks)
            else:
                r = client.completions.create(model="tiny", prompt=prompt, max_tokens=40, **kw)
                assert r.usage.completion_tokens == 40
                got[i] = r.choices[0].text
        except Exception as e:  # collected: a thread's assert would be lost
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert got == want


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_stops_its_generation(serve, stream):
    with serve(max_total_tokens=10**6) as s:
        body = {"model": "tiny", "prompt": "The", "max_tokens": LONG, "stream": stream}
        conn, response = open_stream(s, body, wait=stream)
        if stream:
            assert response.status == 200
            assert response.readline().startswith(b"data: ")  # tokens are flowing
        else:
            wait_until(lambda: health(s)["queue"]["running"], 5)
            time.sleep(0.3)
        assert health(s)["queue"]["running"]
        leave(conn)
        seconds = wait_until(lambda: not health(s)["queue"]["running"], 5)
        assert seconds < 1.5, f"the generation ran on for {seconds:.2f} s after the client left"
        assert health(s)["queue"]["cancelled"] == 1
        status, _, answer = raw(s, "POST", "/v1/completions", {"model": "tiny", "prompt": "a"})
        assert status == 200 and answer["usage"]["completion_tokens"] == 16


def test_a_full_queue_answers_503_at_once_and_recovers(serve):
    with serve(max_total_tokens=10**6, max_queue=1) as s:
        # n 9: it fills the batch's 8 rows and its ninth choice waits, so the others wait
        body = {"model": "tiny", "prompt": "The", "max_tokens": LONG, "stream": True, "n": 9}
        running, _ = open_stream(s, body)
        wait_until(lambda: health(s)["queue"]["running"], 5)
        waiting, response = open_stream(s, body)
        assert response.status == 200  # queued: the stream is open, no token yet
        wait_until(lambda: health(s)["queue"]["waiting"] == 1, 5)

        t0 = time.perf_counter()
        status, headers, answer = raw(s, "POST", "/v1/completions", body)
        assert time.perf_counter() - t0 < 1.0
        assert status == 503 and headers.get("retry-after") == "1"
        assert answer["error"]["code"] == "queue_full"
        assert set(answer["error"]) == {"message", "type", "param", "code"}
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as e:
            client.completions.create(model="tiny", prompt="a")
        assert e.value.status_code == 503

        leave(waiting)  # the queued client leaves first: its job is skipped, never run
        leave(running)
        wait_until(lambda: not health(s)["queue"]["running"], 5)
        wait_until(lambda: health(s)["queue"]["waiting"] == 0, 5)
        assert health(s)["queue"]["cancelled"] == 2
        r = client.completions.create(model="tiny", prompt="a", max_tokens=3)
        assert r.usage.completion_tokens == 3


def test_the_official_client_retries_a_full_queue_until_served(serve):
    """503 with Retry-After is the answer the client's backoff is built for."""
    with serve(max_total_tokens=10**6, max_queue=0) as s:
        # n 9: it fills the batch's 8 rows and its ninth choice waits, so the others wait
        body = {"model": "tiny", "prompt": "The", "max_tokens": LONG, "stream": True, "n": 9}
        running, _ = open_stream(s, body)
        wait_until(lambda: health(s)["queue"]["running"], 5)
        threading.Timer(0.5, leave, args=(running,)).start()  # the worker frees up soon
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=5)
        r = client.completions.create(model="tiny", prompt="a", max_tokens=2)
        assert r.usage.completion_tokens == 2


def test_a_kept_alive_connection_has_nagle_off(server):
    """The openai client keeps its connection open between requests. With Nagle's algorithm
    on the server's side, a response's second write waits for the client's delayed ACK (40
    ms on Linux) on every request after the first; asyncio turns it off only for sockets
    made as TCP (``Server`` makes its listening socket so)."""
    import http.client
    import json
    import socket

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for _ in range(2):  # the same connection twice: kept alive
            body = {"model": "tiny", "prompt": "ab", "max_tokens": 2, "temperature": 0}
            conn.request("POST", "/v1/completions", json.dumps(body))
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert json.loads(response.read())["choices"][0]["finish_reason"]
        connections = list(server.uvicorn.server_state.connections)
        assert connections, "the server holds no open connection"
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()
