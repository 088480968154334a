# A tiny plain-HTTP stand-in for Graph, for recording the client scripts by hand without a
# tenant: `graph-vcr record --upstream http://127.0.0.1:9000 ...`. It answers like Graph does
# where the scripts look: deviceConfigurations in two pages with an absolute @odata.nextLink
# (to itself, as Graph links to itself), $batch item by item (dependsOn honoured, 424 when a
# dependency failed, answers in reverse order as Graph may), assignments lists, a group, and
# deviceConfigurations assign (200 with {"value": [...]}). The first assign is throttled (429,
# Retry-After: 1), as Intune throttles writes. Standard library only.
#   python stand_in_graph.py [PORT]
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
ORIGIN = f"http://127.0.0.1:{PORT}"
PAGED = "/v1.0/deviceManagement/deviceConfigurations"
throttled = set()

def config(i, name):
    return {"@odata.type": "#microsoft.graph.windows10GeneralConfiguration", "id": i, "displayName": name}

def answer(method, url, body):
    """(status, headers, body-or-None) for one call."""
    parts = urlsplit(url)
    path, query = parts.path, parts.query
    lower = path.lower()
    if method == "GET" and path == PAGED:
        if "skiptoken=page2" in query:
            return 200, {}, {"value": [config("dc-3", "Third")]}
        return 200, {}, {"value": [config("dc-1", "First"), config("dc-2", "Second")],
                         "@odata.nextLink": f"{ORIGIN}{PAGED}?$skiptoken=page2"}
    if method == "GET" and lower.endswith("/assignments"):
        cid = path.split("/")[-2]
        return 200, {}, {"value": [{"id": f"{cid}-a", "target": {
            "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]}
    if method == "GET" and "/groups/" in lower:
        return 200, {}, {"id": path.split("/")[-1], "displayName": "Pilot devices"}
    if method == "POST" and lower.endswith("/assign"):
        if path not in throttled:
            throttled.add(path)
            return 429, {"Retry-After": "1"}, {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
        return 200, {}, {"value": json.loads(body or b"{}").get("assignments", [])}
    if method == "POST" and lower.endswith("/$batch"):
        version = path[: -len("/$batch")]
        out, status_of = [], {}
        for item in json.loads(body or b"{}").get("requests", []):
            deps = item.get("dependsOn") or []
            if any(not 200 <= status_of.get(d, 200) < 300 for d in deps):
                status_of[item["id"]] = 424
                out.append({"id": item["id"], "status": 424, "body": {"error": {"code": "FailedDependency", "message": "x"}}})
                continue
            url = item["url"]
            url = urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else "") if "://" in url else version + url
            ib = item.get("body")
            s, h, b = answer(item["method"].upper(), url, json.dumps(ib).encode() if ib is not None else None)
            status_of[item["id"]] = s
            h = dict(h, **{"Content-Type": "application/json"})
            out.append({"id": item["id"], "status": s, "headers": h, **({"body": b} if b is not None else {})})
        return 200, {}, {"responses": list(reversed(out))}
    return 404, {}, {"error": {"code": "ResourceNotFound", "message": f"stand-in has no {method} {path}"}}

class Handler(BaseHTTPRequestHandler):
    def handle_one(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        status, headers, out = answer(method, self.path, body)
        data = json.dumps(out).encode() if out is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("request-id", "00000000-0000-4000-8000-000000000001")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self): self.handle_one("GET")
    def do_POST(self): self.handle_one("POST")
    def log_message(self, fmt, *args):
        sys.stderr.write("stand-in: " + fmt % args + "\n")

ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
