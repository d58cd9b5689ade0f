//! PDFs made in the tests: a hand-written one (cross-reference table), one
//! with an object stream and a cross-reference stream, incremental updates
//! an attacker would append, and a signature made by hand with the
//! `openssl cms` command over byte ranges the test chooses.

#![allow(dead_code)]

use std::path::Path;

/// Appends `N 0 obj … endobj` for each (number, body): where each starts.
fn write_objects(out: &mut Vec<u8>, objects: &[(u32, Vec<u8>)]) -> Vec<(u32, usize)> {
    let mut offsets = Vec::new();
    for (id, body) in objects {
        offsets.push((*id, out.len()));
        out.extend_from_slice(format!("{id} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    offsets
}

/// A PDF assembled from numbered object bodies with a classic
/// cross-reference table; object 1 is the catalog.
pub fn with_table(objects: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let offsets = write_objects(&mut out, objects);
    let size = objects.iter().map(|(id, _)| id + 1).max().unwrap_or(1);
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f\r\n").as_bytes());
    for id in 1..size {
        let offset = offsets
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(0, |(_, o)| *o);
        out.extend_from_slice(format!("{offset:010} 00000 n\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

fn stream(content: &[u8]) -> Vec<u8> {
    let mut body = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\nendstream");
    body
}

/// The text drawn on page 1.
pub const TEXT: &str = "Cong van so 123/UBND-VP";

/// A one-page official letter, hand-written (cross-reference table).
/// `padding` bytes of an unused image-like stream make it as large as a test
/// needs.
pub fn hand_written(padding: usize) -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 72 720 Td ({TEXT}) Tj ET");
    let mut objects = vec![
        (1, b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()),
        (2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec()),
        (
            3,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        ),
        (4, stream(content.as_bytes())),
        (
            5,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        ),
    ];
    if padding > 0 {
        let filler: Vec<u8> = (0..padding).map(|i| (i * 7 % 251) as u8).collect();
        objects.push((6, stream(&filler)));
    }
    with_table(&objects)
}

/// The same letter with its catalog, pages, page and font inside an object
/// stream and a cross-reference stream (as PDF 1.5+ writers make them).
pub fn with_xref_stream() -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 72 720 Td ({TEXT}) Tj ET");
    let members: [(u32, &[u8]); 4] = [
        (1, b"<< /Type /Catalog /Pages 2 0 R >>"),
        (2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
        (
            3,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        ),
        (5, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"),
    ];
    let mut header = String::new();
    let mut bodies = Vec::new();
    for (id, body) in members {
        header.push_str(&format!("{id} {} ", bodies.len()));
        bodies.extend_from_slice(body);
        bodies.push(b' ');
    }
    let first = header.len();
    let mut object_stream = header.into_bytes();
    object_stream.extend_from_slice(&bodies);
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let content_at = out.len();
    out.extend_from_slice(b"4 0 obj\n");
    out.extend_from_slice(&stream(content.as_bytes()));
    out.extend_from_slice(b"\nendobj\n");
    let objstm_at = out.len();
    out.extend_from_slice(
        format!(
            "6 0 obj\n<< /Type /ObjStm /N 4 /First {first} /Length {} >>\nstream\n",
            object_stream.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&object_stream);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    let xref_at = out.len();
    // Types: 0 free, 1 at an offset, 2 inside object stream 6.
    let mut rows = vec![(0u8, 0u32, 65535u16)];
    for index in 0..3u16 {
        rows.push((2, 6, index));
    }
    rows.push((1, content_at as u32, 0));
    rows.push((2, 6, 3));
    rows.push((1, objstm_at as u32, 0));
    rows.push((1, xref_at as u32, 0));
    let mut data = Vec::new();
    for (kind, field2, field3) in rows {
        data.push(kind);
        data.extend_from_slice(&field2.to_be_bytes());
        data.extend_from_slice(&field3.to_be_bytes());
    }
    out.extend_from_slice(
        format!(
            "7 0 obj\n<< /Type /XRef /Size 8 /W [1 4 2] /Root 1 0 R /Length {} >>\nstream\n",
            data.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&data);
    out.extend_from_slice(format!("\nendstream\nendobj\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    out
}

fn last_number_after(pdf: &[u8], key: &[u8]) -> u64 {
    let at = pdf
        .windows(key.len())
        .rposition(|w| w == key)
        .expect("key present");
    let digits: String = pdf[at + key.len()..]
        .iter()
        .map(|b| *b as char)
        .skip_while(|c| c.is_whitespace())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a number")
}

/// Appends an incremental update (cross-reference table) with `objects`
/// (number, body): what an attacker, or an ordinary editor, writes after a
/// signature. `extra` objects get fresh numbers from the trailer's /Size.
pub fn append_update(pdf: &[u8], objects: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let prev = last_number_after(pdf, b"startxref");
    let size = last_number_after(pdf, b"/Size") as u32;
    let mut out = pdf.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let mut offsets = write_objects(&mut out, objects);
    offsets.sort();
    let xref = out.len();
    out.extend_from_slice(b"xref\n");
    for (id, offset) in &offsets {
        out.extend_from_slice(format!("{id} 1\n{offset:010} 00000 n\r\n").as_bytes());
    }
    let size = size.max(offsets.iter().map(|(id, _)| id + 1).max().unwrap_or(0));
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root 1 0 R /Prev {prev} >>\nstartxref\n{xref}\n%%EOF\n")
            .as_bytes(),
    );
    out
}

/// The next free object number of a PDF (its last trailer's /Size).
pub fn next_object(pdf: &[u8]) -> u32 {
    last_number_after(pdf, b"/Size") as u32
}

/// The body of the indirect object `id` as last written in the file.
pub fn object_body(pdf: &[u8], id: u32) -> Vec<u8> {
    let marker = format!("\n{id} 0 obj\n");
    let at = pdf
        .windows(marker.len())
        .rposition(|w| w == marker.as_bytes())
        .expect("object present")
        + marker.len();
    let end = at
        + pdf[at..]
            .windows(7)
            .position(|w| w == b"\nendobj")
            .expect("endobj");
    pdf[at..end].to_vec()
}

/// A signature made by hand: an update with a signature field (number
/// `next`, `next + 1`) whose /Contents is followed, inside the hole the
/// byte range leaves, by `in_hole` (empty for an honest signature), signed
/// by `identity` with `openssl cms` over exactly the two ranges.
pub fn hand_signed(base: &[u8], identity: &Path, agency_ca: &Path, in_hole: &[u8]) -> Vec<u8> {
    hand_signed_as(base, identity, agency_ca, in_hole, false)
}

/// [`hand_signed`], as a certification signature allowing no change
/// (DocMDP P=1) when `certify_no_changes`.
pub fn hand_signed_as(
    base: &[u8],
    identity: &Path,
    agency_ca: &Path,
    in_hole: &[u8],
    certify_no_changes: bool,
) -> Vec<u8> {
    const RESERVE: usize = 8192;
    let next = next_object(base);
    let (sig, field) = (next, next + 1);
    let placeholder = "[0 0000000000 0000000000 0000000000]";
    let reference = if certify_no_changes {
        "/Reference [<< /Type /SigRef /TransformMethod /DocMDP /TransformParams << /Type /TransformParams /P 1 /V /1.2 >> >>] "
    } else {
        ""
    };
    let mut signature = format!(
        "<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M (D:20261202090000Z) {reference}/ByteRange {placeholder} /Contents <"
    )
    .into_bytes();
    signature.extend(std::iter::repeat_n(b'0', 2 * RESERVE));
    signature.push(b'>');
    signature.extend_from_slice(in_hole);
    signature.extend_from_slice(b" >>");
    let perms = if certify_no_changes {
        format!(" /Perms << /DocMDP {sig} 0 R >>")
    } else {
        String::new()
    };
    let catalog = format!(
        "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [{field} 0 R] /SigFlags 3 >>{perms} >>"
    );
    let widget = format!(
        "<< /FT /Sig /T (Hand) /V {sig} 0 R /Type /Annot /Subtype /Widget /F 132 /Rect [0 0 0 0] /P 3 0 R >>"
    );
    let page = format!(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> /Annots [{field} 0 R] >>"
    );
    let mut pdf = append_update(
        base,
        &[
            (1, catalog.into_bytes()),
            (3, page.into_bytes()),
            (sig, signature),
            (field, widget.into_bytes()),
        ],
    );
    let find = |needle: &[u8]| {
        pdf.windows(needle.len())
            .rposition(|w| w == needle)
            .expect("in the file")
    };
    let a = find(b"/Contents <") + b"/Contents ".len();
    let b = a + 2 * RESERVE + 2 + in_hole.len();
    let c = pdf.len() - b;
    let range = format!("[0 {a} {b} {c}]");
    let mut padded = range.into_bytes();
    padded.resize(placeholder.len(), b' ');
    let at = find(placeholder.as_bytes());
    pdf[at..at + padded.len()].copy_from_slice(&padded);
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = dir.path().join("ranges");
    let mut ranges = pdf[..a].to_vec();
    ranges.extend_from_slice(&pdf[b..]);
    std::fs::write(&signed, ranges).expect("write ranges");
    let cms = dir.path().join("cms");
    let status = std::process::Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-cades", "-outform", "DER", "-in",
        ])
        .arg(&signed)
        .arg("-signer")
        .arg(identity.with_extension("crt"))
        .arg("-inkey")
        .arg(identity.with_extension("key"))
        .arg("-certfile")
        .arg(agency_ca)
        .arg("-out")
        .arg(&cms)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl cms -sign over the ranges");
    let hex = hex::encode_upper(std::fs::read(&cms).expect("cms"));
    assert!(hex.len() <= 2 * RESERVE, "signature fits the reserve");
    pdf[a + 1..a + 1 + hex.len()].copy_from_slice(hex.as_bytes());
    pdf
}
