"""timed_stream: a streamed body's lines, each stamped with when its last byte arrived."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tensorsharp.testing.server import timed_stream

PAUSE = 0.2


class _Streamer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        chunked = self.path == "/chunked"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        # The second line arrives split over two writes with a pause between: its stamp is the later one.
        for piece in (b'data: {"a": 1}\n\ndata: {"b":', b' 2}\n\n', b"data: [DONE]\n\n"):
            if piece.startswith(b" 2"):
                time.sleep(PAUSE)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Streamer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("path", ["/chunked", "/plain"])
def test_lines_are_stamped_when_they_complete(base, path):
    lines = timed_stream(base, path, {"x": 1})
    assert [line for _, line in lines] == [b'data: {"a": 1}', b'data: {"b": 2}', b"data: [DONE]"]
    (t0, _), (t1, _), (t2, _) = lines
    assert t1 - t0 >= PAUSE * 0.9 and t2 >= t1
