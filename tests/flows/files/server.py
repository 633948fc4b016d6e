"""A tiny HTTP server for the resource tests: `python3 server.py PORT`."""
import http.server
import sys


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
