//! Signs a PDF with an incremental update: a new signature field (with a
//! visible appearance from a PNG, or invisible), the form and page updated
//! to name it, and a CAdES detached CMS over the whole file but the
//! `/Contents` hole. Everything before the update stays byte for byte, so
//! signatures made earlier (the head's, elsewhere) stay valid.

use std::io::Write;

use lienthong_pki::SigningKey;
use lopdf::{Dictionary, Document, Object, ObjectId, StringFormat, Writer};
use sha2::{Digest, Sha256};

use crate::{Limits, PdfError, parse};

/// A visible signature: an image drawn in a rectangle of a page.
#[derive(Debug, Clone)]
pub struct Appearance {
    /// The image, PNG (transparency kept: a red seal over the text).
    pub png: Vec<u8>,
    /// The page, from 1.
    pub page: u32,
    /// The rectangle `[x1, y1, x2, y2]`, in PDF points from the page's
    /// lower left corner.
    pub rect: [f32; 4],
}

/// What to sign and how.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// The new field's name; `Signature1`, `Signature2`… when not given.
    pub field: Option<String>,
    /// Why it is signed (`/Reason`).
    pub reason: Option<String>,
    /// The visible appearance; invisible when `None`.
    pub appearance: Option<Appearance>,
    /// The signing time written as `/M`, seconds since the epoch.
    pub signing_time: i64,
}

/// What [`sign`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The field the signature is in.
    pub field: String,
    /// The revision the signature covers (the one appended).
    pub revision: u32,
}

/// Most decoded bytes a signature image may have (a 4000×4000 RGBA image).
const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

fn body(object: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = Writer::write_object(&mut out, object);
    out
}

fn pdf_time(seconds: i64) -> String {
    let text = lienthong_domain::clock::format_rfc3339(seconds.saturating_mul(1000));
    let digits: String = text.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("D:{digits}Z")
}

/// A name unused by the form's fields.
fn field_name(
    document: &Document,
    wanted: Option<&str>,
    limits: &Limits,
) -> Result<String, PdfError> {
    let existing: Vec<String> = parse::signature_fields(document, limits)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let taken = |name: &str| {
        existing.iter().any(|e| e == name) || top_level_names(document).iter().any(|e| e == name)
    };
    match wanted {
        Some(name) => {
            if name.is_empty() || name.contains('.') || name.len() > 128 {
                return Err(PdfError::Refused(format!(
                    "field name {name:?} must be 1-128 characters without '.'"
                )));
            }
            if taken(name) {
                return Err(PdfError::Refused(format!(
                    "the PDF already has a field named {name:?}; choose another with --field"
                )));
            }
            Ok(name.to_owned())
        }
        None => (1..=limits.max_fields)
            .map(|n| format!("Signature{n}"))
            .find(|n| !taken(n))
            .ok_or(PdfError::TooManyFields(limits.max_fields)),
    }
}

fn top_level_names(document: &Document) -> Vec<String> {
    let Some((_, catalog)) = parse::catalog(document) else {
        return Vec::new();
    };
    let Some(form) = catalog
        .get(b"AcroForm")
        .ok()
        .and_then(|f| parse::dict(document, f))
    else {
        return Vec::new();
    };
    match form
        .get(b"Fields")
        .ok()
        .map(|f| parse::resolve(document, f))
    {
        Some(Object::Array(fields)) => fields
            .iter()
            .filter_map(|f| parse::dict(document, f))
            .filter_map(|f| parse::text(document, f, b"T"))
            .collect(),
        _ => Vec::new(),
    }
}

/// An image XObject (and its soft mask) from a PNG.
struct Image {
    width: u32,
    height: u32,
    gray: bool,
    color: Vec<u8>,
    alpha: Option<Vec<u8>>,
}

fn decode_png(png_bytes: &[u8]) -> Result<Image, PdfError> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(png_bytes),
        png::Limits {
            bytes: MAX_IMAGE_BYTES,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| PdfError::Image(format!("not a PNG: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| PdfError::Image("the image is too large".to_owned()))?;
    let mut buffer = vec![0; size];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| PdfError::Image(format!("decoding: {e}")))?;
    buffer.truncate(frame.buffer_size());
    let (channels, gray, has_alpha) = match frame.color_type {
        png::ColorType::Grayscale => (1, true, false),
        png::ColorType::GrayscaleAlpha => (2, true, true),
        png::ColorType::Rgb => (3, false, false),
        png::ColorType::Rgba => (4, false, true),
        png::ColorType::Indexed => {
            return Err(PdfError::Image(
                "indexed colours were not expanded".to_owned(),
            ));
        }
    };
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(PdfError::Image(format!(
            "{:?}-bit samples are not supported; use 8-bit",
            frame.bit_depth
        )));
    }
    let color_channels = if gray { 1 } else { 3 };
    let pixels = buffer.len() / channels;
    let mut color = Vec::with_capacity(pixels * color_channels);
    let mut alpha = has_alpha.then(|| Vec::with_capacity(pixels));
    for pixel in buffer.chunks_exact(channels) {
        color.extend_from_slice(&pixel[..color_channels]);
        if let Some(alpha) = alpha.as_mut() {
            alpha.push(pixel[channels - 1]);
        }
    }
    Ok(Image {
        width: frame.width,
        height: frame.height,
        gray,
        color,
        alpha,
    })
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn image_stream(
    width: u32,
    height: u32,
    gray: bool,
    samples: &[u8],
    mask: Option<ObjectId>,
) -> Object {
    let mut dict = Dictionary::new();
    dict.set("Type", Object::Name(b"XObject".to_vec()));
    dict.set("Subtype", Object::Name(b"Image".to_vec()));
    dict.set("Width", i64::from(width));
    dict.set("Height", i64::from(height));
    dict.set(
        "ColorSpace",
        Object::Name(if gray {
            b"DeviceGray".to_vec()
        } else {
            b"DeviceRGB".to_vec()
        }),
    );
    dict.set("BitsPerComponent", 8);
    dict.set("Filter", Object::Name(b"FlateDecode".to_vec()));
    if let Some(mask) = mask {
        dict.set("SMask", Object::Reference(mask));
    }
    Object::Stream(lopdf::Stream::new(dict, deflate(samples)).with_compression(false))
}

/// Bytes of the update being written, with where each object starts.
struct Update {
    base: usize,
    bytes: Vec<u8>,
    offsets: Vec<(ObjectId, usize)>,
}

impl Update {
    fn object(&mut self, id: ObjectId, body: &[u8]) {
        self.offsets.push((id, self.base + self.bytes.len()));
        self.bytes
            .extend_from_slice(format!("{} {} obj\n", id.0, id.1).as_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes.extend_from_slice(b"\nendobj\n");
    }
}

/// Appends `item` to the array `holder[key]` is or names: answers the
/// objects to rewrite (the holder, or the array it references).
fn append_to_array(
    document: &Document,
    holder: &mut Dictionary,
    key: &[u8],
    item: Object,
) -> Result<Option<(ObjectId, Object)>, PdfError> {
    match holder.get(key) {
        Ok(Object::Reference(id)) => {
            let id = *id;
            match document.objects.get(&id) {
                Some(Object::Array(items)) => {
                    let mut items = items.clone();
                    items.push(item);
                    Ok(Some((id, Object::Array(items))))
                }
                _ => Err(PdfError::Refused(format!(
                    "/{} names object {} {}, which is not an array",
                    String::from_utf8_lossy(key),
                    id.0,
                    id.1
                ))),
            }
        }
        Ok(Object::Array(items)) => {
            let mut items = items.clone();
            items.push(item);
            holder.set(key.to_vec(), Object::Array(items));
            Ok(None)
        }
        Ok(_) => Err(PdfError::Refused(format!(
            "/{} is not an array",
            String::from_utf8_lossy(key)
        ))),
        Err(_) => {
            holder.set(key.to_vec(), Object::Array(vec![item]));
            Ok(None)
        }
    }
}

/// Adds the new field to the form's field list and marks the form as
/// signed (SigFlags 3): answers the field list's object when it is one of
/// its own and changed.
fn name_the_field(
    document: &Document,
    form: &mut Dictionary,
    field: &Object,
) -> Result<Option<(ObjectId, Object)>, PdfError> {
    let array = append_to_array(document, form, b"Fields", field.clone())?;
    form.set("SigFlags", 3);
    Ok(array)
}

/// Signs the PDF `input` with `key`: returns the bytes to append to it
/// (the new revision, signature filled in) and what was signed. Memory is
/// the update's size (the reserve and the image), not the document's.
pub fn sign(
    input: &[u8],
    key: &SigningKey,
    options: &SignOptions,
    limits: &Limits,
) -> Result<(Vec<u8>, Signed), PdfError> {
    if parse::header_offset(input) != 0 {
        return Err(PdfError::Refused(
            "the file has bytes before its %PDF- header; save it again from a PDF tool, then sign"
                .to_owned(),
        ));
    }
    let revisions = parse::revisions(input, limits)?;
    let Some(last) = revisions.last() else {
        return Err(PdfError::Unreadable("no revision could be read".to_owned()));
    };
    let document = &last.document;
    for field in parse::signature_fields(document, limits)? {
        let certified = field
            .value
            .and_then(|id| document.objects.get(&id))
            .and_then(|o| o.as_dict().ok())
            .and_then(|sig| crate::verify::doc_mdp_of(document, sig));
        if certified == Some(1) {
            return Err(PdfError::Refused(format!(
                "the document is certified by signature field {:?} with no changes allowed (DocMDP P=1); it cannot be signed again",
                field.name
            )));
        }
    }
    let name = field_name(document, options.field.as_deref(), limits)?;
    let (root, catalog) = parse::catalog(document)
        .ok_or_else(|| PdfError::Unreadable("the trailer names no catalog".to_owned()))?;
    let pages = document.get_pages();
    let page_number = options.appearance.as_ref().map_or(1, |a| a.page);
    let page_id = *pages.get(&page_number).ok_or_else(|| {
        PdfError::Refused(format!(
            "page {page_number} does not exist; the document has {} page(s)",
            pages.len()
        ))
    })?;
    let size = document
        .trailer
        .get(b"Size")
        .ok()
        .and_then(|s| s.as_i64().ok())
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(0)
        .max(document.max_id + 1);
    let mut next = size;
    let mut allocate = || {
        let id = (next, 0);
        next += 1;
        id
    };
    let signature_id = allocate();
    let widget_id = allocate();

    let mut update = Update {
        base: input.len(),
        bytes: Vec::new(),
        offsets: Vec::new(),
    };
    if !matches!(input.last(), Some(b'\n' | b'\r')) {
        update.bytes.push(b'\n');
    }

    // The signature value, with placeholders for the range and the CMS.
    let reserve = limits.signature_reserve;
    let placeholder_range = format!("[0 {0} {0} {0}]", "*".repeat(10));
    let mut signature = Vec::new();
    signature.extend_from_slice(
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M ",
    );
    signature.extend_from_slice(&body(&Object::String(
        pdf_time(options.signing_time).into_bytes(),
        StringFormat::Literal,
    )));
    if let Some(reason) = &options.reason {
        signature.extend_from_slice(b" /Reason ");
        signature.extend_from_slice(&body(&lopdf::text_string(reason)));
    }
    signature.extend_from_slice(b" /ByteRange ");
    let range_at = signature.len();
    signature.extend_from_slice(placeholder_range.as_bytes());
    signature.extend_from_slice(b" /Contents ");
    let contents_at = signature.len();
    signature.push(b'<');
    signature.extend(std::iter::repeat_n(b'0', 2 * reserve));
    signature.extend_from_slice(b"> >>");
    let signature_start = update.bytes.len() + format!("{} 0 obj\n", signature_id.0).len();
    update.object(signature_id, &signature);
    let a_local = signature_start + contents_at;
    let b_local = a_local + 2 * reserve + 2;
    let range_local = signature_start + range_at;

    // The appearance, when visible.
    let mut widget = Dictionary::new();
    widget.set("FT", Object::Name(b"Sig".to_vec()));
    widget.set("T", lopdf::text_string(&name));
    widget.set("V", Object::Reference(signature_id));
    widget.set("Type", Object::Name(b"Annot".to_vec()));
    widget.set("Subtype", Object::Name(b"Widget".to_vec()));
    widget.set("F", 132);
    widget.set("P", Object::Reference(page_id));
    let mut rect = [0f32; 4];
    if let Some(appearance) = &options.appearance {
        let [x1, y1, x2, y2] = appearance.rect;
        if !(x2 > x1 && y2 > y1) || appearance.rect.iter().any(|v| !v.is_finite()) {
            return Err(PdfError::Refused(format!(
                "the rectangle {x1},{y1},{x2},{y2} must have x1 < x2 and y1 < y2"
            )));
        }
        rect = appearance.rect;
        let image = decode_png(&appearance.png)?;
        let mask_id = image.alpha.as_ref().map(|_| allocate());
        let image_id = allocate();
        let form_id = allocate();
        if let (Some(mask_id), Some(alpha)) = (mask_id, &image.alpha) {
            update.object(
                mask_id,
                &body(&image_stream(image.width, image.height, true, alpha, None)),
            );
        }
        update.object(
            image_id,
            &body(&image_stream(
                image.width,
                image.height,
                image.gray,
                &image.color,
                mask_id,
            )),
        );
        let (width, height) = (x2 - x1, y2 - y1);
        let drawing = format!("q {width} 0 0 {height} 0 0 cm /Img Do Q").into_bytes();
        let mut form = Dictionary::new();
        form.set("Type", Object::Name(b"XObject".to_vec()));
        form.set("Subtype", Object::Name(b"Form".to_vec()));
        form.set(
            "BBox",
            Object::Array(vec![0.into(), 0.into(), width.into(), height.into()]),
        );
        let mut xobjects = Dictionary::new();
        xobjects.set("Img", Object::Reference(image_id));
        let mut resources = Dictionary::new();
        resources.set("XObject", Object::Dictionary(xobjects));
        form.set("Resources", Object::Dictionary(resources));
        update.object(
            form_id,
            &body(&Object::Stream(
                lopdf::Stream::new(form, drawing).with_compression(false),
            )),
        );
        let mut ap = Dictionary::new();
        ap.set("N", Object::Reference(form_id));
        widget.set("AP", Object::Dictionary(ap));
    }
    widget.set(
        "Rect",
        Object::Array(rect.iter().map(|v| Object::Real(*v)).collect()),
    );
    update.object(widget_id, &body(&Object::Dictionary(widget)));

    // The form names the new field; the page lists its widget.
    let mut catalog = catalog.clone();
    let mut rewrite: Vec<(ObjectId, Object)> = Vec::new();
    let field_ref = Object::Reference(widget_id);
    match catalog.get(b"AcroForm") {
        Ok(Object::Reference(form_id)) => {
            let form_id = *form_id;
            let mut form = document
                .objects
                .get(&form_id)
                .and_then(|o| o.as_dict().ok())
                .cloned()
                .ok_or_else(|| PdfError::Refused("/AcroForm is not a dictionary".to_owned()))?;
            rewrite.extend(name_the_field(document, &mut form, &field_ref)?);
            rewrite.push((form_id, Object::Dictionary(form)));
        }
        Ok(Object::Dictionary(form)) => {
            let mut form = form.clone();
            rewrite.extend(name_the_field(document, &mut form, &field_ref)?);
            catalog.set("AcroForm", Object::Dictionary(form));
            rewrite.push((root, Object::Dictionary(catalog.clone())));
        }
        _ => {
            let form_id = allocate();
            let mut form = Dictionary::new();
            form.set("Fields", Object::Array(vec![field_ref.clone()]));
            form.set("SigFlags", 3);
            rewrite.push((form_id, Object::Dictionary(form)));
            catalog.set("AcroForm", Object::Reference(form_id));
            rewrite.push((root, Object::Dictionary(catalog.clone())));
        }
    }
    let mut page = document
        .objects
        .get(&page_id)
        .and_then(|o| o.as_dict().ok())
        .cloned()
        .ok_or_else(|| PdfError::Unreadable("the page is not a dictionary".to_owned()))?;
    match append_to_array(document, &mut page, b"Annots", field_ref)? {
        Some(array) => rewrite.push(array),
        None => rewrite.push((page_id, Object::Dictionary(page))),
    }
    for (id, object) in &rewrite {
        update.object(*id, &body(object));
    }

    // The cross-reference section: a stream after a stream, else a table.
    let mut trailer = Dictionary::new();
    trailer.set("Root", Object::Reference(root));
    if let Ok(info) = document.trailer.get(b"Info") {
        trailer.set("Info", info.clone());
    }
    let first_id = match document.trailer.get(b"ID") {
        Ok(Object::Array(ids)) => ids
            .first()
            .and_then(|i| i.as_str().ok())
            .map(<[u8]>::to_vec),
        _ => None,
    };
    let fresh: Vec<u8> = Sha256::digest(
        [
            input.len().to_le_bytes().as_slice(),
            &options.signing_time.to_le_bytes(),
            name.as_bytes(),
        ]
        .concat(),
    )[..16]
        .to_vec();
    trailer.set(
        "ID",
        Object::Array(vec![
            Object::String(
                first_id.unwrap_or_else(|| fresh.clone()),
                StringFormat::Hexadecimal,
            ),
            Object::String(fresh, StringFormat::Hexadecimal),
        ]),
    );
    trailer.set("Prev", i64::try_from(document.xref_start).unwrap_or(0));
    let streamed = matches!(
        document.reference_table.cross_reference_type,
        lopdf::xref::XrefType::CrossReferenceStream
    );
    let xref_at = update.base + update.bytes.len();
    if streamed {
        let xref_id = allocate();
        update.offsets.push((xref_id, xref_at));
        trailer.set("Size", i64::from(next));
        let runs = xref_runs(&mut update.offsets);
        let mut index = Vec::new();
        for run in &runs {
            index.push(i64::from(run[0].0));
            index.push(i64::try_from(run.len()).unwrap_or(0));
        }
        let mut data = Vec::new();
        for &(_, offset, generation) in runs.iter().flatten() {
            let offset = u32::try_from(offset)
                .map_err(|_| PdfError::Refused("PDFs over 4 GiB cannot be signed".to_owned()))?;
            data.push(1);
            data.extend_from_slice(&offset.to_be_bytes());
            data.extend_from_slice(&generation.to_be_bytes());
        }
        trailer.set("Type", Object::Name(b"XRef".to_vec()));
        trailer.set("W", Object::Array(vec![1.into(), 4.into(), 2.into()]));
        trailer.set(
            "Index",
            Object::Array(index.into_iter().map(Object::Integer).collect()),
        );
        let stream = Object::Stream(lopdf::Stream::new(trailer, data).with_compression(false));
        update
            .bytes
            .extend_from_slice(format!("{} 0 obj\n", xref_id.0).as_bytes());
        update.bytes.extend_from_slice(&body(&stream));
        update.bytes.extend_from_slice(b"\nendobj\n");
    } else {
        trailer.set("Size", i64::from(next));
        update.bytes.extend_from_slice(b"xref\n");
        for run in xref_runs(&mut update.offsets) {
            update
                .bytes
                .extend_from_slice(format!("{} {}\n", run[0].0, run.len()).as_bytes());
            for (_, offset, generation) in run {
                update
                    .bytes
                    .extend_from_slice(format!("{offset:010} {generation:05} n\r\n").as_bytes());
            }
        }
        update.bytes.extend_from_slice(b"trailer\n");
        update
            .bytes
            .extend_from_slice(&body(&Object::Dictionary(trailer)));
        update.bytes.push(b'\n');
    }
    update
        .bytes
        .extend_from_slice(format!("startxref\n{xref_at}\n%%EOF\n").as_bytes());

    // The byte range, then the signature over it.
    let total = input.len() + update.bytes.len();
    let (a, b) = (input.len() + a_local, input.len() + b_local);
    let range = format!("[0 {a} {b} {}]", total - b);
    if range.len() > placeholder_range.len() {
        return Err(PdfError::Refused("the PDF is too large to sign".to_owned()));
    }
    let mut padded = range.into_bytes();
    padded.resize(placeholder_range.len(), b' ');
    update.bytes[range_local..range_local + padded.len()].copy_from_slice(&padded);
    let mut signer = lienthong_pki::begin_streaming(key)?;
    for piece in input.chunks(1 << 20) {
        signer.update(piece)?;
    }
    signer.update(&update.bytes[..a_local])?;
    signer.update(&update.bytes[b_local..])?;
    let cms = signer.finish()?;
    if 2 * cms.len() > 2 * reserve {
        return Err(PdfError::Refused(format!(
            "the signature takes {} bytes, more than the {reserve} reserved (pdf.signature_reserve_bytes)",
            cms.len()
        )));
    }
    let hex = hex::encode_upper(&cms);
    update.bytes[a_local + 1..a_local + 1 + hex.len()].copy_from_slice(hex.as_bytes());
    let revision = u32::try_from(revisions.len() + 1).unwrap_or(u32::MAX);
    Ok((
        update.bytes,
        Signed {
            field: name,
            revision,
        },
    ))
}

/// The update's objects sorted by number, in runs of consecutive numbers
/// (the subsections of a table, the `/Index` of a stream).
fn xref_runs(offsets: &mut [(ObjectId, usize)]) -> Vec<Vec<(u32, usize, u16)>> {
    offsets.sort_by_key(|(id, _)| id.0);
    let mut runs: Vec<Vec<(u32, usize, u16)>> = Vec::new();
    for (id, at) in offsets.iter() {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|last| last.0 + 1 == id.0) => {
                run.push((id.0, *at, id.1));
            }
            _ => runs.push(vec![(id.0, *at, id.1)]),
        }
    }
    runs
}
