//! Where things are in a config file: a type-free position tree of the YAML
//! document ([`Node`]) and a cursor over it ([`At`]) that validation uses to
//! put every message at the most specific key or value.

use std::fmt;
use std::sync::Arc;

/// The position tree of a parsed file (see [`Node`]); shared, and not printed
/// by `Debug` since it mirrors the whole document.
#[derive(Clone, Default)]
pub(crate) struct SpanTree(Option<Arc<Node>>);

impl SpanTree {
    /// The position tree of `text` (empty when it is not valid YAML).
    pub(crate) fn parse(text: &str) -> SpanTree {
        SpanTree(Node::parse(text).map(Arc::new))
    }

    /// The root of the tree, where positions are looked up.
    pub(crate) fn root(&self) -> At<'_> {
        At::root(self.0.as_deref())
    }
}

impl fmt::Debug for SpanTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpanTree(..)")
    }
}

/// A type-free copy of the YAML document in which every node knows where it
/// starts. The typed config keeps only coarse spans; this tree lets errors
/// point at the exact key or value (a label's `size`, one regexp, one probe).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Node {
    line: u64,
    column: u64,
    kind: NodeKind,
}

/// What a [`Node`] holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum NodeKind {
    /// `~`, `null` or nothing.
    #[default]
    Null,
    /// A scalar, as text (numbers and booleans are formatted back).
    Scalar(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order, keys with their own positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Parses `text` into a tree; `None` when it is not valid YAML.
    pub(crate) fn parse(text: &str) -> Option<Node> {
        // Typeless parsing rejects `.nan`/`.inf` by default; here they are just text.
        let options = serde_saphyr::options! {
            non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        };
        serde_saphyr::from_str_with_options(text, options).ok()
    }

    /// The scalar text, when this is a scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// A short description of what the node is, for "found ..." in messages.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "nothing (null)".to_string(),
            NodeKind::Scalar(s) => {
                let s: String = s.chars().take(40).collect();
                format!("`{}`", s.escape_debug())
            }
            NodeKind::Seq(_) => "a list".to_string(),
            NodeKind::Map(_) => "a mapping".to_string(),
        }
    }

    /// The mapping entry whose value starts exactly at `line:column`, searched
    /// depth first; `None` when no mapping value starts there.
    pub(crate) fn entry_with_value_at(&self, line: u64, column: u64) -> Option<(&Node, &Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find_map(|(k, v)| {
                if v.position() == (line, column) {
                    Some((k, v))
                } else {
                    v.entry_with_value_at(line, column)
                }
            }),
            NodeKind::Seq(items) => items
                .iter()
                .find_map(|i| i.entry_with_value_at(line, column)),
            _ => None,
        }
    }

    /// The node starting exactly at `line:column` (the outermost one).
    pub(crate) fn node_at(&self, line: u64, column: u64) -> Option<&Node> {
        if self.position() == (line, column) {
            return Some(self);
        }
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find_map(|(k, v)| k.node_at(line, column).or_else(|| v.node_at(line, column))),
            NodeKind::Seq(items) => items.iter().find_map(|i| i.node_at(line, column)),
            _ => None,
        }
    }

    /// The value under `key`, when this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The elements, when this is a sequence (else none).
    pub(crate) fn items(&self) -> &[Node] {
        match &self.kind {
            NodeKind::Seq(items) => items,
            _ => &[],
        }
    }

    /// Whether this is a mapping.
    pub(crate) fn is_map(&self) -> bool {
        matches!(self.kind, NodeKind::Map(_))
    }

    /// Line and column where the node starts.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.line, self.column)
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeKind>::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            kind: spanned.value,
        })
    }
}

impl<'de> serde::Deserialize<'de> for NodeKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_u128<E>(self, v: u128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.to_string()))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A place in the [`Node`] tree that degrades gracefully: asking for a key or
/// index that is not there keeps the nearest known position, so an error
/// always points at the most specific node that exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    node: Option<&'a Node>,
    line: u64,
    column: u64,
}

impl<'a> At<'a> {
    /// The document root (position unknown when there is no tree).
    pub(crate) fn root(node: Option<&'a Node>) -> Self {
        let (line, column) = node.map(Node::position).unwrap_or((0, 0));
        At { node, line, column }
    }

    /// This place, or `line:column` (from the typed config's own spans) when
    /// the tree does not have this node and `line:column` is known: a node's own
    /// span beats the position of the nearest ancestor the tree has.
    pub(crate) fn or_at(self, line: u64, column: u64) -> Self {
        if self.node.is_none() && line != 0 {
            At {
                line,
                column,
                ..self
            }
        } else {
            self
        }
    }

    /// Moves to `node`, keeping the current position when it has none.
    fn to(self, node: Option<&'a Node>) -> Self {
        let (line, column) = match node {
            Some(n) if n.line != 0 => (n.line, n.column),
            _ => (self.line, self.column),
        };
        At { node, line, column }
    }

    fn entry(self, key: &str) -> Option<&'a (Node, Node)> {
        match &self.node?.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)),
            _ => None,
        }
    }

    /// The value under `key`.
    pub(crate) fn get(self, key: &str) -> Self {
        self.to(self.entry(key).map(|(_, v)| v))
    }

    /// The key `key` itself (the best place for "this field ..." messages).
    pub(crate) fn key(self, key: &str) -> Self {
        self.to(self.entry(key).map(|(k, _)| k))
    }

    /// Whether the mapping has `key`.
    pub(crate) fn has(self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// Element `i` of a sequence.
    pub(crate) fn index(self, i: usize) -> Self {
        let item = match self.node.map(|n| &n.kind) {
            Some(NodeKind::Seq(items)) => items.get(i),
            _ => None,
        };
        self.to(item)
    }

    /// 1-based line, 0 when unknown.
    pub(crate) fn line(self) -> u64 {
        self.line
    }

    /// 1-based column, 0 when unknown.
    pub(crate) fn column(self) -> u64 {
        self.column
    }
}
