"""Copy one file to or from an object store (``s3://``), for ``cluster/setup.sh`` on a cluster
without a shared file system: the record's dumps and password go to the bucket and come back on a
new head. Through ``pyarrow.fs`` (installed with the project); credentials and endpoint from the
AWS environment (an instance role on AWS, ``AWS_ENDPOINT_URL`` for an S3-compatible server).

    python cluster/objects.py put LOCAL_FILE s3://BUCKET/KEY
    python cluster/objects.py get s3://BUCKET/KEY LOCAL_FILE     # exit 3: no such object

A local file is written whole (a temporary name, then renamed) and made private (mode 600).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import pyarrow.fs as pafs

    if len(argv) != 3 or argv[0] not in ("put", "get"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, source, target = argv
    uri = target if verb == "put" else source
    try:
        fs, key = pafs.FileSystem.from_uri(uri)
        if verb == "put":
            with fs.open_output_stream(key) as out:
                out.write(Path(source).read_bytes())
            return 0
        if fs.get_file_info(key).type != pafs.FileType.File:
            return 3
        with fs.open_input_file(key) as stream:
            data = bytes(stream.read())
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {uri}: {first} (check the bucket, AWS_ENDPOINT_URL and the credentials)", file=sys.stderr)
        return 1
    partial = Path(f"{target}.partial")
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
    partial.replace(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
