#!/usr/bin/env python3
"""Turns one benches/run.sh run into benches/results/LABEL.json (collect),
and every stored run into BENCHMARKS.md (render). Called by run.sh."""

import datetime
import glob
import json
import os
import platform
import sys

# Which ceiling each criterion group is held against.
CEILINGS = {
    "verify": ("verify_1core", "`openssl speed rsa2048` verify/s, one core"),
    "receipts": ("sign_1core", "`openssl speed rsa2048` sign/s, one core"),
    "signing": ("sign_1core", "`openssl speed rsa2048` sign/s, one core"),
    "enqueue_durable": ("fsync", "disk fdatasync/s"),
    "lease_ack": ("fsync", "disk fdatasync/s"),
    "disk": ("fsync", "disk fdatasync/s"),
}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def criterion_medians(root="target/criterion"):
    out = {}
    for estimates in glob.glob(f"{root}/*/*/new/estimates.json"):
        parts = estimates.split(os.sep)
        group, name = parts[-4], parts[-3]
        median_ns = load(estimates).get("median", {}).get("point_estimate")
        bench = load(os.path.join(os.path.dirname(estimates), "benchmark.json"))
        elements = (bench.get("throughput") or {}).get("Elements", 1)
        if median_ns:
            out[f"{group}/{name}"] = {"median_ns": median_ns, "elements": elements}
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect(work, label, commit, quick):
    speed = open(os.path.join(work, "speed.txt")).read().split()
    result = {
        "label": label,
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "sign_1core": float(speed[0]) if speed else None,
        "verify_1core": float(speed[1]) if len(speed) > 1 else None,
        "fsync": float(open(os.path.join(work, "fsync.txt")).read().strip()),
        "verify_ceiling": load(os.path.join(work, "verify.json")),
        "criterion": {} if quick == "1" else criterion_medians(),
        "accept": load(os.path.join(work, "accept.json")),
        "peak": load(os.path.join(work, "peak.json")),
        "half": load(os.path.join(work, "half.json")),
        "soak": load(os.path.join(work, "soak.json")),
    }
    json.dump(result, sys.stdout, indent=1)


def rate(x):
    return f"{x:,.0f}"


def ms(latency, key="p99_ms"):
    return f"{latency.get(key, 0):.1f} ms" if latency else "–"


def per_second(run):
    """Acknowledged documents per second of a `lienthong bench --json` run."""
    return run["acknowledged"] / run["seconds"]


def p99(run):
    """The end-to-end p99 of a `lienthong bench --json` run, ms."""
    return (run.get("end_to_end_latency") or {}).get("p99_ms", 0)


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def render(directory):
    runs = [load(p) for p in glob.glob(os.path.join(directory, "*.json"))]
    runs = sorted((r for r in runs if r), key=lambda r: r["date"])
    if not runs:
        sys.exit("no results")
    latest = runs[-1]
    full = [r for r in runs if r.get("criterion")]
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("Produced by `benches/run.sh` (this file is its output; do not edit by hand —")
    w("the notes at the end come from `benches/NOTES.md`). Every figure is shown")
    w("against a ceiling measured in the same run on the same machine.")
    w("")
    w(f"Machine of the latest run: {latest['cores']} cores, {latest['cpu']}; shared and noisy,")
    w("so figures move by ±10% between runs. The load generator runs on the same")
    w("cores as the gateway.")
    w("")
    w("## Headline: end-to-end documents/s against the verification ceiling")
    w("")
    w("A document is 10 KB with one detached RSA-2048 CAdES signature; it counts")
    w("once the gateway verified it (chain, CRLs, policy), made it durable, signed")
    w("its receipt, and the recipient received and acknowledged it durably. The")
    w("ceiling is the gateway's own full verification of that signature, in")
    w("process, on every core (`lienthong bench --verify-only`).")
    w("")
    w("| run | commit | date | verify ceiling, all cores | end-to-end docs/s | **ratio** | accept-only docs/s | p99 at half peak (e2e / accept) | memory over soak |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ceiling = r["verify_ceiling"].get("per_second", 0)
        peak = r["peak"].get("documents_per_second", 0)
        accept = r["accept"].get("documents_per_second", 0)
        half = r.get("half", {})
        soak = r.get("soak", {}).get("memory") or {}
        memory = (
            f"{soak['first_mib']:.0f} → {soak['last_mib']:.0f} MiB over {r['soak']['seconds']:.0f} s "
            f"(2nd half {soak['second_half_growth_mib']:+.1f} MiB)"
            if soak
            else "not run"
        )
        if soak.get("series_mib"):
            memory += "; at each tenth: " + ", ".join(f"{m:.0f}" for m in soak["series_mib"])
        ratio = peak / ceiling if ceiling else 0
        w(
            f"| {r['label']} | `{r['commit']}` | {r['date']} | {rate(ceiling)} /s | {rate(peak)} /s | "
            f"**{ratio:.2f}** | {rate(accept)} /s | "
            f"{ms(half.get('end_to_end_latency'))} / {ms(half.get('accept_latency'))} at {rate(half.get('offered_rate', 0))} /s | {memory} |"
        )
    w("")
    r = latest
    w(f"Latest run in detail (`{r['label']}`):")
    w("")
    w("| load | docs/s | MiB/s | p50 | p95 | p99 | max | errors | queue after |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name, key, lat in [
        ("peak, accept only (Send → receipt)", "accept", "accept_latency"),
        ("peak, end to end (Send → ack)", "peak", "end_to_end_latency"),
        ("half peak, end to end", "half", "end_to_end_latency"),
        ("half peak, accept latency", "half", "accept_latency"),
        ("soak, end to end", "soak", "end_to_end_latency"),
    ]:
        run = r.get(key) or {}
        if not run:
            continue
        l = run.get(lat) or {}
        errors = ", ".join(f"{k} {v}" for k, v in (run.get("errors") or {}).items()) or "none"
        q = run.get("queue_after") or {}
        queue = f"{q.get('waiting', '?')} waiting, {q.get('dead', '?')} dead" if q else "–"
        w(
            f"| {name} | {rate(run.get('documents_per_second', 0))} | {run.get('mib_per_second', 0):.1f} | "
            f"{ms(l, 'p50_ms')} | {ms(l, 'p95_ms')} | {ms(l, 'p99_ms')} | {ms(l, 'max_ms')} | {errors} | {queue} |"
        )
    w("")
    w("## Ceilings (latest run)")
    w("")
    w("| ceiling | rate |")
    w("|---|---|")
    w(f"| `openssl speed rsa2048` sign, one core (system `openssl` command) | {rate(r['sign_1core'] or 0)} /s |")
    w(f"| `openssl speed rsa2048` verify, one core | {rate(r['verify_1core'] or 0)} /s |")
    vc = r["verify_ceiling"]
    w(
        f"| gateway's full CMS verification (10 KB), {vc.get('threads', '?')} threads | "
        f"{rate(vc.get('per_second', 0))} /s ({rate(vc.get('per_second_per_thread', 0))} per thread; "
        f"{vc.get('per_second_per_thread', 0) / (r['verify_1core'] or 1):.3f} of raw RSA verify) |"
    )
    w(f"| disk: 4 KiB write + fdatasync, one after another | {rate(r['fsync'])} /s |")
    w("")
    if full:
        f = full[-1]
        w(f"## Micro-benchmarks (criterion medians, run `{f['label']}`, `{f['commit']}`)")
        w("")
        w("| benchmark | median per iteration | rate | ceiling | ratio |")
        w("|---|---|---|---|---|")
        for name in sorted(f["criterion"]):
            c = f["criterion"][name]
            per_s = c["elements"] * 1e9 / c["median_ns"]
            group = name.split("/")[0]
            ceiling = CEILINGS.get(group)
            if ceiling and f.get(ceiling[0]):
                value = f[ceiling[0]]
                ceiling_text, ratio = f"{rate(value)} /s ({ceiling[1]})", f"{per_s / value:.2f}"
            else:
                ceiling_text, ratio = "–", "–"
            w(f"| `{name}` | {fmt_time(c['median_ns'])} | {rate(per_s)} /s | {ceiling_text} | {ratio} |")
        w("")
    federation = sorted(
        (json.load(open(p)) for p in glob.glob(os.path.join(directory, "federation", "*.json"))),
        key=lambda r: r["date"],
    )
    if federation:
        w("## Federation: documents forwarded across gateways")
        w("")
        w("Written by `benches/federation.sh`. The same 10 KB documents with one signature")
        w("go from a department of province H56 through the national hub to a department")
        w("of H17: three release gateways on this machine, each verifying, storing durably")
        w("and giving custody before the next takes over; a document counts once H17's")
        w("recipient acknowledged it. The ceiling is one gateway's end-to-end figure in the")
        w("same run (Send → the recipient's ack at the same gateway).")
        w("")
        w("| commit | date | one gateway, acknowledged docs/s | H56 → hub → H17, acknowledged docs/s | **ratio** | p50 / p99 Send → ack at H17 | errors |")
        w("|---|---|---|---|---|---|---|")
        for r in federation:
            single, forwarded = r["single"], r["federation"]
            acked = lambda run: run["acknowledged"] / run["seconds"] if run["seconds"] else 0.0
            latency = forwarded.get("end_to_end_latency") or {}
            errors = sum(forwarded.get("errors", {}).values())
            ratio = acked(forwarded) / acked(single) if acked(single) else 0.0
            w(
                f"| `{r['commit']}` | {r['date']} | {acked(single):,.0f} /s "
                f"| {acked(forwarded):,.0f} /s | **{ratio:.2f}** "
                f"| {latency.get('p50_ms', 0):.1f} / {latency.get('p99_ms', 0):.1f} ms | {errors} |"
            )
        w("")
    pdf = sorted(
        (json.load(open(p)) for p in glob.glob(os.path.join(directory, "pdf", "*.json"))),
        key=lambda r: r["date"],
    )
    if pdf:
        w("## Signatures inside PDFs (PAdES)")
        w("")
        w("Written by `benches/pdf.sh`. Criterion medians of `benches/pdf.rs`, each set")
        w("against the detached CMS figure of the same 1 MB measured in the same run: a")
        w("PDF verification is two CMS checks (chain and CRLs each) plus reading three")
        w("revisions and comparing them; a PDF signature is one CMS signature plus the")
        w("incremental update around it.")
        w("")
        w("| commit | date | verify 1 MB PDF, two signatures | detached CMS verify 1 MB | **ratio** (PDF / two detached) | sign 1 MB PDF | detached CMS sign 1 MB | **ratio** |")
        w("|---|---|---|---|---|---|---|---|")
        for r in pdf:
            c = r["criterion_ns"]
            verify, detached = c["verify_1MB_two_signatures"], c["detached_cms_verify_1MB"]
            sign, detached_sign = c["sign_1MB"], c["detached_cms_sign_1MB"]
            w(
                f"| `{r['commit']}` | {r['date']} | {fmt_time(verify)} | {fmt_time(detached)} "
                f"| **{verify / (2 * detached):.2f}** | {fmt_time(sign)} | {fmt_time(detached_sign)} "
                f"| **{sign / detached_sign:.2f}** |"
            )
        w("")
        w("Memory of a release gateway, fresh for each call, for documents of 16 and 64")
        w("pages with a 1 MiB scan on each, sampled every 10 ms as RssAnon (the heap: the")
        w("PDF itself is read through a read-only map of its staged file, which the kernel")
        w("pages in and out): growth over the idle gateway, against the 1 MiB chunk and")
        w("the document. Growth that stays put while the document grows fourfold is")
        w("bounded by the chunk and the largest stream, not by the document.")
        w("")
        w("| commit | document | call | time | RssAnon growth | / chunk (1 MiB) | / document |")
        w("|---|---|---|---|---|---|---|")
        for r in pdf:
            for m in r.get("memory", []):
                for call, name in (("sign_pdf", "SignPdf (stage, sign, stream back)"),
                                   ("send_stream", "SendStream (stage, verify the seal, store)")):
                    c = m[call]
                    growth = max(0, c["peak_kib"] - c["baseline_kib"]) * 1024
                    w(
                        f"| `{r['commit']}` | {m['document_bytes'] / 2**20:.0f} MiB | {name} | {c['seconds']:.1f} s "
                        f"| {growth / 2**20:.1f} MiB | {growth / r['chunk_bytes']:.1f} "
                        f"| {growth / m['document_bytes']:.2f} |"
                    )
        w("")
    edxml = sorted(
        (json.load(open(p)) for p in glob.glob(os.path.join(directory, "edxml", "*.json"))),
        key=lambda r: r["date"],
    )
    if edxml:
        w("## edXML packages (QCVN 102:2016)")
        w("")
        w("Written by `benches/edxml.sh`. End to end (sent, verified, stored, rendered")
        w("for the recipient, acknowledged) with a 10 KB attachment, on a fresh release")
        w("gateway each: edXML packages with one enveloped XML signature (Edxml.Send in,")
        w("Edxml.Receive out) against gRPC envelopes with one detached CAdES signature,")
        w("the same count in the same run. An edXML package is parsed, canonicalized and")
        w("digested whole (the base64 too), its header kept, and rendered back to edXML")
        w("(base64 again) on delivery: in memory up to 1 MiB of attachments, through a")
        w("staging file above. Both runs share the 2 cores with the load generator, which")
        w("also reads every package whole.")
        w("")
        w("| commit | date | documents | envelope docs/s (p99) | edXML docs/s (p99) | **ratio** (edXML / envelope) | errors |")
        w("|---|---|---|---|---|---|---|")
        for r in edxml:
            e, x = r["envelope"], r["edxml"]
            errors = ", ".join(f"{k} {v}" for k, v in {**e["errors"], **x["errors"]}.items()) or "none"
            w(
                f"| `{r['commit']}` | {r['date']} | {x['acknowledged']:,} | {per_second(e):,.0f} /s ({p99(e):.1f} ms) "
                f"| {per_second(x):,.0f} /s ({p99(x):.1f} ms) | **{per_second(x) / per_second(e):.2f}** | {errors} |"
            )
        w("")
        w("Memory for one 50 MB attachment (the package is larger: base64), each call on a")
        w("fresh gateway, sampled every 10 ms as RssAnon (the heap; the staged package is")
        w("read through a read-only map): growth over the idle gateway, against the 1 MiB")
        w("chunk and the attachment.")
        w("")
        w("| commit | package | call | time | RssAnon growth | / chunk (1 MiB) | / attachment |")
        w("|---|---|---|---|---|---|---|")
        for r in edxml:
            for call, name in (("sign", "Edxml.Sign (stage, digest, sign, stream back)"),
                               ("send", "Edxml.Send (stage, decode, verify, store)"),
                               ("receive", "Edxml.Receive (render, stream out)")):
                c = r["memory"][call]
                growth = max(0, c["peak_kib"] - c["baseline_kib"]) * 1024
                w(
                    f"| `{r['commit']}` | {r['package_bytes'] / 2**20:.0f} MiB | {name} | {c['seconds']:.1f} s "
                    f"| {growth / 2**20:.1f} MiB | {growth / r['chunk_bytes']:.1f} "
                    f"| {growth / r['attachment_bytes']:.2f} |"
                )
        w("")
    postgres = sorted(
        (json.load(open(p)) for p in glob.glob(os.path.join(directory, "postgres", "*.json"))),
        key=lambda r: r["date"],
    )
    if postgres:
        w("## PostgreSQL engine against sled")
        w("")
        w("Written by `benches/postgres.sh`. End to end (sent, verified, stored,")
        w("delivered, acknowledged) with 10 KB documents and one CAdES signature, on a")
        w("fresh release gateway each: sled, then PostgreSQL 15 from a throwaway cluster on")
        w("the same machine. **The database shares the 2 cores** with the gateway and the")
        w("load generator; every write group is one transaction committed with")
        w("`synchronous_commit = on`, and every read a round trip over a Unix socket.")
        w("")
        w("| commit | date | documents | sled docs/s (p99) | PostgreSQL docs/s (p99) | **ratio** (PostgreSQL / sled) | errors |")
        w("|---|---|---|---|---|---|---|")
        for r in postgres:
            a, b = r["sled"], r["postgres"]
            errors = ", ".join(f"{k} {v}" for k, v in {**a["errors"], **b["errors"]}.items()) or "none"

            w(
                f"| `{r['commit']}` | {r['date']} | {b['acknowledged']:,} | {per_second(a):,.0f} /s ({p99(a):.1f} ms) "
                f"| {per_second(b):,.0f} /s ({p99(b):.1f} ms) | **{per_second(b) / per_second(a):.2f}** | {errors} |"
            )
        w("")
        w("Takeover: two gateways on one database, the active one killed with SIGKILL; the")
        w("time until the standby logs that it is the active one (it then serves at once),")
        w("against the lease (the bound: the lease runs out, then the standby's next try).")
        w("")
        w("| commit | lease | cycles | median | max | **max / lease** |")
        w("|---|---|---|---|---|---|")
        for r in postgres:
            t = sorted(r["takeover_ms"])
            if not t:
                continue
            median = t[len(t) // 2]
            w(
                f"| `{r['commit']}` | {r['lease_seconds']} s | {len(t)} | {median / 1000:.2f} s | {t[-1] / 1000:.2f} s "
                f"| **{t[-1] / 1000 / r['lease_seconds']:.2f}** |"
            )
        w("")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes):
        w(open(notes).read().rstrip())
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(*sys.argv[2:6])
    elif sys.argv[1] == "render":
        render(sys.argv[2])
    else:
        sys.exit("usage: report.py collect WORK LABEL COMMIT QUICK | render DIR")
