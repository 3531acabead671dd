"""What each peer accepts: ``python bench/compare/validation.py``.

Writes small captures with one fault per line (three copies of the line) and runs every peer of
``peers.py`` on each, printing whether the read fails (``error``) or how many tweets came out.
This is the table of the caveats in docs/benchmarks.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = ["firehose", "duckdb", "pyarrow", "polars", "msgspec", "orjson", "json"]
CASES = {
    "valid": b'{"id":1,"text":"a","x":"b"}\n',
    "invalid UTF-8, skipped string": b'{"id":1,"text":"a","x":"\xff\xfe"}\n',
    "invalid UTF-8 in text": b'{"id":1,"text":"a\xff"}\n',
    "lone surrogate escape": b'{"id":1,"text":"a","x":"\\ud800"}\n',
    "invalid escape \\q": b'{"id":1,"text":"a","x":"\\q"}\n',
    "NaN": b'{"id":1,"text":"a","x":NaN}\n',
    "trailing garbage": b'{"id":1,"text":"a"} x\n',
    "truncated line": b'{"id":1,"text":"a"\n',
}


def main() -> None:
    env = dict(os.environ, POLARS_MAX_THREADS="1")
    with tempfile.TemporaryDirectory() as d:
        print("| fault | " + " | ".join(PEERS) + " |")
        print("|---|" + "---|" * len(PEERS))
        for i, (name, line) in enumerate(CASES.items()):
            path = Path(d) / f"case{i}.ndjson"
            path.write_bytes(line * 3)
            cells = []
            for peer in PEERS:
                r = subprocess.run([sys.executable, str(HERE / "peers.py"), peer, str(path),
                                    "--reps", "1"], capture_output=True, text=True, env=env)
                if r.returncode:
                    cells.append("error")
                else:
                    ck = json.loads(r.stdout.strip().splitlines()[-1])["checksum"]
                    cells.append(f"{ck['tweets']} tweets")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
