"""An Iceberg REST catalog for the tests: the REST protocol's table and namespace endpoints in
front of PyIceberg's SQL catalog (an independent implementation: PyIceberg validates every
commit's requirements and applies its updates, and writes the table metadata).

usage: rest_catalog.py CATALOG_DB CATALOG_NAME WAREHOUSE PORT_FILE

Listens on a free loopback port and writes it to PORT_FILE once it accepts connections. A
reader then opens the same tables with `SqlCatalog(CATALOG_NAME, uri=sqlite:///CATALOG_DB)`.
No Iceberg REST server can be fetched on the test machines (Maven Central is unreachable).
"""

import json
import os
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pyiceberg.catalog.rest import TableResponse
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CommitTableRequest
from pyiceberg.table.sorting import SortOrder
from pyiceberg.transforms import parse_transform

ERRORS = {
    NoSuchTableError: (404, "NoSuchTableException"),
    NoSuchNamespaceError: (404, "NoSuchNamespaceException"),
    TableAlreadyExistsError: (409, "AlreadyExistsException"),
    NamespaceAlreadyExistsError: (409, "AlreadyExistsException"),
    CommitFailedException: (409, "CommitFailedException"),
}


def namespace(part):
    # Levels are joined by the unit separator (%1F) in paths.
    return tuple(urllib.parse.unquote(part).split("\x1f"))


class Handler(BaseHTTPRequestHandler):
    catalog = None
    # SQLite and the metadata files: one request at a time.
    lock = threading.Lock()

    def log_request(self, code="-", size="-"):
        # Only failures: the test's output stays readable.
        if str(code).startswith("5"):
            sys.stderr.write(f"rest-catalog: {self.command} {self.path} -> {code}\n")

    def send(self, status, body=None):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def route(self):
        path = urllib.parse.urlparse(self.path).path.strip("/").split("/")
        if path[:1] != ["v1"]:
            return self.send(404, {"error": {"message": f"no route {self.path}", "type": "NotFound", "code": 404}})
        rest = path[1:]
        c = self.catalog
        with self.lock:
            try:
                self.dispatch(c, rest)
            except tuple(ERRORS) as e:
                status, kind = ERRORS[type(e)]
                self.send(status, {"error": {"message": str(e), "type": kind, "code": status}})
            except Exception as e:  # noqa: BLE001 - a server answers every request
                traceback.print_exc()
                self.send(500, {"error": {"message": repr(e), "type": "ServerError", "code": 500}})

    def table_response(self, table):
        response = TableResponse(metadata_location=table.metadata_location, metadata=table.metadata, config={})
        return response.model_dump_json(by_alias=True, exclude_none=True).encode()

    def dispatch(self, c, rest):
        m = self.command
        if rest == ["config"] and m == "GET":
            return self.send(200, {"defaults": {}, "overrides": {}})
        if rest == ["namespaces"]:
            if m == "GET":
                return self.send(200, {"namespaces": [list(n) for n in c.list_namespaces()]})
            if m == "POST":
                b = self.body()
                c.create_namespace(tuple(b["namespace"]), b.get("properties") or {})
                return self.send(200, {"namespace": b["namespace"], "properties": b.get("properties") or {}})
        if len(rest) == 2 and rest[0] == "namespaces":
            ns = namespace(rest[1])
            props = c.load_namespace_properties(ns)
            if m == "HEAD":
                return self.send(204)
            if m == "GET":
                return self.send(200, {"namespace": list(ns), "properties": props})
        if len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "tables":
            ns = namespace(rest[1])
            if m == "GET":
                ids = [{"namespace": list(t[:-1]), "name": t[-1]} for t in c.list_tables(ns)]
                return self.send(200, {"identifiers": ids})
            if m == "POST":
                # The protocol's request: location, write order and partition field ids are
                # optional (PyIceberg's model, written for clients, requires them).
                b = self.body()
                kwargs = {"schema": Schema.model_validate(b["schema"]), "properties": b.get("properties") or {}}
                if b.get("location"):
                    kwargs["location"] = b["location"]
                if b.get("partition-spec"):
                    fields = [
                        PartitionField(
                            source_id=f["source-id"],
                            field_id=f.get("field-id", 1000 + i),
                            transform=parse_transform(f["transform"]),
                            name=f["name"],
                        )
                        for i, f in enumerate(b["partition-spec"].get("fields", []))
                    ]
                    kwargs["partition_spec"] = PartitionSpec(*fields)
                if b.get("write-order"):
                    kwargs["sort_order"] = SortOrder.model_validate(b["write-order"])
                name = b["name"]
                table = c.create_table(ns + (name,), **kwargs)
                return self.send(200, self.table_response(table))
        if len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "tables":
            ident = namespace(rest[1]) + (urllib.parse.unquote(rest[3]),)
            if m in ("GET", "HEAD"):
                table = c.load_table(ident)
                return self.send(204) if m == "HEAD" else self.send(200, self.table_response(table))
            if m == "POST":
                b = self.body()
                b.setdefault("identifier", {"namespace": list(ident[:-1]), "name": ident[-1]})
                req = CommitTableRequest.model_validate(b)
                table = c.load_table(ident)
                response = c.commit_table(table, req.requirements, req.updates)
                return self.send(200, response.model_dump_json(by_alias=True, exclude_none=True).encode())
        self.send(404, {"error": {"message": f"no route {m} {self.path}", "type": "NotFound", "code": 404}})

    do_GET = do_POST = do_HEAD = do_DELETE = route


def main():
    db, name, warehouse, port_file = sys.argv[1:5]
    Handler.catalog = SqlCatalog(name, uri=f"sqlite:///{db}", warehouse=warehouse)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
