#!/bin/sh
# Re-runs saved graph-fuzz failures with stack traces: Swift traps through the plain debug build
# with the backtracer, sanitizer reports through the ASan build. Prints the first frames in Sources/.
#   sh Tests/fuzz/triage.sh .build/fuzz-graph/failures/case-* 
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for case in "$@"; do
  json="$case/case.json"
  [ -f "$json" ] || continue
  echo "== $case"
  /work/main/.venv/bin/python - "$json" "$case" "$ROOT" <<'PY'
import json, os, subprocess, sys, re, tempfile, shutil
entry = json.load(open(sys.argv[1])); case = sys.argv[2]; root = sys.argv[3]
print("  ", entry["base"], entry["mutations"])
print("  ", entry.get("signature"))
tmp = tempfile.mkdtemp()
for f in os.listdir(case):
    shutil.copy(os.path.join(case, f), tmp)
argv = []
for a in entry["argv"]:
    if a.endswith("mutant.onnx"): a = os.path.join(tmp, "mutant.onnx")
    elif re.search(r"out\d+\.onnx$", a): a = os.path.join(tmp, "out.onnx")
    argv.append(a)
print("   compressor", " ".join(argv))
asan = "AddressSanitizer" in (entry.get("stderr") or "")
binary = os.path.join(root, ".build-sanitizers/debug/compressor" if asan else ".build/debug/compressor")
env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", OPENBLAS_NUM_THREADS="1",
           SWIFT_BACKTRACE="enable=yes,interactive=no,color=no,symbolicate=fast,limit=24")
try:
    r = subprocess.run([binary] + argv, capture_output=True, text=True, timeout=120, env=env)
    err = r.stderr
    print("   exit", r.returncode)
except subprocess.TimeoutExpired:
    err = ""; print("   timeout")
shown = 0
for line in err.splitlines():
    if "Fatal error" in line or "ERROR: AddressSanitizer" in line or "Crash" in line[:40] or "compressor: error" in line:
        print("  ", line.strip()[:220])
    if "/Sources/" in line and shown < 6:
        print("  ", re.sub(r"^\s*\d+\s+\[[^\]]*\]\s*(\[[^\]]*\]\s*)*0x[0-9a-f]+\s*", "", line.strip())[:220]); shown += 1
shutil.rmtree(tmp)
PY
done
