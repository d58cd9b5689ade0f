//! Canonical XML 1.0 and Exclusive XML Canonicalization 1.0, without
//! comments (and with, on request), written as the document streams by.
//!
//! libxml2 canonicalizes a DOM, and a DOM of an edXML package holds its
//! base64 attachments whole; this walks the tokens of the (mapped) document
//! instead and writes each text node in pieces, so a 50 MB attachment is
//! digested in constant memory. Two selections are needed by XML-DSig: the
//! whole document minus one element (`Reference URI=""` with the
//! enveloped-signature transform) and one element's subtree (`SignedInfo`,
//! which inherits the namespaces in scope where it sits).

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use quick_xml::events::Event;

use crate::{
    EdxmlError,
    xml::{self, Namespaces, Tag},
};

/// Which canonicalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `http://www.w3.org/TR/2001/REC-xml-c14n-20010315` (and `#WithComments`).
    Inclusive {
        /// Keep comments.
        comments: bool,
    },
    /// `http://www.w3.org/2001/10/xml-exc-c14n#` (and `#WithComments`), with
    /// the InclusiveNamespaces PrefixList ("#default" for the default).
    Exclusive {
        /// Keep comments.
        comments: bool,
        /// Prefixes treated as in inclusive canonicalization.
        inclusive_prefixes: Vec<String>,
    },
}

impl Method {
    /// The method named by an algorithm URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315" => {
                Method::Inclusive { comments: false }
            }
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments" => {
                Method::Inclusive { comments: true }
            }
            "http://www.w3.org/2001/10/xml-exc-c14n#" => Method::Exclusive {
                comments: false,
                inclusive_prefixes: Vec::new(),
            },
            "http://www.w3.org/2001/10/xml-exc-c14n#WithComments" => Method::Exclusive {
                comments: true,
                inclusive_prefixes: Vec::new(),
            },
            _ => return None,
        })
    }

    fn comments(&self) -> bool {
        match self {
            Method::Inclusive { comments } | Method::Exclusive { comments, .. } => *comments,
        }
    }
}

/// What to canonicalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The whole document, leaving out the element that starts at byte
    /// `without` (the enveloped signature), if any.
    Document {
        /// Start offset of the element left out.
        without: Option<u64>,
    },
    /// The subtree of the element that starts at this byte offset.
    Subtree(u64),
}

/// The output, with write errors named.
struct Out<'w> {
    inner: &'w mut dyn Write,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EdxmlError> {
        self.inner.write_all(bytes).map_err(io_error)
    }
}

fn io_error(error: io::Error) -> EdxmlError {
    EdxmlError::Internal(format!("writing canonical XML: {error}"))
}

/// Canonicalizes `selection` of `doc` (which starts at its first `<`) into
/// `out`.
pub fn canonicalize(
    doc: &[u8],
    selection: Selection,
    method: &Method,
    out: &mut dyn Write,
) -> Result<(), EdxmlError> {
    let mut reader = xml::reader(doc);
    let mut namespaces = Namespaces::default();
    let mut out = Out { inner: out };
    // Namespaces rendered by each output ancestor (what is in effect in
    // the output), one map per open output element.
    let mut rendered: Vec<BTreeMap<String, String>> = Vec::new();
    // Depth (in `namespaces`) of the subtree being output or skipped.
    let mut output_from: Option<usize> = None;
    let mut skip_from: Option<usize> = None;
    let mut root_seen = false;
    let mut done = false;
    loop {
        let offset = reader.buffer_position();
        let event = xml::next(&mut reader)?;
        let in_output = match selection {
            Selection::Document { .. } => skip_from.is_none(),
            Selection::Subtree(_) => output_from.is_some(),
        };
        match event {
            Event::Start(start) => {
                let tag = xml::tag(&start)?;
                namespaces.push(&tag.declarations);
                let depth = namespaces.depth();
                match selection {
                    Selection::Document { without } => {
                        if skip_from.is_none() && without == Some(offset) {
                            skip_from = Some(depth);
                            continue;
                        }
                    }
                    Selection::Subtree(at) => {
                        if output_from.is_none() && at == offset {
                            output_from = Some(depth);
                        }
                    }
                }
                let in_output = match selection {
                    Selection::Document { .. } => skip_from.is_none(),
                    Selection::Subtree(_) => output_from.is_some(),
                };
                if in_output {
                    root_seen = true;
                    start_tag(&tag, &namespaces, method, &mut rendered, &mut out)?;
                }
            }
            Event::End(end) => {
                let depth = namespaces.depth();
                if in_output {
                    out.put(b"</")?;
                    out.put(end.name().as_ref())?;
                    out.put(b">")?;
                    rendered.pop();
                }
                namespaces.pop();
                if skip_from == Some(depth) {
                    skip_from = None;
                }
                if output_from == Some(depth) {
                    done = true;
                }
            }
            Event::Text(text) if in_output && namespaces.depth() > 0 => {
                write_text(&text.into_inner(), &mut out)?;
            }
            Event::GeneralRef(name) if in_output && namespaces.depth() > 0 => {
                let ch = xml::reference(&name, "text")?;
                let mut buffer = [0u8; 4];
                escape_text(ch.encode_utf8(&mut buffer).as_bytes(), &mut out)?;
            }
            Event::CData(data) if in_output => {
                escape_text(&data.into_inner(), &mut out)?;
            }
            Event::Comment(text) if in_output && method.comments() => {
                let top = namespaces.depth() == 0;
                if top && root_seen {
                    out.put(b"\n")?;
                }
                out.put(b"<!--")?;
                out.put(&text.into_inner())?;
                out.put(b"-->")?;
                if top && !root_seen {
                    out.put(b"\n")?;
                }
            }
            Event::PI(pi) if in_output => {
                let top = namespaces.depth() == 0;
                if top && root_seen {
                    out.put(b"\n")?;
                }
                out.put(b"<?")?;
                out.put(&pi.into_inner())?;
                out.put(b"?>")?;
                if top && !root_seen {
                    out.put(b"\n")?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        if done {
            break;
        }
    }
    if let Selection::Subtree(at) = selection
        && output_from.is_none()
    {
        return Err(EdxmlError::Internal(format!(
            "no element starts at byte {at}"
        )));
    }
    Ok(())
}

fn start_tag(
    tag: &Tag,
    namespaces: &Namespaces,
    method: &Method,
    rendered: &mut Vec<BTreeMap<String, String>>,
    out: &mut Out<'_>,
) -> Result<(), EdxmlError> {
    let parent = rendered.last().cloned().unwrap_or_default();
    let mut emit: BTreeMap<String, String> = BTreeMap::new();
    let parent_default = parent.get("").map(String::as_str).unwrap_or("");
    match method {
        Method::Inclusive { .. } => {
            let scope = namespaces.in_scope();
            for (prefix, uri) in &scope {
                if prefix == "xml" {
                    continue;
                }
                if parent.get(prefix) != Some(uri) {
                    emit.insert(prefix.clone(), uri.clone());
                }
            }
            if !scope.contains_key("") && !parent_default.is_empty() {
                emit.insert(String::new(), String::new());
            }
        }
        Method::Exclusive {
            inclusive_prefixes, ..
        } => {
            let mut used: Vec<String> = vec![tag.prefix.clone()];
            for (prefix, _, _) in &tag.attributes {
                if !prefix.is_empty() {
                    used.push(prefix.clone());
                }
            }
            let scope = namespaces.in_scope();
            for prefix in inclusive_prefixes {
                let prefix = if prefix == "#default" { "" } else { prefix };
                if scope.contains_key(prefix) || prefix.is_empty() {
                    used.push(prefix.to_owned());
                }
            }
            for prefix in used {
                if prefix == "xml" {
                    continue;
                }
                let uri = namespaces.resolve(&prefix).unwrap_or("");
                if prefix.is_empty() {
                    if uri != parent_default {
                        emit.insert(String::new(), uri.to_owned());
                    }
                } else if parent.get(&prefix).map(String::as_str) != Some(uri) {
                    emit.insert(prefix, uri.to_owned());
                }
            }
        }
    }
    out.put(b"<")?;
    out.put(tag.qname().as_bytes())?;
    for (prefix, uri) in &emit {
        if prefix.is_empty() {
            out.put(b" xmlns=\"")?;
        } else {
            out.put(b" xmlns:")?;
            out.put(prefix.as_bytes())?;
            out.put(b"=\"")?;
        }
        escape_attribute(uri, out)?;
        out.put(b"\"")?;
    }
    let mut attributes: Vec<(&str, &str, &str, &str)> = Vec::with_capacity(tag.attributes.len());
    for (prefix, local, value) in &tag.attributes {
        let uri = if prefix.is_empty() {
            ""
        } else {
            namespaces.resolve(prefix).ok_or_else(|| {
                EdxmlError::invalid(
                    tag.qname(),
                    format!("the attribute prefix {prefix:?} is not declared"),
                )
            })?
        };
        attributes.push((uri, local, prefix, value));
    }
    attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, local, prefix, value) in attributes {
        out.put(b" ")?;
        if !prefix.is_empty() {
            out.put(prefix.as_bytes())?;
            out.put(b":")?;
        }
        out.put(local.as_bytes())?;
        out.put(b"=\"")?;
        escape_attribute(value, out)?;
        out.put(b"\"")?;
    }
    out.put(b">")?;
    let mut now = parent;
    now.extend(emit);
    rendered.push(now);
    Ok(())
}

/// A text node's raw bytes (no references: the tokenizer reports those
/// apart) with line ends normalized and `& < >` escaped, in runs.
fn write_text(raw: &[u8], out: &mut Out<'_>) -> Result<(), EdxmlError> {
    let mut run = 0;
    let mut i = 0;
    while i < raw.len() {
        let replacement: Option<&[u8]> = match raw[i] {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'>' => Some(b"&gt;"),
            b'\r' => Some(b"\n"),
            _ => None,
        };
        if let Some(replacement) = replacement {
            out.put(&raw[run..i])?;
            out.put(replacement)?;
            // CRLF is one line end.
            if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            run = i + 1;
        }
        i += 1;
    }
    out.put(&raw[run..])
}

/// Text that came from references or CDATA: `& < >` and CR escaped.
fn escape_text(text: &[u8], out: &mut Out<'_>) -> Result<(), EdxmlError> {
    let mut run = 0;
    for (i, byte) in text.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.put(&text[run..i])?;
        out.put(replacement)?;
        run = i + 1;
    }
    out.put(&text[run..])
}

fn escape_attribute(value: &str, out: &mut Out<'_>) -> Result<(), EdxmlError> {
    let bytes = value.as_bytes();
    let mut run = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'"' => b"&quot;",
            b'\t' => b"&#x9;",
            b'\n' => b"&#xA;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.put(&bytes[run..i])?;
        out.put(replacement)?;
        run = i + 1;
    }
    out.put(&bytes[run..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(doc: &str, selection: Selection, method: &Method) -> String {
        let mut out = Vec::new();
        canonicalize(doc.as_bytes(), selection, method, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const INCLUSIVE: Method = Method::Inclusive { comments: false };

    #[test]
    fn the_spec_examples_that_matter_here() {
        // C14N 1.0 §3.2-3.4, abridged: empty elements opened and closed,
        // attributes sorted, redundant declarations dropped, text escaped.
        let doc = "<?xml version=\"1.0\"?>\r\n<!-- c --><doc xmlns=\"http://example.org\" xmlns:a=\"http://a\"><e1   /><e2 b=\"2\" a:c=\"3\" a=\"1\"  xmlns:a=\"http://a\"/><t>A &amp; B &lt; C &gt; D\r\nE &#xD;</t><![CDATA[x<y]]></doc>";
        assert_eq!(
            c14n(doc, Selection::Document { without: None }, &INCLUSIVE),
            "<doc xmlns=\"http://example.org\" xmlns:a=\"http://a\"><e1></e1><e2 a=\"1\" b=\"2\" a:c=\"3\"></e2><t>A &amp; B &lt; C &gt; D\nE &#xD;</t>x&lt;y</doc>"
        );
    }

    #[test]
    fn a_subtree_inherits_what_is_in_scope_inclusively_only() {
        let doc =
            "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\"><s><p:x q:y=\"1\"/></s></r>";
        let at = doc.find("<s>").unwrap() as u64;
        assert_eq!(
            c14n(doc, Selection::Subtree(at), &INCLUSIVE),
            "<s xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\"><p:x q:y=\"1\"></p:x></s>"
        );
        let exclusive = Method::Exclusive {
            comments: false,
            inclusive_prefixes: Vec::new(),
        };
        assert_eq!(
            c14n(doc, Selection::Subtree(at), &exclusive),
            "<s xmlns=\"urn:d\"><p:x xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" q:y=\"1\"></p:x></s>"
        );
    }

    #[test]
    fn the_enveloped_signature_is_left_out_and_xmlns_empty_kept_where_needed() {
        let doc = "<r xmlns=\"urn:d\"><Signature xmlns=\"urn:s\"><x/></Signature><n xmlns=\"\"><m/></n></r>";
        let at = doc.find("<Signature").unwrap() as u64;
        assert_eq!(
            c14n(doc, Selection::Document { without: Some(at) }, &INCLUSIVE),
            "<r xmlns=\"urn:d\"><n xmlns=\"\"><m></m></n></r>"
        );
    }

    #[test]
    fn attribute_values_are_normalized_then_escaped() {
        let doc = "<r a=\"x\ty&#9;z\r\n&quot;&lt;\"></r>";
        assert_eq!(
            c14n(doc, Selection::Document { without: None }, &INCLUSIVE),
            "<r a=\"x y&#x9;z &quot;&lt;\"></r>"
        );
    }
}
