#!/usr/bin/env python3
"""Makes the README's sample công văn (cong-van.pdf, one page, written by
hand with a cross-reference table) and a red seal image (con-dau.png, RGBA
with transparency). Standard library only; run from anywhere."""
import os
import struct
import zlib

here = os.path.dirname(os.path.abspath(__file__))

text = b"BT /F1 16 Tf 72 760 Td (UBND TINH KHANH HOA - SO TAI CHINH) Tj 0 -28 Td (So 15/CV-STC: ve viec trien khai chuyen doi so) Tj ET"
objects = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
    b"/Resources << /Font << /F1 5 0 R >> >> >>",
    b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
]
pdf = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
offsets = []
for number, body in enumerate(objects, 1):
    offsets.append(len(pdf))
    pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
xref = len(pdf)
pdf += b"xref\n0 %d\n0000000000 65535 f\r\n" % (len(objects) + 1)
for offset in offsets:
    pdf += b"%010d 00000 n\r\n" % offset
pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
with open(os.path.join(here, "cong-van.pdf"), "wb") as out:
    out.write(pdf)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


size = 96
rows = []
for y in range(size):
    row = bytearray(b"\x00")
    for x in range(size):
        d = ((x - size / 2) ** 2 + (y - size / 2) ** 2) ** 0.5
        ring = size * 0.40 < d < size * 0.47 or d < size * 0.12
        row += bytes([200, 16, 16, 255 if ring else 0])
    rows.append(bytes(row))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
with open(os.path.join(here, "con-dau.png"), "wb") as out:
    out.write(png)
