#!/usr/bin/env bash
# The PostgreSQL engine measured (issue 17), written into BENCHMARKS.md:
#
#   throughput  a fresh release gateway on sled, then one on PostgreSQL (a
#               throwaway cluster from scripts/pg on the same machine: the
#               database, the gateway and the load generator share the 2
#               cores); `lienthong bench --end-to-end` with 10 KB documents
#               and one detached CAdES signature, same count, same run.
#   takeover    two gateways on one database with the default lease
#               (lienthong.toml: [store.postgres] lease_seconds); the active
#               one is killed with SIGKILL, and the time until the other logs
#               "this gateway is now the active one" is taken, CYCLES times.
#
# Usage: benches/postgres.sh [--label NAME] [--count N] [--cycles N]
set -euo pipefail
cd "$(dirname "$0")/.."

label=current
count=3000
cycles=5
while [ $# -gt 0 ]; do
    case "$1" in
        --label) label="$2"; shift 2 ;;
        --count) count="$2"; shift 2 ;;
        --cycles) cycles="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lienthong-pg-bench.XXXXXX")
gateway_pid=""
pg_dir=""
pids=()
cleanup() {
    if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    [ -n "$pg_dir" ] && scripts/pg stop "$pg_dir"
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*" >&2; }

step "building (release)"
cargo build --release --locked >&2
bin=target/release/lienthong
commit=$(git rev-parse --short HEAD)

step "PostgreSQL cluster (scripts/pg start)"
pg=$(scripts/pg start)
pg_dir=$(sed -n 1p <<<"$pg")
admin=$(sed -n 2p <<<"$pg")
database() { psql "$admin" -qc "CREATE DATABASE $1" >&2; echo "${admin/dbname=postgres/dbname=$1}"; }

# start_gateway (sled) and sampled.
. benches/lib.sh

export LIENTHONG_KEYSTORE_PASSPHRASE=bench-only-passphrase LIENTHONG_TLS_CA=certs-test/ca/root.crt
export LIENTHONG_TLS_CERT=certs-test/agencies/department.crt LIENTHONG_TLS_KEY=certs-test/agencies/department.key
summary() { python3 -c 'import json, sys; r = json.loads(sys.argv[2]); print("%s: %d acknowledged, %.0f docs/s" % (sys.argv[1], r["acknowledged"], r["acknowledged"] / r["seconds"]), file=sys.stderr)' "$@"; }
run_bench() { "$bin" bench --end-to-end --count "$count" --duration 600 --size 10KB --signatures 1 --distinct 64 --json; }

step "throughput: $count documents of 10 KB on sled (the comparison)"
start_gateway
sled=$(run_bench)
summary sled "$sled"
kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; gateway_pid=""

step "throughput: $count documents of 10 KB on PostgreSQL"
url=$(database bench_throughput)
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/pg-data" --postgres "$url" 2> "$work/pg.log" &
gateway_pid=$!
address=""
for _ in $(seq 1 100); do
    address=$(grep -o 'address=[0-9.:]*' "$work/pg.log" | head -1 | cut -d= -f2 || true)
    [ -n "$address" ] && grep -q "now the active one" "$work/pg.log" && break
    sleep 0.1
done
[ -n "$address" ] || { cat "$work/pg.log" >&2; exit 1; }
export LIENTHONG_SERVER="https://localhost:${address##*:}"
postgres=$(run_bench)
summary postgres "$postgres"
kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; gateway_pid=""

step "takeover: $cycles kills of the active gateway, default lease"
url=$(database bench_takeover)
start_node() { # name -> pid, log in $work/$1.log (appended)
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/$1" --postgres "$url" > /dev/null 2>> "$work/$1.log" &
    echo $!
}
declare -A pid_of
pid_of[a]=$(start_node a)
sleep 1
pid_of[b]=$(start_node b)
pids=("${pid_of[a]}" "${pid_of[b]}")
active_count() { grep -c "now the active one" "$work/$1.log" 2>/dev/null || true; }
takeovers=()
active=a
for _ in $(seq 1 100); do grep -q "now the active one" "$work/a.log" && break; sleep 0.1; done
for cycle in $(seq 1 "$cycles"); do
    other=$([ "$active" = a ] && echo b || echo a)
    sleep 2
    before=$(active_count "$other")
    started=$(date +%s.%N)
    kill -9 "${pid_of[$active]}"
    while [ "$(active_count "$other")" -le "$before" ]; do sleep 0.02; done
    ended=$(date +%s.%N)
    took=$(python3 -c "print(round(($ended - $started) * 1000))")
    echo "cycle $cycle: $other took over after $took ms" >&2
    takeovers+=("$took")
    pid_of[$active]=$(start_node "$active")
    pids=("${pid_of[a]}" "${pid_of[b]}")
    active=$other
done
lease=$(sed -n '/^\[store.postgres\]/,/^\[/p' lienthong.toml | grep -o '^lease_seconds = [0-9]*' | grep -o '[0-9]*$' || echo 6)

mkdir -p benches/results/postgres
python3 - "$label" "$commit" "$sled" "$postgres" "$lease" "${takeovers[@]}" \
    > "benches/results/postgres/$label.json" <<'PY'
import datetime, json, sys
label, commit, sled, postgres, lease, *takeovers = sys.argv[1:]
print(json.dumps({
    "label": label,
    "commit": commit,
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "sled": json.loads(sled),
    "postgres": json.loads(postgres),
    "lease_seconds": int(lease),
    "takeover_ms": [int(t) for t in takeovers],
}, indent=1))
PY
python3 benches/report.py render benches/results > BENCHMARKS.md
step "wrote benches/results/postgres/$label.json and BENCHMARKS.md"
