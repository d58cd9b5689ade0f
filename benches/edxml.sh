#!/usr/bin/env bash
# edXML measured (issue 16), written into BENCHMARKS.md:
#
#   throughput  a fresh release gateway; `lienthong bench --end-to-end` with
#               10 KB documents, first as gRPC envelopes with one detached
#               RSA-2048 CAdES signature (the figure edXML is compared with),
#               then as edXML packages with one enveloped XML signature
#               (`--edxml`: Edxml.Send in, Edxml.Receive out, rendered as
#               edXML), same count, same run.
#   memory      a package with one 50 MB attachment (67 MB of base64), signed
#               by the gateway (`edxml sign`), sent with `send --edxml` and
#               received with `receive --format edxml`, each on a fresh
#               gateway while its anonymous memory (RssAnon: the heap, not
#               the mapped package) is sampled every 10 ms.
#
# Usage: benches/edxml.sh [--label NAME] [--count N]
set -euo pipefail
cd "$(dirname "$0")/.."

label=current
count=3000
while [ $# -gt 0 ]; do
    case "$1" in
        --label) label="$2"; shift 2 ;;
        --count) count="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lienthong-edxml-bench.XXXXXX")
gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*" >&2; }

step "building (release)"
cargo build --release --locked >&2
bin=target/release/lienthong
commit=$(git rev-parse --short HEAD)

# start_gateway and sampled.
. benches/lib.sh

export LIENTHONG_KEYSTORE_PASSPHRASE=bench-only-passphrase LIENTHONG_TLS_CA=certs-test/ca/root.crt
export LIENTHONG_TLS_CERT=certs-test/agencies/department.crt LIENTHONG_TLS_KEY=certs-test/agencies/department.key

step "throughput: $count documents of 10 KB as gRPC envelopes (the comparison)"
start_gateway
envelope=$("$bin" bench --end-to-end --count "$count" --duration 600 --size 10KB --signatures 1 --distinct 64 --json)
summary() { python3 -c 'import json, sys; r = json.loads(sys.argv[2]); print("%s: %d acknowledged, %.0f docs/s" % (sys.argv[1], r["acknowledged"], r["acknowledged"] / r["seconds"]), file=sys.stderr)' "$@"; }
summary envelope "$envelope"
step "throughput: $count documents of 10 KB as edXML packages"
start_gateway
edxml=$("$bin" bench --edxml --end-to-end --count "$count" --duration 600 --size 10KB --json)
summary edxml "$edxml"

step "memory: one 50 MB attachment"
python3 - "$work/big.edxml" <<'PY'
import base64, os, sys
ns = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
with open(sys.argv[1], "wb") as out:
    out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML:edXMLEnvelope xmlns:edXML="{ns}"><edXML:edXMLHeader><edXML:MessageHeader><edXML:From><edXML:OrganId>000.00.12.H56</edXML:OrganId></edXML:From><edXML:To><edXML:OrganId>000.00.31.H56</edXML:OrganId></edXML:To><edXML:DocumentId>000.00.12.H56,2026/12/02,50/BENCH</edXML:DocumentId><edXML:Subject>50 MB</edXML:Subject></edXML:MessageHeader><edXML:TraceHeaderList><edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness></edXML:TraceHeaderList></edXML:edXMLHeader><edXML:edXMLBody/><edXML:AttachmentEncoded><edXML:Attachment><edXML:AttachmentName>scan.pdf</edXML:AttachmentName><edXML:ContentType>application/octet-stream</edXML:ContentType><edXML:ContentTransferEncoded>\n'.encode())
    # Blocks of a multiple of 3 bytes: only the last one may be padded.
    total, block = 50 << 20, 3 << 18
    for offset in range(0, total, block):
        out.write(base64.encodebytes(os.urandom(min(block, total - offset))))
    out.write(b"</edXML:ContentTransferEncoded></edXML:Attachment></edXML:AttachmentEncoded></edXML:edXMLEnvelope>\n")
PY
package_bytes=$(stat -c %s "$work/big.edxml")
start_gateway
sign=$(sampled "$bin" edxml sign --role organization --in "$work/big.edxml" --out "$work/big-signed.edxml")
echo "Sign: $sign" >&2
start_gateway
send=$(sampled "$bin" send --edxml "$work/big-signed.edxml")
echo "Send: $send" >&2
receive=$(LIENTHONG_TLS_CERT=certs-test/agencies/district.crt LIENTHONG_TLS_KEY=certs-test/agencies/district.key \
    sampled "$bin" receive --format edxml --out "$work/inbox" --once --ack)
echo "Receive: $receive" >&2

mkdir -p benches/results/edxml
python3 - "$label" "$commit" "$envelope" "$edxml" "$package_bytes" "$sign" "$send" "$receive" \
    > "benches/results/edxml/$label.json" <<'PY'
import datetime, json, sys
label, commit, envelope, edxml, package_bytes, sign, send, receive = sys.argv[1:9]
print(json.dumps({
    "label": label,
    "commit": commit,
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "envelope": json.loads(envelope),
    "edxml": json.loads(edxml),
    "attachment_bytes": 50 << 20,
    "package_bytes": int(package_bytes),
    "chunk_bytes": 1 << 20,
    "memory": {"sign": json.loads(sign), "send": json.loads(send), "receive": json.loads(receive)},
}, indent=1))
PY
python3 benches/report.py render benches/results > BENCHMARKS.md
step "wrote benches/results/edxml/$label.json and BENCHMARKS.md"
