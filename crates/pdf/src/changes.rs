//! What an incremental update changed, and whether a signature allows it.
//!
//! After a signature, a later revision may only add signature fields (with
//! their widgets and appearances) and signature values, extend the form's
//! field list and the pages' annotation lists with them, add the DSS (and
//! its VRI), document time-stamps, and update the document information
//! dictionary. Anything else — page content, annotations, form values, the
//! catalog — is a modification after signing, named with its object.
//! This is reject-by-default: what is not recognised as allowed is not.

use std::collections::{BTreeMap, BTreeSet};

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::parse::{catalog, dict, name, resolve, text};

/// What one revision changed, as far as signatures care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A change no signature allows.
    Forbidden(String),
    /// A signature field or value added: allowed, except after a
    /// certification signature with DocMDP P=1.
    Signature(String),
}

fn label(id: ObjectId) -> String {
    format!("object {} {}", id.0, id.1)
}

/// Objects that make up the file's structure, not the document.
fn structural(object: &Object) -> bool {
    matches!(object, Object::Stream(s) if s.dict.has_type(b"XRef") || s.dict.has_type(b"ObjStm"))
}

/// Whether two objects are the same: streams by dictionary and digest.
fn same(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Stream(a), Object::Stream(b)) => a.dict == b.dict && a.content == b.content,
        _ => a == b,
    }
}

/// Every reference an object holds, directly or nested.
fn references(object: &Object, out: &mut Vec<ObjectId>) {
    match object {
        Object::Reference(id) => out.push(*id),
        Object::Array(items) => items.iter().for_each(|o| references(o, out)),
        Object::Dictionary(dict) => dict.iter().for_each(|(_, o)| references(o, out)),
        Object::Stream(stream) => stream.dict.iter().for_each(|(_, o)| references(o, out)),
        _ => {}
    }
}

/// The objects reachable from `roots` (bounded by the document's size).
fn reachable(document: &Document, roots: &[ObjectId]) -> BTreeSet<ObjectId> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<ObjectId> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(object) = document.objects.get(&id) {
            references(object, &mut stack);
        }
    }
    seen
}

/// A signature value dictionary (or a document time-stamp).
fn is_signature_value(dict: &Dictionary) -> bool {
    dict.has_type(b"Sig") || dict.has_type(b"DocTimeStamp")
}

fn is_time_stamp(dict: &Dictionary) -> bool {
    dict.has_type(b"DocTimeStamp")
}

/// A signature field, a signature field's widget, or both merged.
fn is_signature_field(document: &Document, dict: &Dictionary) -> bool {
    if name(document, dict, b"FT") == Some(b"Sig") {
        return true;
    }
    name(document, dict, b"Subtype") == Some(b"Widget")
        && dict
            .get(b"Parent")
            .ok()
            .and_then(|p| crate::parse::dict(document, p))
            .is_some_and(|parent| name(document, parent, b"FT") == Some(b"Sig"))
}

/// The entries of an array (resolved), as references where they are.
fn array_items<'a>(document: &'a Document, object: Option<&'a Object>) -> Vec<&'a Object> {
    match object.map(|o| resolve(document, o)) {
        Some(Object::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// The pages of a document by object, and the content streams each draws.
struct Pages {
    numbers: BTreeMap<ObjectId, u32>,
    contents: BTreeMap<ObjectId, u32>,
}

impl Pages {
    fn of(document: &Document) -> Self {
        let numbers: BTreeMap<ObjectId, u32> = document
            .get_pages()
            .into_iter()
            .map(|(n, id)| (id, n))
            .collect();
        let mut contents = BTreeMap::new();
        for (page, number) in &numbers {
            for stream in document.get_page_contents(*page) {
                contents.entry(stream).or_insert(*number);
            }
        }
        Self { numbers, contents }
    }
}

/// Most changes of each kind one revision reports; the rest are counted.
const MAX_REPORTED: usize = 32;

/// A person-readable name for an object of `document`.
fn describe(document: &Document, pages: &Pages, id: ObjectId) -> String {
    let object = document.objects.get(&id);
    if let Some(page) = pages.numbers.get(&id) {
        return format!("page {page} ({})", label(id));
    }
    if let Some(number) = pages.contents.get(&id) {
        return format!("the content of page {number} ({})", label(id));
    }
    let Some(dict) = object.and_then(|o| dict(document, o)) else {
        return label(id);
    };
    if catalog(document).is_some_and(|(root, _)| root == id) {
        return format!("the document catalog ({})", label(id));
    }
    if let Some(field) = text(document, dict, b"T") {
        return format!("form field {field:?} ({})", label(id));
    }
    if let Some(subtype) = name(document, dict, b"Subtype")
        && (dict.has_type(b"Annot") || dict.has(b"Rect"))
    {
        return format!(
            "an annotation /{} ({})",
            String::from_utf8_lossy(subtype),
            label(id)
        );
    }
    match name(document, dict, b"Type") {
        Some(kind) => format!("{} (/{})", label(id), String::from_utf8_lossy(kind)),
        None => label(id),
    }
}

/// Keys of two dictionaries whose values differ.
fn differing_keys(old: &Dictionary, new: &Dictionary) -> Vec<Vec<u8>> {
    let mut keys: BTreeSet<Vec<u8>> = old.iter().map(|(k, _)| k.clone()).collect();
    keys.extend(new.iter().map(|(k, _)| k.clone()));
    keys.into_iter()
        .filter(|k| match (old.get(k), new.get(k)) {
            (Ok(a), Ok(b)) => !same(a, b),
            (Err(_), Err(_)) => false,
            _ => true,
        })
        .collect()
}

fn key_list(keys: &[Vec<u8>]) -> String {
    keys.iter()
        .map(|k| format!("/{}", String::from_utf8_lossy(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the update from `old` to `new` changed.
pub(crate) fn changes(old: &Document, new: &Document) -> Vec<Change> {
    let mut out = Vec::new();
    let pages_new = Pages::of(new);
    let pages_old = Pages::of(old);
    let (Some((old_root, _)), Some((new_root, new_catalog))) = (catalog(old), catalog(new)) else {
        out.push(Change::Forbidden(
            "the update has no document catalog".to_owned(),
        ));
        return out;
    };
    // What the document draws and uses: everything reachable from its
    // catalog.
    let used = reachable(new, &[new_root]);
    // The information dictionary may be updated (ModDate, Producer), but
    // only a plain dictionary the document itself does not use: a trailer
    // naming a page's content as its /Info gets no pass.
    let info = new
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|i| i.as_reference().ok())
        .filter(|id| {
            matches!(new.objects.get(id), Some(Object::Dictionary(_))) && !used.contains(id)
        });

    let added: Vec<ObjectId> = new
        .objects
        .iter()
        .filter(|(id, o)| !old.objects.contains_key(id) && !structural(o))
        .map(|(id, _)| *id)
        .collect();
    let changed: Vec<ObjectId> = new
        .objects
        .iter()
        .filter(|(id, o)| {
            old.objects
                .get(id)
                .is_some_and(|before| !structural(o) && !same(before, o))
        })
        .map(|(id, _)| *id)
        .collect();
    for (id, object) in &old.objects {
        if !new.objects.contains_key(id) && !structural(object) {
            out.push(Change::Forbidden(format!(
                "{} was deleted",
                describe(old, &pages_old, *id)
            )));
        }
    }
    if old_root != new_root {
        out.push(Change::Forbidden(format!(
            "the document catalog was replaced ({} instead of {})",
            label(new_root),
            label(old_root)
        )));
    }

    // What the update may add: signature fields and values, what their
    // appearances draw with, the DSS, the information dictionary.
    let mut allowed: BTreeSet<ObjectId> = BTreeSet::new();
    let mut appearance_roots = Vec::new();
    let mut new_widgets: BTreeSet<ObjectId> = BTreeSet::new();
    for id in &added {
        let Some(d) = new.objects.get(id).and_then(|o| dict(new, o)) else {
            continue;
        };
        if is_signature_value(d) {
            allowed.insert(*id);
            if !is_time_stamp(d) {
                out.push(Change::Signature(format!(
                    "a signature value was added ({})",
                    label(*id)
                )));
            }
        } else if is_signature_field(new, d) {
            allowed.insert(*id);
            new_widgets.insert(*id);
            out.push(Change::Signature(format!(
                "signature field {} was added ({})",
                text(new, d, b"T").map_or_else(|| "(a widget)".to_owned(), |t| format!("{t:?}")),
                label(*id)
            )));
            if let Ok(appearance) = d.get(b"AP") {
                references(appearance, &mut appearance_roots);
            }
            if let Ok(Object::Reference(ap)) = d.get(b"AP") {
                appearance_roots.push(*ap);
            }
        }
    }
    if let Ok(dss) = new_catalog.get(b"DSS") {
        let mut roots = Vec::new();
        references(dss, &mut roots);
        appearance_roots.extend(roots);
    }
    if let Some(info) = info {
        allowed.insert(info);
    }
    let added_set: BTreeSet<ObjectId> = added.iter().copied().collect();
    for id in reachable(new, &appearance_roots) {
        if added_set.contains(&id) {
            allowed.insert(id);
        }
    }

    // The objects the update changed, each allowed only in a known way.
    let mut handled: BTreeSet<ObjectId> = BTreeSet::new();
    let sig_widget = |object: &Object| -> bool {
        match object {
            Object::Reference(id) => {
                new_widgets.contains(id)
                    || new
                        .objects
                        .get(id)
                        .and_then(|o| dict(new, o))
                        .is_some_and(|d| is_signature_field(new, d))
                        && !old.objects.contains_key(id)
            }
            _ => false,
        }
    };
    // An array of references that only gained new signature fields.
    let only_appended = |old_items: &[&Object], new_items: &[&Object]| -> Result<(), String> {
        for item in old_items {
            if !new_items.contains(item) {
                return Err("an entry was removed".to_owned());
            }
        }
        for item in new_items {
            if !old_items.contains(item) && !sig_widget(item) {
                return Err(match item {
                    Object::Reference(id) => {
                        format!("{} was added", describe(new, &pages_new, *id))
                    }
                    _ => "an inline entry was added".to_owned(),
                });
            }
        }
        Ok(())
    };

    // The form: only its field list (new signature fields) and the
    // signature flags and default appearance resources may change.
    let old_catalog = catalog(old).map(|(_, c)| c);
    let old_form = old_catalog.and_then(|c| c.get(b"AcroForm").ok());
    let new_form = new_catalog.get(b"AcroForm").ok();
    for form in [old_form, new_form].into_iter().flatten() {
        if let Object::Reference(id) = form {
            handled.insert(*id);
            if added_set.contains(id) {
                allowed.insert(*id);
            }
        }
    }
    let old_form_dict = old_form.and_then(|f| dict(old, f));
    let new_form_dict = new_form.and_then(|f| dict(new, f));
    if let Some(new_form_dict) = new_form_dict {
        let empty = Dictionary::new();
        let old_form_dict = old_form_dict.unwrap_or(&empty);
        for key in differing_keys(old_form_dict, new_form_dict) {
            match key.as_slice() {
                b"Fields" => {
                    for fields in [old_form_dict.get(b"Fields"), new_form_dict.get(b"Fields")]
                        .into_iter()
                        .flatten()
                    {
                        if let Object::Reference(id) = fields {
                            handled.insert(*id);
                            allowed.insert(*id);
                        }
                    }
                    let old_items = array_items(old, old_form_dict.get(b"Fields").ok());
                    let new_items = array_items(new, new_form_dict.get(b"Fields").ok());
                    if let Err(why) = only_appended(&old_items, &new_items) {
                        out.push(Change::Forbidden(format!(
                            "the form's field list changed: {why}"
                        )));
                    }
                }
                b"SigFlags" | b"DR" | b"DA" => {}
                other => out.push(Change::Forbidden(format!(
                    "the form's /{} entry changed",
                    String::from_utf8_lossy(other)
                ))),
            }
        }
        // An indirect field list that changed while the form did not.
        if let Ok(Object::Reference(fields)) = new_form_dict.get(b"Fields")
            && changed.contains(fields)
        {
            handled.insert(*fields);
            let old_items = array_items(old, old_form_dict.get(b"Fields").ok());
            let new_items = array_items(new, new_form_dict.get(b"Fields").ok());
            if let Err(why) = only_appended(&old_items, &new_items) {
                out.push(Change::Forbidden(format!(
                    "the form's field list changed: {why}"
                )));
            }
        }
    } else if old_form_dict.is_some() {
        out.push(Change::Forbidden(
            "the form (/AcroForm) was removed".to_owned(),
        ));
    }

    // Annotation arrays of pages that did not change themselves.
    for page in pages_new.numbers.keys() {
        let Some(after) = new.objects.get(page).and_then(|o| o.as_dict().ok()) else {
            continue;
        };
        if let Ok(Object::Reference(annots)) = after.get(b"Annots")
            && changed.contains(annots)
            && !handled.contains(annots)
        {
            handled.insert(*annots);
            let before = old.objects.get(annots).map(|o| match o {
                Object::Array(items) => items.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            });
            let reference = Object::Reference(*annots);
            let new_items = array_items(new, Some(&reference));
            if let Err(why) = only_appended(&before.unwrap_or_default(), &new_items) {
                out.push(Change::Forbidden(format!(
                    "{}: an annotation changed: {why}",
                    describe(new, &pages_new, *page)
                )));
            }
        }
    }
    for id in &changed {
        if handled.contains(id) || Some(*id) == info {
            continue;
        }
        let (Some(before), Some(after)) = (old.objects.get(id), new.objects.get(id)) else {
            continue;
        };
        let (Object::Dictionary(before), Object::Dictionary(after)) = (before, after) else {
            out.push(Change::Forbidden(format!(
                "{} was changed",
                describe(new, &pages_new, *id)
            )));
            continue;
        };
        let keys = differing_keys(before, after);
        if *id == new_root {
            let other: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !matches!(k.as_slice(), b"AcroForm" | b"DSS" | b"Extensions"))
                .collect();
            if !other.is_empty() {
                out.push(Change::Forbidden(format!(
                    "the document catalog's {} changed ({})",
                    key_list(&other),
                    label(*id)
                )));
            }
            continue;
        }
        if pages_new.numbers.contains_key(id) {
            let other: Vec<Vec<u8>> = keys
                .iter()
                .filter(|k| k.as_slice() != b"Annots")
                .cloned()
                .collect();
            if !other.is_empty() {
                out.push(Change::Forbidden(format!(
                    "{}: its {} changed",
                    describe(new, &pages_new, *id),
                    key_list(&other)
                )));
                continue;
            }
            if let Ok(Object::Reference(annots)) = after.get(b"Annots") {
                handled.insert(*annots);
            }
            let old_items = array_items(old, before.get(b"Annots").ok());
            let new_items = array_items(new, after.get(b"Annots").ok());
            if let Err(why) = only_appended(&old_items, &new_items) {
                out.push(Change::Forbidden(format!(
                    "{}: an annotation changed: {why}",
                    describe(new, &pages_new, *id)
                )));
            }
            continue;
        }
        // An empty signature field being filled in.
        if name(old, before, b"FT") == Some(b"Sig")
            && !before.has(b"V")
            && keys
                .iter()
                .all(|k| matches!(k.as_slice(), b"V" | b"AP" | b"F"))
        {
            out.push(Change::Signature(format!(
                "signature field {} was signed ({})",
                text(new, after, b"T").map_or_else(String::new, |t| format!("{t:?}")),
                label(*id)
            )));
            if let Ok(appearance) = after.get(b"AP") {
                let mut roots = Vec::new();
                references(appearance, &mut roots);
                for reached in reachable(new, &roots) {
                    if added_set.contains(&reached) {
                        allowed.insert(reached);
                    }
                }
            }
            continue;
        }
        out.push(Change::Forbidden(format!(
            "{}: its {} changed",
            describe(new, &pages_new, *id),
            key_list(&keys)
        )));
    }
    // Added objects the document now uses that no rule allows.
    for id in &added {
        if !allowed.contains(id) && !handled.contains(id) && used.contains(id) {
            out.push(Change::Forbidden(format!(
                "{} was added",
                describe(new, &pages_new, *id)
            )));
        }
    }
    bounded(out)
}

/// At most [`MAX_REPORTED`] changes of each kind, and how many more there
/// were.
fn bounded(changes: Vec<Change>) -> Vec<Change> {
    let (mut forbidden, mut signatures) = (0usize, 0usize);
    let mut out = Vec::new();
    for change in changes {
        let count = match &change {
            Change::Forbidden(_) => &mut forbidden,
            Change::Signature(_) => &mut signatures,
        };
        *count += 1;
        if *count <= MAX_REPORTED {
            out.push(change);
        }
    }
    if forbidden > MAX_REPORTED {
        out.push(Change::Forbidden(format!(
            "and {} more changes",
            forbidden - MAX_REPORTED
        )));
    }
    out
}
