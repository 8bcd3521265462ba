"""The ceiling for any upload handler on tornado: a minimal ``stream_request_body``
PUT that writes each piece straight to an open file, nothing else.

    python tornado_ceiling.py PORT DIR
    PUT /upload/<name>   (header X-Offset: where this body goes; default 0)
    GET /status
"""

import os
import sys

from tornado import httpserver, ioloop, web


@web.stream_request_body
class Upload(web.RequestHandler):
    def prepare(self):
        self.request.connection.set_max_body_size(1 << 50)
        name = os.path.basename(self.path_args[0])
        path = os.path.join(self.settings["dir"], name)
        self.file = open(path, "r+b" if os.path.exists(path) else "wb", buffering=0)  # noqa: SIM115
        self.file.seek(int(self.request.headers.get("X-Offset", "0")))

    def data_received(self, chunk):
        self.file.write(chunk)

    def put(self, name):
        self.file.close()
        self.set_status(204)


class Status(web.RequestHandler):
    def get(self):
        self.write({"ok": True})


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    app = web.Application([(r"/upload/(.+)", Upload), (r"/status", Status)], dir=directory)
    # jupyter-server's own HTTPServer limits (512 MiB), lifted per request in prepare()
    server = httpserver.HTTPServer(app, max_body_size=512 << 20, max_buffer_size=512 << 20)
    server.listen(port, "127.0.0.1")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
