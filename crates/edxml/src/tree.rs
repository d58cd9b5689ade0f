//! The header of an edXML package as a small element tree: every element
//! and attribute as it came (local names, text in NFC), so fields the
//! gateway's envelope lacks are carried and written back, not dropped. The
//! base64 of attachments is never in it.

use std::fmt::Write as _;

/// One element: its local name, attributes, text and children, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (the namespace is edXML's, or XML-DSig's in a signature).
    pub name: String,
    /// Unprefixed attributes, in document order.
    pub attributes: Vec<(String, String)>,
    /// The text directly inside, when it has no children (whitespace
    /// between child elements is not kept).
    pub text: String,
    /// Child elements, in order.
    pub children: Vec<Element>,
}

impl Element {
    /// An element with children.
    pub fn new(name: &str, children: Vec<Element>) -> Self {
        Self {
            name: name.to_owned(),
            children,
            ..Self::default()
        }
    }

    /// An element holding text.
    pub fn leaf(name: &str, text: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            text: text.into(),
            ..Self::default()
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first child named `name`, mutable.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a `/`-separated path of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/')
            .try_fold(self, |element, name| element.child(name))
    }

    /// The trimmed text at `path`, empty when absent.
    pub fn text_at(&self, path: &str) -> &str {
        self.at(path).map_or("", |e| e.text.trim())
    }

    /// The value of attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the element with every name prefixed `edXML:`, as the
    /// national hub's .NET reader requires; `indent` levels of two spaces.
    pub fn write_prefixed(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent);
        let _ = write!(out, "{pad}<edXML:{}", self.name);
        for (name, value) in &self.attributes {
            let _ = write!(out, " {name}=\"{}\"", escape(value, true));
        }
        if self.children.is_empty() {
            if self.text.is_empty() {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(out, ">{}</edXML:{}>", escape(&self.text, false), self.name);
            }
            return;
        }
        out.push_str(">\n");
        for child in &self.children {
            child.write_prefixed(out, indent + 1);
        }
        let _ = writeln!(out, "{pad}</edXML:{}>", self.name);
    }

    /// How many bytes of text and names the tree holds (its bound).
    pub fn weight(&self) -> usize {
        self.name.len()
            + self.text.len()
            + self
                .attributes
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
            + self.children.iter().map(Element::weight).sum::<usize>()
    }
}

/// Escapes text (`& < >`, and CR so it survives) or an attribute value
/// (also `"` and the whitespace characters a parser would fold).
pub fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            other => out.push(other),
        }
    }
    out
}
