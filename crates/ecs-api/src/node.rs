//! The response tree handlers answer with: ECS shape (PascalCase keys, lists double-wrapped as
//! `{"Disks": {"Disk": [...]}}`), keys in document order. Unlike `serde_json::Value` its keys
//! are `&'static str` (no allocation, no hashing) and JSON is written straight from it by
//! written straight from it (see `write`), so a page of resources costs little more than its
//! bytes; a page can also be an [`Emitted`] value that writes its rows itself. XML is derived
//! from the same calls (see `write::XmlOut`).

use crate::write::{Emit, NodeOut, Out};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// An object key: static for every field the server names, owned only when converted from a
/// `serde_json::Value`.
pub type Key = Cow<'static, str>;

/// One value of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text: borrowed for the constants handlers name, owned for values from the catalog.
    Str(Cow<'static, str>),
    List(Vec<Node>),
    Obj(Vec<(Key, Node)>),
    /// A value that writes itself (a page of resources), with no tree built for it.
    Emit(Emitted),
}

/// A shared [`Emit`] value. Compared and debug-printed by the tree it writes.
#[derive(Clone)]
pub struct Emitted(pub Arc<dyn Emit>);

impl Emitted {
    /// The tree this value writes.
    pub fn to_node(&self) -> Node {
        let mut o = NodeOut::default();
        self.0.emit(&mut o);
        o.finish()
    }
}

impl std::fmt::Debug for Emitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_node().fmt(f)
    }
}

impl PartialEq for Emitted {
    fn eq(&self, other: &Emitted) -> bool {
        self.to_node() == other.to_node()
    }
}

impl Node {
    /// An empty object.
    pub fn obj() -> Node {
        Node::Obj(Vec::new())
    }

    /// Append `key: value` to an object (no effect on other kinds).
    pub fn push(&mut self, key: &'static str, value: impl Into<Node>) {
        if let Node::Obj(fields) = self {
            fields.push((Cow::Borrowed(key), value.into()));
        }
    }

    /// `{outer: {inner: items}}`, the ECS list shape.
    pub fn wrapped(inner: &'static str, items: Vec<Node>) -> Node {
        Node::Obj(vec![(Cow::Borrowed(inner), Node::List(items))])
    }

    /// A value that writes itself.
    pub fn emit(value: impl Emit + 'static) -> Node {
        Node::Emit(Emitted(Arc::new(value)))
    }

    /// Write this value to `o` (see `write` for the outputs).
    pub fn write(&self, o: &mut dyn Out) {
        match self {
            Node::Null => o.null(),
            Node::Bool(b) => o.bool(*b),
            Node::Int(i) => o.int(*i),
            Node::Float(f) => o.float(*f),
            Node::Str(s) => o.str(s),
            Node::List(items) => {
                o.begin_list();
                for i in items {
                    i.write(o);
                }
                o.end_list();
            }
            Node::Obj(fields) => {
                o.begin_obj();
                for (k, v) in fields {
                    match k {
                        Cow::Borrowed(name) => o.name(name),
                        Cow::Owned(key) => o.key(key),
                    }
                    v.write(o);
                }
                o.end_obj();
            }
            Node::Emit(e) => e.0.emit(o),
        }
    }

    /// The same tree as a `serde_json::Value` (tests, and callers that index into answers).
    pub fn into_value(self) -> Value {
        match self {
            Node::Emit(e) => e.to_node().into_value(),
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::Float(f) => Value::from(f),
            Node::Str(s) => Value::String(s.into_owned()),
            Node::List(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Obj(fields) => {
                Value::Object(fields.into_iter().map(|(k, v)| (k.into_owned(), v.into_value())).collect())
            }
        }
    }
}

impl From<Value> for Node {
    fn from(v: Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Node::Str(Cow::Owned(s)),
            Value::Array(items) => Node::List(items.into_iter().map(Node::from).collect()),
            Value::Object(fields) => {
                Node::Obj(fields.into_iter().map(|(k, v)| (Cow::Owned(k), Node::from(v))).collect())
            }
        }
    }
}

impl From<&'static str> for Node {
    fn from(s: &'static str) -> Node {
        Node::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(Cow::Owned(s))
    }
}

impl From<&String> for Node {
    fn from(s: &String) -> Node {
        Node::Str(Cow::Owned(s.clone()))
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::Bool(b)
    }
}

impl From<i64> for Node {
    fn from(i: i64) -> Node {
        Node::Int(i)
    }
}

impl From<usize> for Node {
    fn from(i: usize) -> Node {
        Node::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Node {
    fn from(i: u32) -> Node {
        Node::Int(i64::from(i))
    }
}

impl From<Vec<Node>> for Node {
    fn from(items: Vec<Node>) -> Node {
        Node::List(items)
    }
}

impl From<Vec<String>> for Node {
    fn from(items: Vec<String>) -> Node {
        Node::List(items.into_iter().map(Node::from).collect())
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(i) => s.serialize_i64(*i),
            Node::Float(f) => s.serialize_f64(*f),
            Node::Str(v) => s.serialize_str(v),
            Node::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Node::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            Node::Emit(e) => e.to_node().serialize(s),
        }
    }
}

/// An object literal: `obj! { "DiskId" => id, "Size" => 40 }`; values are anything `Into<Node>`.
#[macro_export]
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {
        $crate::node::Node::Obj(vec![$((::std::borrow::Cow::Borrowed($k), $crate::node::Node::from($v))),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_matches_serde_json_values() {
        let v = json!({"A": 1, "B": [true, null, "x\"\n\u{1}é"], "C": {"D": 1.5, "E": 0.0}, "F": -3});
        let n = Node::from(v.clone());
        assert_eq!(serde_json::to_string(&n).unwrap(), v.to_string());
        assert_eq!(n.into_value(), v);
    }

    #[test]
    fn obj_macro_keeps_order() {
        let n = obj! {"Z" => 1i64, "A" => "a", "L" => vec![obj! {"K" => true}]};
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"Z":1,"A":"a","L":[{"K":true}]}"#);
    }
}
