//! Writing a response value by value. A response is a sequence of calls on an [`Out`]: keys,
//! scalars, and the start and end of objects and lists, in document order. Three outputs take
//! them: JSON text ([`JsonOut`]), XML text ([`XmlOut`], where a list becomes repeated elements
//! named after its key, as the ECS XML examples show), and a [`Node`] tree ([`NodeOut`], for
//! tests and callers that index into an answer). Resources on a page write themselves through
//! [`Emit`], so a page of Describe* goes from its rows to the body with no tree in between.

use crate::node::Node;
use quick_xml::escape::partial_escape;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Where a response is written. Calls follow the shape of the document: inside an object,
/// every value is preceded by [`Out::key`]; inside a list, values follow one another.
pub trait Out {
    /// The next value is the field `k` of the object being written.
    fn key(&mut self, k: &str);
    /// [`Out::key`] for a name the server itself gives (a literal such as `DiskId`), which
    /// needs no escape in any output, so JSON copies it as it is.
    fn name(&mut self, k: &'static str) {
        self.key(k)
    }
    fn str(&mut self, v: &str);
    fn int(&mut self, v: i64);
    fn float(&mut self, v: f64);
    fn bool(&mut self, v: bool);
    fn null(&mut self);
    fn begin_obj(&mut self);
    fn end_obj(&mut self);
    fn begin_list(&mut self);
    fn end_list(&mut self);
}

/// A value that writes itself to an [`Out`] (one whole value: an object writes its braces).
pub trait Emit: Send + Sync {
    fn emit(&self, o: &mut dyn Out);
}

/// A scalar that can be written as a field's value.
pub trait Scalar {
    fn put(&self, o: &mut dyn Out);
}

impl Scalar for str {
    fn put(&self, o: &mut dyn Out) {
        o.str(self)
    }
}
impl Scalar for String {
    fn put(&self, o: &mut dyn Out) {
        o.str(self)
    }
}
impl Scalar for bool {
    fn put(&self, o: &mut dyn Out) {
        o.bool(*self)
    }
}
impl Scalar for i64 {
    fn put(&self, o: &mut dyn Out) {
        o.int(*self)
    }
}
impl Scalar for u32 {
    fn put(&self, o: &mut dyn Out) {
        o.int(i64::from(*self))
    }
}
impl Scalar for usize {
    fn put(&self, o: &mut dyn Out) {
        o.int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
/// `None` is written as the empty string, as ECS shows an absent id or time.
impl<T: Scalar + ?Sized> Scalar for Option<&T> {
    fn put(&self, o: &mut dyn Out) {
        match self {
            Some(v) => v.put(o),
            None => o.str(""),
        }
    }
}

impl<'a> dyn Out + 'a {
    /// `k: v` inside an object.
    pub fn field<V: Scalar + ?Sized>(&mut self, k: &'static str, v: &V) {
        self.name(k);
        v.put(self);
    }

    /// `k: {inner: [items]}`, the ECS list shape; `items` writes the list's values.
    pub fn wrapped(&mut self, k: &'static str, inner: &'static str, items: impl FnOnce(&mut dyn Out)) {
        self.name(k);
        self.begin_obj();
        self.name(inner);
        self.begin_list();
        items(self);
        self.end_list();
        self.end_obj();
    }
}

/// Bytes JSON strings must escape: controls, `"` and `\\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// JSON text, byte for byte what `serde_json::to_string` gives for the same tree.
#[derive(Debug, Default)]
pub struct JsonOut {
    buf: String,
}

impl JsonOut {
    pub fn with_capacity(bytes: usize) -> JsonOut {
        JsonOut { buf: String::with_capacity(bytes) }
    }

    pub fn finish(self) -> String {
        self.buf
    }

    /// A comma unless this value or key opens its container or follows its key.
    fn sep(&mut self) {
        if !matches!(self.buf.as_bytes().last(), None | Some(b'{' | b'[' | b':')) {
            self.buf.push(',');
        }
    }

    fn quoted(&mut self, s: &str) {
        self.buf.reserve(s.len() + 3);
        self.buf.push('"');
        // Most values need no escape: check, then copy in one piece.
        if !s.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) {
            self.buf.push_str(s);
        } else {
            let bytes = s.as_bytes();
            let mut start = 0;
            for (i, &b) in bytes.iter().enumerate() {
                let esc = match b {
                    b'"' => "\\\"",
                    b'\\' => "\\\\",
                    b'\n' => "\\n",
                    b'\r' => "\\r",
                    b'\t' => "\\t",
                    0x08 => "\\b",
                    0x0c => "\\f",
                    0..=0x1f => "",
                    _ => continue,
                };
                // Escaped bytes are ASCII, so `start..i` always falls on character boundaries.
                self.buf.push_str(&s[start..i]);
                if esc.is_empty() {
                    let _ = write!(self.buf, "\\u{:04x}", b);
                } else {
                    self.buf.push_str(esc);
                }
                start = i + 1;
            }
            self.buf.push_str(&s[start..]);
        }
        self.buf.push('"');
    }
}

impl Out for JsonOut {
    fn key(&mut self, k: &str) {
        self.sep();
        self.quoted(k);
        self.buf.push(':');
    }
    fn name(&mut self, k: &'static str) {
        debug_assert!(!k.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]), "{k:?} needs an escape");
        self.sep();
        self.buf.reserve(k.len() + 4);
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
    }
    fn str(&mut self, v: &str) {
        self.sep();
        self.quoted(v);
    }
    fn int(&mut self, v: i64) {
        self.sep();
        let _ = write!(self.buf, "{v}");
    }
    fn float(&mut self, v: f64) {
        self.sep();
        // serde_json's own float format (`1.5`, `0.0`); `null` for what JSON cannot carry.
        self.buf.push_str(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into()));
    }
    fn bool(&mut self, v: bool) {
        self.sep();
        self.buf.push_str(if v { "true" } else { "false" });
    }
    fn null(&mut self) {
        self.sep();
        self.buf.push_str("null");
    }
    fn begin_obj(&mut self) {
        self.sep();
        self.buf.push('{');
    }
    fn end_obj(&mut self) {
        self.buf.push('}');
    }
    fn begin_list(&mut self) {
        self.sep();
        self.buf.push('[');
    }
    fn end_list(&mut self) {
        self.buf.push(']');
    }
}

/// XML text: an object is an element holding its fields, a list repeats its values as
/// elements named after the list's key, `null` is an empty element. Characters XML 1.0
/// cannot carry, even escaped, become U+FFFD (see [`xml_chars`]).
#[derive(Debug)]
pub struct XmlOut {
    buf: String,
    /// Names of the open containers, end to end; `frames` indexes into it.
    names: String,
    /// Open containers: (is a list, start and end of its name in `names`).
    frames: Vec<(bool, usize, usize)>,
    /// The key given for the next value.
    pending: String,
}

impl XmlOut {
    /// A document whose root element is `root`, after the XML declaration.
    pub fn new(root: &str) -> XmlOut {
        XmlOut {
            buf: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            names: String::new(),
            frames: Vec::new(),
            pending: root.to_string(),
        }
    }

    pub fn finish(self) -> String {
        self.buf
    }

    /// The element name of the next value: the list's own key inside a list, else the key.
    fn element_name(&self) -> &str {
        match self.frames.last() {
            Some(&(true, s, e)) => &self.names[s..e],
            _ => &self.pending,
        }
    }

    fn open(&mut self) {
        let XmlOut { buf, names, frames, pending } = self;
        let name = match frames.last() {
            Some(&(true, s, e)) => &names[s..e],
            _ => pending.as_str(),
        };
        buf.push('<');
        buf.push_str(name);
        buf.push('>');
    }

    fn close(&mut self) {
        let XmlOut { buf, names, frames, pending } = self;
        let name = match frames.last() {
            Some(&(true, s, e)) => &names[s..e],
            _ => pending.as_str(),
        };
        buf.push_str("</");
        buf.push_str(name);
        buf.push('>');
    }

    fn text(&mut self, v: &str) {
        self.open();
        self.buf.push_str(&partial_escape(xml_chars(v).as_ref()));
        self.close();
    }

    fn push_frame(&mut self, list: bool) {
        let start = self.names.len();
        let name = match self.frames.last() {
            Some(&(true, s, e)) => self.names[s..e].to_string(),
            _ => self.pending.clone(),
        };
        self.names.push_str(&name);
        self.frames.push((list, start, self.names.len()));
    }

    fn pop_frame(&mut self) -> Option<(bool, usize, usize)> {
        let f = self.frames.pop();
        if let Some((_, s, _)) = f {
            self.names.truncate(s);
        }
        f
    }
}

impl Out for XmlOut {
    fn key(&mut self, k: &str) {
        self.pending.clear();
        self.pending.push_str(k);
    }
    fn str(&mut self, v: &str) {
        self.text(v);
    }
    fn int(&mut self, v: i64) {
        self.open();
        let _ = write!(self.buf, "{v}");
        self.close();
    }
    fn float(&mut self, v: f64) {
        self.open();
        self.buf.push_str(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into()));
        self.close();
    }
    fn bool(&mut self, v: bool) {
        self.text(if v { "true" } else { "false" });
    }
    fn null(&mut self) {
        let name = self.element_name().to_string();
        self.buf.push('<');
        self.buf.push_str(&name);
        self.buf.push_str("/>");
    }
    fn begin_obj(&mut self) {
        self.open();
        self.push_frame(false);
    }
    fn end_obj(&mut self) {
        if let Some((_, s, e)) = self.frames.last().copied() {
            self.buf.push_str("</");
            self.buf.push_str(&self.names[s..e]);
            self.buf.push('>');
        }
        self.pop_frame();
    }
    fn begin_list(&mut self) {
        self.push_frame(true);
    }
    fn end_list(&mut self) {
        self.pop_frame();
    }
}

/// `s` with every character XML 1.0 cannot carry, even escaped (C0 controls other than tab,
/// newline and carriage return; U+FFFE and U+FFFF), replaced by U+FFFD, so that the document
/// stays well-formed whatever a stored value holds. JSON carries them escaped, unchanged.
pub fn xml_chars(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if bad(c) { '\u{fffd}' } else { c }).collect())
}

/// A [`Node`] tree built from the calls.
#[derive(Debug, Default)]
pub struct NodeOut {
    /// Open containers with the key each was given in its parent.
    stack: Vec<(Option<String>, Node)>,
    pending: Option<String>,
    done: Option<Node>,
}

impl NodeOut {
    /// The value written, `Null` if nothing was.
    pub fn finish(self) -> Node {
        self.done.unwrap_or(Node::Null)
    }

    fn value(&mut self, v: Node) {
        let key = self.pending.take();
        match self.stack.last_mut() {
            Some((_, Node::Obj(fields))) => fields.push((Cow::Owned(key.unwrap_or_default()), v)),
            Some((_, Node::List(items))) => items.push(v),
            _ => self.done = Some(v),
        }
    }

    fn close(&mut self) {
        if let Some((key, v)) = self.stack.pop() {
            self.pending = key;
            self.value(v);
        }
    }
}

impl Out for NodeOut {
    fn key(&mut self, k: &str) {
        self.pending = Some(k.to_string());
    }
    fn str(&mut self, v: &str) {
        self.value(Node::Str(Cow::Owned(v.to_string())));
    }
    fn int(&mut self, v: i64) {
        self.value(Node::Int(v));
    }
    fn float(&mut self, v: f64) {
        self.value(Node::Float(v));
    }
    fn bool(&mut self, v: bool) {
        self.value(Node::Bool(v));
    }
    fn null(&mut self) {
        self.value(Node::Null);
    }
    fn begin_obj(&mut self) {
        let key = self.pending.take();
        self.stack.push((key, Node::obj()));
    }
    fn end_obj(&mut self) {
        self.close();
    }
    fn begin_list(&mut self) {
        let key = self.pending.take();
        self.stack.push((key, Node::List(Vec::new())));
    }
    fn end_list(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn json_of(v: &Value) -> String {
        let mut o = JsonOut::default();
        Node::from(v.clone()).write(&mut o);
        o.finish()
    }

    #[test]
    fn json_matches_serde_json() {
        let v = json!({"A": 1, "B": [true, null, "x\"\n\u{1}\u{1f}é\\/\t\r\u{8}\u{c}"], "C": {"D": 1.5, "E": 0.0},
                       "F": -3, "G": [], "H": {}, "I": [[1, 2], {"J": []}]});
        assert_eq!(json_of(&v), v.to_string());
    }

    #[test]
    fn node_out_rebuilds_the_tree() {
        let v = json!({"A": {"B": [{"C": 1}, {"C": "x"}]}, "D": null, "E": [1, [2]], "F": 2.5});
        let mut o = NodeOut::default();
        Node::from(v.clone()).write(&mut o);
        assert_eq!(o.finish().into_value(), v);
    }

    #[test]
    fn xml_lists_repeat_their_key() {
        let mut o = XmlOut::new("R");
        Node::from(json!({"Disks": {"Disk": [{"Id": "a<&>"}, {"Id": null}]}, "N": [1, 2], "E": {"L": []}}))
            .write(&mut o);
        assert_eq!(
            o.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><R><Disks><Disk><Id>a&lt;&amp;&gt;</Id></Disk>\
             <Disk><Id/></Disk></Disks><N>1</N><N>2</N><E></E></R>"
        );
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_does(s in any::<String>(), t in "[\\x00-\\x7f]{0,40}") {
            let v = json!({"K": s, "L": [t.clone(), t]});
            prop_assert_eq!(json_of(&v), v.to_string());
        }
    }
}
