"""Reads an Iceberg table that weir wrote, with PyIceberg (an independent implementation).

usage: read_iceberg.py CATALOG_DB CATALOG_NAME WAREHOUSE NAMESPACE.TABLE

Prints one JSON document: the rows (timestamps as milliseconds since the epoch, sorted), the
snapshots (id, parent, summary) in commit order, and the partition spec.
"""

import datetime
import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1000)
    return value


def main():
    db, name, warehouse, table = sys.argv[1:5]
    # An S3 warehouse (an S3-compatible server in the tests): the AWS_* variables weir reads.
    s3 = {}
    if os.environ.get("AWS_ENDPOINT"):
        s3 = {
            "s3.endpoint": os.environ["AWS_ENDPOINT"],
            "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
        }
    catalog = SqlCatalog(name, uri=f"sqlite:///{db}", warehouse=warehouse, **s3)
    t = catalog.load_table(table)
    rows = [{k: plain(v) for k, v in row.items()} for row in t.scan().to_arrow().to_pylist()]
    rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    snapshots = []
    for s in sorted(t.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms)):
        summary = s.summary
        props = dict(summary.additional_properties) if summary is not None else {}
        snapshots.append({"id": s.snapshot_id, "parent": s.parent_snapshot_id, "summary": props})
    spec = [
        {"name": f.name, "transform": str(f.transform), "source_id": f.source_id}
        for f in t.spec().fields
    ]
    files = [task.file.file_path for task in t.scan().plan_files()]
    print(json.dumps({"rows": rows, "snapshots": snapshots, "spec": spec, "files": files}))


if __name__ == "__main__":
    main()
