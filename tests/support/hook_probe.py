"""A hook for the tests: saves what it was given (NVR_* variables, the JSON file, its pid) into
OUT_DIR/<hook>-<pid>.json; with --hang N it starts a child and both sleep N seconds."""

import json
import os
import subprocess
import sys
import time

out_dir = sys.argv[1]
hang = float(sys.argv[sys.argv.index("--hang") + 1]) if "--hang" in sys.argv else 0
child = subprocess.Popen(["sleep", str(hang)]) if hang else None
with open(os.environ["NVR_JSON"]) as f:
    payload = json.load(f)
record = {
    "env": {k: v for k, v in os.environ.items() if k.startswith("NVR_")},
    "json": payload,
    "pid": os.getpid(),
    "child": child.pid if child else None,
    "argv": sys.argv[1:],
}
tmp = os.path.join(out_dir, f".{payload['hook']}-{os.getpid()}.tmp")
with open(tmp, "w") as f:
    json.dump(record, f)
os.replace(tmp, os.path.join(out_dir, f"{payload['hook']}-{os.getpid()}.json"))
if hang:
    time.sleep(hang)
if "--fail" in sys.argv:
    print("probe failed on purpose", file=sys.stderr)
    sys.exit(3)
