#!/usr/bin/env bash
# Signatures inside PDFs, measured (issue 15), written into BENCHMARKS.md:
#
#   criterion   benches/pdf.rs: a full verification of a 1 MB PDF with two
#               signatures and signing one, beside the detached CMS
#               verification and signature of the same 1 MB in the same run
#               (the figures they are compared with).
#   memory      a fresh release gateway signs a PDF of 16, then 64 MiB
#               (SignPdf, streamed), and another takes the signed one in a
#               SendStream (its signature verified at intake), while its
#               anonymous memory (RssAnon: the heap, not the mapped file) is
#               sampled every 10 ms; the growth is set against the 1 MiB
#               chunk and the document, for both sizes.
#
# Usage: benches/pdf.sh [--label NAME]
set -euo pipefail
cd "$(dirname "$0")/.."

label=current
while [ $# -gt 0 ]; do
    case "$1" in
        --label) label="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lienthong-pdf-bench.XXXXXX")
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

step "criterion: benches/pdf.rs"
rm -rf target/criterion/pdf
cargo bench --locked --bench pdf -- --warm-up-time 1 --measurement-time 5 >&2

# A PDF of PAGES pages, a 1 MiB scan (1024 x 1024 grey) on each.
make_pdf() {
    python3 - "$1" "$2" <<'PY'
import os, sys
path, pages, side = sys.argv[1], int(sys.argv[2]), 1024
objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
kids = []
for i in range(pages):
    page, content, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
    kids.append(b"%d 0 R" % page)
    objects[page] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                     b"/Resources << /XObject << /Scan %d 0 R >> >> >>" % (content, image))
    draw = b"q 595 0 0 842 0 0 cm /Scan Do Q"
    objects[content] = b"<< /Length %d >>\nstream\n" % len(draw) + draw + b"\nendstream"
    pixels = os.urandom(side * side)
    objects[image] = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                      b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (side, side, len(pixels))
                      + pixels + b"\nendstream")
objects[2] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d >>" % pages
size = max(objects) + 1
with open(path, "wb") as out:
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f\r\n" % size)
    for number in range(1, size):
        out.write(b"%010d 00000 n\r\n" % offsets[number])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
PY
}

# start_gateway and sampled.
. benches/lib.sh

export LIENTHONG_KEYSTORE_PASSPHRASE=bench-only-passphrase LIENTHONG_TLS_CA=certs-test/ca/root.crt
export LIENTHONG_TLS_CERT=certs-test/agencies/department.crt LIENTHONG_TLS_KEY=certs-test/agencies/department.key
memory="["
for pages in 16 64; do
    step "memory: a PDF of $pages pages, a 1 MiB scan on each"
    make_pdf "$work/big.pdf" "$pages"
    size=$(stat -c %s "$work/big.pdf")
    start_gateway
    sign=$(sampled "$bin" pdf sign --role organization --in "$work/big.pdf" --out "$work/big-signed.pdf")
    echo "SignPdf: $sign" >&2
    start_gateway
    send=$(sampled "$bin" send --to 000.00.31.H56 --code "$pages/BENCH" --subject "$pages MiB" --stream "$work/big-signed.pdf")
    echo "SendStream: $send" >&2
    memory="$memory{\"document_bytes\": $size, \"sign_pdf\": $sign, \"send_stream\": $send},"
done
memory="${memory%,}]"

mkdir -p benches/results/pdf
python3 - "$label" "$commit" "$memory" > "benches/results/pdf/$label.json" <<'PY'
import datetime, glob, json, os, sys
label, commit, memory = sys.argv[1:4]
def median_ns(name):
    path = os.path.join("target", "criterion", "pdf", name, "new", "estimates.json")
    return json.load(open(path))["median"]["point_estimate"]
print(json.dumps({
    "label": label,
    "commit": commit,
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "criterion_ns": {name: median_ns(name) for name in (
        "verify_1MB_two_signatures", "detached_cms_verify_1MB", "sign_1MB", "detached_cms_sign_1MB")},
    "chunk_bytes": 1 << 20,
    "memory": json.loads(memory),
}, indent=1))
PY
python3 benches/report.py render benches/results > BENCHMARKS.md
step "wrote benches/results/pdf/$label.json and BENCHMARKS.md"
