//! The XML layer under edXML: a tokenizer over a byte slice (quick-xml,
//! borrowing from the slice so a mapped 50 MB document is never copied),
//! namespaces resolved by our own stack, references expanded by hand, and
//! no DTD at all: a `<!DOCTYPE` is refused, which is what makes entity
//! expansion ("billion laughs") and external entities (XXE) impossible.

use std::collections::BTreeMap;

use quick_xml::{
    Reader,
    events::{BytesStart, Event},
};

use crate::EdxmlError;

/// The edXML namespace (QCVN 102:2016).
pub const NS_EDXML: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";
/// The XML-signature namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The namespace bound to the `xml` prefix.
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Where the document proper starts: field systems prepend junk (the
/// sample's `1212`) before the XML declaration. Up to `max_junk` bytes that
/// hold no `<` are skipped.
pub fn document_start(bytes: &[u8], max_junk: usize) -> Result<usize, EdxmlError> {
    let start = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    match bytes[start..].iter().position(|&b| b == b'<') {
        Some(at) if at <= max_junk => Ok(start + at),
        Some(_) | None => Err(EdxmlError::invalid(
            "document",
            "is not XML: no element starts in its first bytes",
        )),
    }
}

/// A tokenizer over the document with the settings every pass uses.
pub fn reader(doc: &[u8]) -> Reader<&[u8]> {
    let mut reader = Reader::from_reader(doc);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = true;
    config.check_end_names = true;
    reader
}

/// A tag's parts: its qualified name split, the namespaces it declares and
/// its other attributes (values expanded and normalized as XML says).
#[derive(Debug, Clone)]
pub struct Tag {
    /// Prefix as written, empty for none.
    pub prefix: String,
    /// Local name.
    pub local: String,
    /// `xmlns` (prefix "") and `xmlns:p` declarations, in document order.
    pub declarations: Vec<(String, String)>,
    /// Other attributes: (prefix, local name, value).
    pub attributes: Vec<(String, String, String)>,
}

impl Tag {
    /// The name as written.
    pub fn qname(&self) -> String {
        if self.prefix.is_empty() {
            self.local.clone()
        } else {
            format!("{}:{}", self.prefix, self.local)
        }
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, EdxmlError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| EdxmlError::invalid(what, "is not UTF-8 (only UTF-8 edXML is accepted)"))
}

/// Reads a start tag.
pub fn tag(start: &BytesStart<'_>) -> Result<Tag, EdxmlError> {
    let qname = utf8(start.name().as_ref(), "element name")?;
    let (prefix, local) = split(&qname);
    let mut tag = Tag {
        prefix: prefix.to_owned(),
        local: local.to_owned(),
        declarations: Vec::new(),
        attributes: Vec::new(),
    };
    for attribute in start.attributes().with_checks(true) {
        let attribute = attribute
            .map_err(|e| EdxmlError::invalid(&tag.local, format!("a broken attribute: {e}")))?;
        let key = utf8(attribute.key.as_ref(), &tag.local)?;
        let value = attribute_value(&attribute.value, &tag.local)?;
        if key == "xmlns" {
            tag.declarations.push((String::new(), value));
        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
            if value.is_empty() {
                return Err(EdxmlError::invalid(
                    &tag.local,
                    format!("xmlns:{prefix}=\"\" undeclares a prefix, which XML 1.0 forbids"),
                ));
            }
            tag.declarations.push((prefix.to_owned(), value));
        } else {
            let (prefix, local) = split(&key);
            tag.attributes
                .push((prefix.to_owned(), local.to_owned(), value));
        }
    }
    Ok(tag)
}

fn split(qname: &str) -> (&str, &str) {
    match qname.split_once(':') {
        Some((prefix, local)) => (prefix, local),
        None => ("", qname),
    }
}

/// Expands a reference's name (`amp`, `#233`, `#xE9`). Only the five
/// predefined entities exist: there is no DTD to declare others.
pub fn reference(name: &[u8], element: &str) -> Result<char, EdxmlError> {
    let text = std::str::from_utf8(name).unwrap_or("?");
    let ch = match text {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            if let Some(hex) = text.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(decimal) = text.strip_prefix('#') {
                decimal.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                return Err(EdxmlError::invalid(
                    element,
                    format!(
                        "the entity &{text}; is not defined: edXML has no DTD, so only &amp; &lt; &gt; &quot; &apos; and character references exist"
                    ),
                ));
            }
        }
    };
    match ch {
        Some(c) if c != '\0' => Ok(c),
        _ => Err(EdxmlError::invalid(
            element,
            format!("&{text}; is not a valid character reference"),
        )),
    }
}

/// An attribute's value as XML defines it (no DTD: every attribute is
/// CDATA): references expanded, literal tab, CR, LF and CRLF each one space.
pub fn attribute_value(raw: &[u8], element: &str) -> Result<String, EdxmlError> {
    let mut out = String::with_capacity(raw.len());
    let text = std::str::from_utf8(raw)
        .map_err(|_| EdxmlError::invalid(element, "an attribute is not UTF-8"))?;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => {
                let end = rest.find(';').ok_or_else(|| {
                    EdxmlError::invalid(element, "an attribute has a & that starts no reference")
                })?;
                out.push(reference(&rest.as_bytes()[1..end], element)?);
                rest = &rest[end + 1..];
                continue;
            }
            '<' => {
                return Err(EdxmlError::invalid(element, "an attribute value holds '<'"));
            }
            '\r' => {
                out.push(' ');
                if rest[1..].starts_with('\n') {
                    rest = &rest[1..];
                }
            }
            '\t' | '\n' => out.push(' '),
            other => out.push(other),
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// In-scope namespaces, one frame per open element.
#[derive(Debug, Default, Clone)]
pub struct Namespaces {
    frames: Vec<Vec<(String, String)>>,
}

impl Namespaces {
    /// Opens an element's frame with its declarations.
    pub fn push(&mut self, declarations: &[(String, String)]) {
        self.frames.push(declarations.to_vec());
    }

    /// Closes the innermost element's frame.
    pub fn pop(&mut self) {
        self.frames.pop();
    }

    /// The namespace `prefix` is bound to ("" for the default: empty when
    /// there is none).
    pub fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(NS_XML);
        }
        for frame in self.frames.iter().rev() {
            if let Some((_, uri)) = frame.iter().rev().find(|(p, _)| p == prefix) {
                return Some(uri);
            }
        }
        if prefix.is_empty() { Some("") } else { None }
    }

    /// The element's namespace, or an error naming it.
    pub fn element_namespace(&self, tag: &Tag) -> Result<String, EdxmlError> {
        self.resolve(&tag.prefix).map(str::to_owned).ok_or_else(|| {
            EdxmlError::invalid(
                tag.qname(),
                format!("the prefix {:?} is not declared", tag.prefix),
            )
        })
    }

    /// Every namespace in scope, by prefix (the default as ""; an empty
    /// default is left out).
    pub fn in_scope(&self) -> BTreeMap<String, String> {
        let mut scope = BTreeMap::new();
        for frame in &self.frames {
            for (prefix, uri) in frame {
                scope.insert(prefix.clone(), uri.clone());
            }
        }
        if scope.get("").is_some_and(|uri| uri.is_empty()) {
            scope.remove("");
        }
        scope
    }

    /// How deep the innermost open element is.
    pub fn depth(&self) -> usize {
        self.frames.len()
    }
}

/// The next event, with tokenizer errors named and a DOCTYPE refused.
pub fn next<'a>(reader: &mut Reader<&'a [u8]>) -> Result<Event<'a>, EdxmlError> {
    match reader.read_event() {
        Ok(Event::DocType(_)) => Err(EdxmlError::invalid(
            "DOCTYPE",
            "a document type declaration is not accepted: its entities could expand without bound (billion laughs) or read files and URLs (XXE)",
        )),
        Ok(event) => Ok(event),
        Err(error) => Err(EdxmlError::invalid(
            "document",
            format!("malformed XML at byte {}: {error}", reader.error_position()),
        )),
    }
}
