//! YAML text → spanned [`Node`] tree, using yaml-rust2's event parser
//! (its `Yaml` tree drops positions, and serde_yaml stops at the first error).

use super::{Located, Node, Span, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Alias expansion copies nodes; this bounds "billion laughs" style input.
const MAX_ALIAS_NODES: usize = 1_000_000;

const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Parses one YAML document.
///
/// Plain scalars are typed by the YAML 1.2 core schema; quoted and block
/// scalars are always strings. A syntax error stops parsing (the scanner
/// cannot recover) but duplicate-key errors found before it are kept.
/// An empty file yields a `Null` node at 1:1.
pub fn parse_yaml(text: &str) -> Result<Node, Vec<Located>> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                let span = Span::from_marker(e.marker());
                b.errors.push(Located::new(span, format!("syntax error: {}", e.info())));
                break;
            }
        };
        let span = Span::from_marker(&mark);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    b.errors.push(Located::new(
                        span,
                        "a workflow file must contain a single YAML document, found a second one",
                    ));
                    break;
                }
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            event => b.event(event, span),
        }
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    Ok(b.root.unwrap_or(Node::new(Value::Null, Span::new(1, 1))))
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        // Key identity → span of its first occurrence, for duplicate detection.
        seen: HashMap<String, Span>,
        span: Span,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    errors: Vec<Located>,
}

impl Builder {
    fn event(&mut self, event: Event, span: Span) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref()).unwrap_or_else(|msg| {
                    self.errors.push(Located::new(span, msg));
                    Value::Null
                });
                self.finish(Node::new(value, span), anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "seq", span);
                self.stack.push(Frame::Seq { items: Vec::new(), span, anchor });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "map", span);
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    seen: HashMap::new(),
                    span,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, span, anchor }) => self.finish(Node::new(Value::Seq(items), span), anchor),
                Some(Frame::Map { entries, span, anchor, .. }) => {
                    // yaml-rust2 marks a block mapping after its first key; the
                    // mapping really starts at that key.
                    let span = entries.first().map_or(span, |(k, _)| span.min(k.span));
                    self.finish(Node::new(Value::Map(entries), span), anchor)
                }
                None => {}
            },
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(target) => {
                        self.alias_nodes += target.count();
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            self.errors.push(Located::new(
                                span,
                                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                            ));
                            Node::new(Value::Null, span)
                        } else {
                            // The copy sits at the alias, so type errors point where it is used;
                            // nodes inside keep the anchor's positions.
                            Node::new(target.value.clone(), span)
                        }
                    }
                    None => {
                        self.errors.push(Located::new(
                            span,
                            "alias refers to its own enclosing anchor (recursive aliases are not supported)",
                        ));
                        Node::new(Value::Null, span)
                    }
                };
                self.finish(node, 0);
            }
            _ => {}
        }
    }

    /// Attaches a completed node to its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, seen, .. }) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let identity = node.to_json().to_string();
                    if let Some(first) = seen.get(&identity) {
                        self.errors.push(Located::new(
                            node.span,
                            format!("duplicate key `{}` (first at {first})", node.key_text()),
                        ));
                    } else {
                        seen.insert(identity, node.span);
                    }
                    *pending_key = Some(node);
                }
            },
        }
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, expected: &str, span: Span) {
        if let Some(tag) = tag {
            if !(tag.handle == CORE_TAG && tag.suffix == expected) {
                self.errors.push(Located::new(span, format!("unsupported tag `{}{}`", tag.handle, tag.suffix)));
            }
        }
    }
}

fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        return resolve_tagged(text, tag);
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text));
    }
    resolve_plain(text)
}

/// YAML 1.2 core schema for untagged plain scalars.
fn resolve_plain(text: String) -> Result<Value, String> {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(int) = parse_int(&text) {
        return int.map(Value::Int);
    }
    if let Some(f) = parse_float(&text) {
        return Ok(Value::Float(f));
    }
    Ok(Value::Str(text))
}

/// Explicit core tags (`!!str 1`, `!!float 3`); anything else is rejected
/// rather than silently ignored.
fn resolve_tagged(text: String, tag: &Tag) -> Result<Value, String> {
    let name = format!("{}{}", tag.handle, tag.suffix);
    let bad = |what: &str| format!("`{text}` is not a valid {what} (tag `{name}`)");
    if tag.handle != CORE_TAG {
        if name == "!" {
            return Ok(Value::Str(text));
        }
        return Err(format!("unsupported tag `{name}`"));
    }
    match tag.suffix.as_str() {
        "str" => Ok(Value::Str(text)),
        "null" => match resolve_plain(text.clone())? {
            Value::Null => Ok(Value::Null),
            _ => Err(bad("null")),
        },
        "bool" => match resolve_plain(text.clone())? {
            v @ Value::Bool(_) => Ok(v),
            _ => Err(bad("boolean")),
        },
        "int" => match parse_int(&text) {
            Some(r) => r.map(Value::Int),
            None => Err(bad("integer")),
        },
        "float" => match (parse_int(&text), parse_float(&text)) {
            (Some(Ok(i)), _) => Ok(Value::Float(i as f64)),
            (_, Some(f)) => Ok(Value::Float(f)),
            _ => Err(bad("float")),
        },
        _ => Err(format!("unsupported tag `{name}`")),
    }
}

/// `None` if `s` is not integer syntax; `Some(Err)` if it is but overflows i64.
fn parse_int(s: &str) -> Option<Result<i64, String>> {
    let (digits, radix, negative) = if let Some(h) = s.strip_prefix("0x") {
        (h, 16, false)
    } else if let Some(o) = s.strip_prefix("0o") {
        (o, 8, false)
    } else {
        match s.strip_prefix('-') {
            Some(d) => (d, 10, true),
            None => (s.strip_prefix('+').unwrap_or(s), 10, false),
        }
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Parse with the sign attached so i64::MIN is representable.
    let signed = if negative { format!("-{digits}") } else { digits.to_string() };
    Some(
        i64::from_str_radix(&signed, radix)
            .map_err(|_| format!("integer `{s}` does not fit in a 64-bit signed integer")),
    )
}

/// Core-schema float: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan`.
fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let negative = s.starts_with('-');
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let b = unsigned.as_bytes();
    let digits_from = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits_from(0);
    let int_digits = i;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        let end = digits_from(i + 1);
        frac_digits = end - (i + 1);
        i = end;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let end = digits_from(i);
        if end == i {
            return None;
        }
        i = end;
    }
    if i != b.len() {
        return None;
    }
    s.parse().ok()
}
