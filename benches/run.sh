#!/usr/bin/env bash
# Measures the gateway against this machine's own limits and writes
# BENCHMARKS.md. One script, one machine, one run:
#
#   ceilings    `openssl speed rsa2048` (per core), the disk's fdatasync rate,
#               and the gateway's own full CMS verification on every core
#   criterion   envelope, verify, receipts and signing, queue (benches/*.rs)
#   end to end  a release gateway on 127.0.0.1 loaded by `lienthong bench`:
#               peak documents/s (10 KB, one RSA-2048 signature, verified,
#               durable, receipted, received and acknowledged), then p99 at
#               half that rate, then memory over a soak at that rate.
#
# Usage: benches/run.sh [--label NAME] [--quick] [--soak SECONDS] [--bin PATH]
#   --label   name of this run in benches/results/ (default: current)
#   --quick   skip criterion (end-to-end figures and ceilings only)
#   --soak    seconds of the memory soak (default 600; 0 skips it)
#   --bin     a lienthong binary to load-test instead of this tree's (for
#             "before" figures of an older commit)
set -euo pipefail
cd "$(dirname "$0")/.."

label=current
quick=0
soak=600
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --label) label="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --soak) soak="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lienthong-bench.XXXXXX")
gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*" >&2; }

step "building (release)"
cargo build --release --locked >&2
tool=target/release/lienthong      # the load generator: always this tree's
bin=${bin:-$tool}                  # the gateway under test
commit=$(git rev-parse --short HEAD)

step "ceiling: openssl speed rsa2048 (one core)"
openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $(NF-1), $NF}' > "$work/speed.txt"
cat "$work/speed.txt" >&2

step "ceiling: the disk's fdatasync rate (4 KiB write + fdatasync, 3 s)"
python3 - "$work" > "$work/fsync.txt" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block, count, start = b"\x5a" * 4096, 0, time.monotonic()
while time.monotonic() - start < 3:
    os.write(fd, block); os.fdatasync(fd); count += 1
print(count / (time.monotonic() - start))
PY
cat "$work/fsync.txt" >&2

step "ceiling: in-process full verification on every core"
"$tool" bench --verify-only --duration 10 --json > "$work/verify.json"
cat "$work/verify.json" >&2

if [ "$quick" = 0 ]; then
    step "criterion benches (envelope, pki, signing, queue)"
    rm -rf target/criterion
    for bench in envelope pki signing queue; do
        LIENTHONG_BENCH_DIR="$work" cargo bench --locked --bench "$bench" -- \
            --warm-up-time 1 --measurement-time 4 >&2
    done
fi

step "end to end: starting the gateway"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2> "$work/gateway.log" &
gateway_pid=$!
address=""
for _ in $(seq 1 100); do
    address=$(grep -o 'address=[0-9.:]*' "$work/gateway.log" | head -1 | cut -d= -f2 || true)
    [ -n "$address" ] && break
    sleep 0.1
done
[ -n "$address" ] || { cat "$work/gateway.log" >&2; echo "gateway did not start" >&2; exit 1; }
server="https://localhost:${address##*:}"
load() { "$tool" bench --server "$server" --server-pid "$gateway_pid" --json "$@"; }

step "end to end: warm-up"
load --duration 3 --end-to-end > /dev/null
step "end to end: peak, closed loop, receivers acknowledging"
load --duration 20 --end-to-end > "$work/peak.json"
half=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["documents_per_second"]/2))' "$work/peak.json")
step "end to end: half the peak ($half documents/s)"
load --duration 30 --end-to-end --rate "$half" > "$work/half.json"
if [ "$soak" -gt 0 ]; then
    step "end to end: memory soak, $soak s at $half documents/s"
    load --duration "$soak" --end-to-end --rate "$half" > "$work/soak.json"
else
    echo '{}' > "$work/soak.json"
fi
# Last, since nobody drains what it sends.
step "end to end: peak, closed loop, accept only (Send → receipt)"
load --duration 20 > "$work/accept.json"

python3 benches/report.py collect "$work" "$label" "$commit" "$quick" > "benches/results/$label.json"
python3 benches/report.py render benches/results > BENCHMARKS.md
step "wrote benches/results/$label.json and BENCHMARKS.md"
