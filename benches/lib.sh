# Shared by benches/pdf.sh and benches/edxml.sh (sourced): a fresh release
# gateway holding the department's organization key, and a sampler of its
# heap. Expects $bin (the release binary), $work (a scratch directory) and
# $gateway_pid (empty at first) to be set by the caller.

# Starts a fresh gateway (its own data directory) holding the department's
# organization key; sets gateway_pid and LIENTHONG_SERVER.
start_gateway() {
    if [ -n "$gateway_pid" ]; then kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; fi
    rm -rf "$work/data" "$work/gateway.log"
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2> "$work/gateway.log" &
    gateway_pid=$!
    local address=""
    for _ in $(seq 1 100); do
        address=$(grep -o 'address=[0-9.:]*' "$work/gateway.log" | head -1 | cut -d= -f2 || true)
        [ -n "$address" ] && break
        sleep 0.1
    done
    [ -n "$address" ] || { cat "$work/gateway.log" >&2; echo "gateway did not start" >&2; exit 1; }
    export LIENTHONG_SERVER="https://localhost:${address##*:}"
    "$bin" key import --agency 000.00.12.H56 --role organization \
        --cert certs-test/signers/department-organization.crt \
        --key certs-test/signers/department-organization.key \
        --tls-cert certs-test/admin/admin.crt --tls-key certs-test/admin/admin.key >&2
}

# Runs a command while sampling the gateway's RssAnon; prints the baseline
# and the peak in KiB as JSON.
sampled() {
    python3 - "$gateway_pid" "$@" <<'PY'
import json, subprocess, sys, time
pid, command = sys.argv[1], sys.argv[2:]
def anon():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0
baseline = anon()
process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
peak, start = baseline, time.monotonic()
while process.poll() is None:
    peak = max(peak, anon())
    time.sleep(0.01)
seconds = time.monotonic() - start
if process.returncode != 0:
    sys.exit(f"{command[0]} failed with {process.returncode}")
print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "seconds": seconds}))
PY
}
