//! Verifies every signature field of a PDF: the byte range against the
//! bytes, the CMS through the same verifier as detached signatures, and
//! what the revisions after each signature changed.

use lienthong_domain::report::{Check, Embedded, Report, SubIndication};
use lienthong_pki::{SignerLookup, Verifier};
use lopdf::{Dictionary, Document, Object};

use crate::{
    Limits, PdfError,
    changes::{Change, changes},
    parse::{self, Revision, SignatureField},
};

type Failure = (SubIndication, String);

/// The checks made on the PDF's structure before the CMS.
struct Structural {
    checks: Vec<Check>,
    failure: Option<Failure>,
}

impl Structural {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            passed: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, name: &str, sub: SubIndication, detail: impl Into<String>) {
        let detail = detail.into();
        self.checks.push(Check {
            name: name.to_owned(),
            passed: false,
            detail: detail.clone(),
        });
        if self.failure.is_none() {
            self.failure = Some((sub, detail));
        }
    }
}

/// Verifies every signature embedded in the PDF `bytes`: one report per
/// signature field that holds a signature, oldest revision first. A PDF
/// without signatures yields no reports; one that cannot be read, an error.
pub fn verify(
    bytes: &[u8],
    verifier: &Verifier,
    attachment: &str,
    lookup: SignerLookup<'_>,
    limits: &Limits,
) -> Result<Vec<Report>, PdfError> {
    let revisions = parse::revisions(bytes, limits)?;
    let Some(last) = revisions.last() else {
        return Err(PdfError::Unreadable("no revision could be read".to_owned()));
    };
    let fields = parse::signature_fields(&last.document, limits)?;
    if fields.iter().all(|f| f.value.is_none() && !f.inline_value) {
        return Ok(Vec::new());
    }
    // What each revision changed, against the one before.
    let changed: Vec<Vec<Change>> = revisions
        .windows(2)
        .map(|pair| changes(&pair[0].document, &pair[1].document))
        .collect();
    let mut reports = Vec::new();
    for field in &fields {
        if let Some(report) = verify_field(
            bytes, verifier, attachment, lookup, &revisions, &changed, field,
        ) {
            reports.push(report);
        }
    }
    reports.sort_by_key(|r| r.embedded.as_ref().map_or(0, |e| e.revision));
    Ok(reports)
}

/// Where a ByteRange is: `[0 a b c]`.
struct ByteRange {
    a: usize,
    b: usize,
    c: usize,
}

fn byte_range(dict: &Dictionary, length: usize) -> Result<ByteRange, String> {
    let Ok(Object::Array(items)) = dict.get(b"ByteRange") else {
        return Err("the signature has no /ByteRange array".to_owned());
    };
    let numbers: Vec<i64> = items.iter().filter_map(|o| o.as_i64().ok()).collect();
    if items.len() != 4 || numbers.len() != 4 {
        return Err(format!(
            "/ByteRange must be four integers [0 a b c]; it has {} entries",
            items.len()
        ));
    }
    let as_usize = |n: i64| usize::try_from(n).map_err(|_| format!("/ByteRange holds {n}"));
    let (start, a, b, c) = (
        numbers[0],
        as_usize(numbers[1])?,
        as_usize(numbers[2])?,
        as_usize(numbers[3])?,
    );
    if start != 0 {
        return Err(format!("/ByteRange starts at byte {start}, not 0"));
    }
    if a == 0 || b <= a + 1 || b.checked_add(c).is_none_or(|end| end > length) {
        return Err(format!(
            "/ByteRange [0 {a} {b} {c}] does not fit a {length}-byte file with a hole between the ranges"
        ));
    }
    Ok(ByteRange { a, b, c })
}

/// The DER length of the ASN.1 value at the start of `bytes`.
fn der_length(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let mut length = 0usize;
    for byte in bytes.get(2..2 + count)? {
        length = (length << 8) | usize::from(*byte);
    }
    Some(2 + count + length)
}

/// Seconds since the epoch of a PDF date (`D:YYYYMMDDHHmmSSOHH'mm'`).
pub(crate) fn pdf_date(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_prefix("D:").unwrap_or(text);
    let digits = |from: usize, len: usize, default: i64| -> Option<i64> {
        match text.get(from..from + len) {
            Some(part) if part.bytes().all(|b| b.is_ascii_digit()) => part.parse().ok(),
            Some(_) => None,
            None => Some(default),
        }
    };
    let year = digits(0, 4, -1)?;
    if year < 0 {
        return None;
    }
    let (month, day) = (digits(4, 2, 1)?, digits(6, 2, 1)?);
    let (hour, minute, second) = (digits(8, 2, 0)?, digits(10, 2, 0)?, digits(12, 2, 0)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = match text.get(14..15) {
        Some(sign @ ("+" | "-")) => {
            let rest = text[15..].replace('\'', "");
            let hours: i64 = rest.get(0..2)?.parse().ok()?;
            let minutes: i64 = rest.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
            let seconds = hours * 3600 + minutes * 60;
            if sign == "+" { seconds } else { -seconds }
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// The DocMDP permission a certification signature sets (1: no changes).
pub(crate) fn doc_mdp_of(document: &Document, signature: &Dictionary) -> Option<i64> {
    let Ok(Object::Array(references)) = signature
        .get(b"Reference")
        .map(|r| parse::resolve(document, r))
    else {
        return None;
    };
    references.iter().find_map(|reference| {
        let reference = parse::dict(document, reference)?;
        if parse::name(document, reference, b"TransformMethod") != Some(b"DocMDP") {
            return None;
        }
        let permission = reference
            .get(b"TransformParams")
            .ok()
            .and_then(|p| parse::dict(document, p))
            .and_then(|p| p.get(b"P").ok())
            .and_then(|p| p.as_i64().ok());
        Some(permission.unwrap_or(2))
    })
}

#[allow(clippy::too_many_arguments)]
fn verify_field(
    bytes: &[u8],
    verifier: &Verifier,
    attachment: &str,
    lookup: SignerLookup<'_>,
    revisions: &[Revision],
    changed: &[Vec<Change>],
    field: &SignatureField,
) -> Option<Report> {
    let last = &revisions.last()?.document;
    let mut structural = Structural {
        checks: Vec::new(),
        failure: None,
    };
    let mut embedded = Embedded {
        field: field.name.clone(),
        revision: 0,
        revisions: u32::try_from(revisions.len()).unwrap_or(u32::MAX),
        whole_document: false,
    };
    let failed = |structural: Structural, embedded: Embedded| {
        let (sub, message) = structural.failure.clone().unwrap_or((
            SubIndication::FormatFailure,
            "the signature could not be read".to_owned(),
        ));
        Some(Report {
            attachment: attachment.to_owned(),
            indication: sub.indication(),
            sub_indication: Some(sub),
            message: format!("signature field {:?}: {message}", embedded.field),
            signer: None,
            checks: structural.checks,
            verified_at: verifier.now(),
            embedded: Some(embedded),
        })
    };
    if field.inline_value {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            "the signature dictionary is written inline in its field, so its place in the file cannot be checked",
        );
        return failed(structural, embedded);
    }
    let id = field.value?;
    let Some(signature) = last.objects.get(&id).and_then(|o| o.as_dict().ok()) else {
        structural.fail(
            "format",
            SubIndication::FormatFailure,
            format!(
                "the field's value (object {} {}) is not a signature dictionary",
                id.0, id.1
            ),
        );
        return failed(structural, embedded);
    };
    if signature.has_type(b"DocTimeStamp") {
        // A document time-stamp vouches for time, not for a signer.
        return None;
    }
    match parse::name(last, signature, b"SubFilter") {
        Some(b"ETSI.CAdES.detached") => {
            structural.pass("sub_filter", "ETSI.CAdES.detached (PAdES)")
        }
        Some(b"adbe.pkcs7.detached") => structural.pass(
            "sub_filter",
            "adbe.pkcs7.detached: accepted, but PAdES signatures should use ETSI.CAdES.detached",
        ),
        other => {
            structural.fail(
                "sub_filter",
                SubIndication::FormatFailure,
                format!(
                    "SubFilter {} is not supported (ETSI.CAdES.detached or adbe.pkcs7.detached)",
                    other.map_or("(none)".to_owned(), |n| format!(
                        "/{}",
                        String::from_utf8_lossy(n)
                    ))
                ),
            );
            return failed(structural, embedded);
        }
    }
    // The byte range, against the bytes.
    let range = match byte_range(signature, bytes.len()) {
        Ok(range) => range,
        Err(why) => {
            structural.fail("byte_range", SubIndication::FormatFailure, why);
            return failed(structural, embedded);
        }
    };
    let end = range.b + range.c;
    let hole = &bytes[range.a..range.b];
    let hex_ok = hole.first() == Some(&b'<')
        && hole.last() == Some(&b'>')
        && hole[1..hole.len() - 1].iter().all(u8::is_ascii_hexdigit);
    // lopdf counts offsets from the `%PDF-` header; the byte range counts
    // from the file's first byte.
    let at = parse::offset_of(last, id).map(|offset| offset + parse::header_offset(bytes));
    let placed = at.is_some_and(|start| {
        start < range.a
            && parse::find(&bytes[start..range.a], b"endobj").is_none()
            && bytes[start..range.a]
                .trim_ascii_end()
                .ends_with(b"/Contents")
    });
    let Some(revision) = revisions
        .iter()
        .position(|r| r.end == end || r.bare_end == end)
    else {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            format!("the signed ranges end at byte {end}, which is not the end of a revision: the signature does not cover a whole revision"),
        );
        return failed(structural, embedded);
    };
    embedded.revision = u32::try_from(revision + 1).unwrap_or(u32::MAX);
    embedded.whole_document = revision + 1 == revisions.len();
    if !hex_ok {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            format!("the hole between the signed ranges (bytes {}..{}) holds more than the hex /Contents string", range.a, range.b),
        );
        return failed(structural, embedded);
    }
    if !placed {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            "the hole between the signed ranges is not this signature's /Contents (signature wrapping)",
        );
        return failed(structural, embedded);
    }
    // An odd count of hex digits ends with an implied 0; the last digit
    // is padding in any signature this could match.
    let digits = &hole[1..hole.len() - 1];
    let Ok(contents) = hex::decode(&digits[..digits.len() - digits.len() % 2]) else {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            "/Contents is not hex",
        );
        return failed(structural, embedded);
    };
    let parsed = signature
        .get(b"Contents")
        .ok()
        .and_then(|c| c.as_str().ok());
    if parsed.is_none_or(|p| p != contents.as_slice()) {
        structural.fail(
            "byte_range",
            SubIndication::FormatFailure,
            "the signature's /Contents is not the string in the hole between the signed ranges (signature wrapping)",
        );
        return failed(structural, embedded);
    }
    structural.pass(
        "byte_range",
        format!(
            "[0 {} {} {}]: the whole of revision {} of {} but the /Contents hole",
            range.a,
            range.b,
            range.c,
            revision + 1,
            revisions.len()
        ),
    );
    // What came after.
    let certification = doc_mdp_of(last, signature);
    let mut after = Vec::new();
    for (index, revision_changes) in changed.iter().enumerate().skip(revision) {
        for change in revision_changes {
            let forbidden = match change {
                Change::Forbidden(what) => Some(what),
                Change::Signature(what) if certification == Some(1) => Some(what),
                Change::Signature(_) => None,
            };
            if let Some(what) = forbidden {
                after.push(format!("revision {}: {what}", index + 2));
            }
        }
    }
    if after.is_empty() {
        structural.pass(
            "modifications",
            if embedded.whole_document {
                "the signature covers the whole document".to_owned()
            } else {
                format!(
                    "revisions {}..{} only add signatures, their appearances or validation data",
                    revision + 2,
                    revisions.len()
                )
            },
        );
    } else {
        let why = if certification == Some(1) {
            "modified after a certification signature that allows no change (DocMDP P=1)"
        } else {
            "modified after signing"
        };
        structural.fail(
            "modifications",
            SubIndication::FormatFailure,
            format!("{why}: {}", after.join("; ")),
        );
    }
    // The CMS, over the two ranges, as any detached signature.
    let der = match der_length(&contents) {
        Some(length) if length <= contents.len() => &contents[..length],
        _ => contents.as_slice(),
    };
    let claimed = signature
        .get(b"M")
        .ok()
        .and_then(|m| m.as_str().ok())
        .and_then(pdf_date);
    let parts = [&bytes[..range.a], &bytes[range.b..end]];
    let mut reports = verifier.verify_embedded(&parts, der, attachment, lookup, claimed);
    let mut report = if reports.len() == 1 {
        reports.remove(0)
    } else {
        structural.fail(
            "format",
            SubIndication::FormatFailure,
            format!(
                "a PDF signature must have exactly one signer; this CMS has {}",
                reports.len()
            ),
        );
        return failed(structural, embedded);
    };
    let mut checks = structural.checks;
    let modifications = checks.pop();
    checks.append(&mut report.checks);
    checks.extend(modifications);
    report.checks = checks;
    if let Some((sub, sentence)) = structural.failure {
        report.indication = sub.indication();
        report.sub_indication = Some(sub);
        report.message = sentence;
    }
    report.message = format!("signature field {:?}: {}", field.name, report.message);
    report.embedded = Some(embedded);
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_dates_read_as_utc() {
        assert_eq!(pdf_date(b"D:20261202133748Z"), Some(1_796_218_668));
        assert_eq!(pdf_date(b"D:20261202203748+07'00'"), Some(1_796_218_668));
        assert_eq!(pdf_date(b"D:20261202"), Some(1_796_169_600));
        assert_eq!(pdf_date(b"D:2026130100"), None);
        assert_eq!(pdf_date(b"garbage"), None);
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_length(&[0x30, 0x03, 1, 2, 3, 0, 0]), Some(5));
        assert_eq!(der_length(&[0x30, 0x82, 0x01, 0x00]), Some(4 + 256));
        assert_eq!(der_length(&[0x30]), None);
    }
}
