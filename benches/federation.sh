#!/usr/bin/env bash
# Forwarded documents/s through H56 → hub → H17 (three release gateways on
# this machine, examples/federation/) against one gateway's end-to-end
# figure in the same run; writes benches/results/federation/COMMIT.json and
# renders BENCHMARKS.md.
#
#   benches/federation.sh [--duration SECONDS]     # default 20
set -euo pipefail
cd "$(dirname "$0")/.."

duration=20
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lienthong-federation-bench.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME CONFIG PORT: a gateway in the background; waits until it listens.
start() {
    local name=$1 config=$2 port=$3
    target/release/lienthong serve --config "$config" --listen "127.0.0.1:$port" \
        --data-dir "$work/data-$name" 2> "$work/$name.log" &
    pids+=($!)
    for _ in $(seq 1 100); do
        grep -q 'address=' "$work/$name.log" && return 0
        sleep 0.1
    done
    cat "$work/$name.log" >&2
    echo "gateway $name did not start" >&2
    exit 1
}

step "building (release)"
cargo build --release --locked >&2
commit=$(git rev-parse --short HEAD)
tool=target/release/lienthong

step "one gateway, end to end, $duration s"
single_port=$(free_port)
start single lienthong.toml "$single_port"
"$tool" bench --server "https://localhost:$single_port" --end-to-end --duration 3 > /dev/null
"$tool" bench --server "https://localhost:$single_port" --end-to-end --duration "$duration" --json \
    > "$work/single.json"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

step "H56 → hub → H17, end to end, $duration s"
ports=("$(free_port)" "$(free_port)" "$(free_port)")
for name in h56 hub h17; do
    sed -e "s#../../certs-test#$PWD/certs-test#g" \
        -e "s#127.0.0.1:50061#127.0.0.1:${ports[0]}#g" \
        -e "s#127.0.0.1:50062#127.0.0.1:${ports[1]}#g" \
        -e "s#127.0.0.1:50063#127.0.0.1:${ports[2]}#g" \
        "examples/federation/$name.toml" > "$work/$name.toml"
done
start h56 "$work/h56.toml" "${ports[0]}"
start hub "$work/hub.toml" "${ports[1]}"
start h17 "$work/h17.toml" "${ports[2]}"
federated() {
    "$tool" bench --server "https://localhost:${ports[0]}" \
        --ca certs-test/federation/h56/ca.crt \
        --to certs-test/federation/h17 --to-code 000.00.12.H17 \
        --receiver-server "https://localhost:${ports[2]}" \
        --receiver-ca certs-test/federation/h17/ca.crt --end-to-end "$@"
}
federated --duration 3 > /dev/null
federated --duration "$duration" --json > "$work/federation.json"

mkdir -p benches/results/federation
python3 - "$work" "$commit" > "benches/results/federation/$commit.json" <<'PY'
import datetime, json, sys
work, commit = sys.argv[1], sys.argv[2]
print(json.dumps({
    "commit": commit,
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "single": json.load(open(f"{work}/single.json")),
    "federation": json.load(open(f"{work}/federation.json")),
}, indent=1))
PY
python3 benches/report.py render benches/results > BENCHMARKS.md
step "wrote benches/results/federation/$commit.json and BENCHMARKS.md"
