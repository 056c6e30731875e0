//! A serde `Deserializer` over a [`Node`] whose errors carry the position of
//! the node that caused them.
//!
//! Every `deserialize_*` on a node stamps its span onto an error passing
//! through it unless the error already has one, so the innermost node wins:
//! a wrong type points at the value, an unknown field at the key (serde derive
//! deserialises keys through the key node), a missing field at the mapping.
//! Errors raised while serde replays buffered content (internally tagged and
//! untagged enums, `flatten`) no longer know their node; the enclosing node
//! then searches its subtree for the one key or scalar the error names, and
//! uses its own span when that is missing or ambiguous (see `de_error`).

use super::de_error::Error;
use super::{Located, Node, Value};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use std::marker::PhantomData;

/// Deserialises `T` from `node`; the error is located at the offending node.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Located> {
    child(node, PhantomData::<T>).map_err(|e| Located::new(e.span.unwrap_or(node.span), e.message))
}

/// Describes a node for "found ..." in messages.
fn unexpected(node: &Node) -> Unexpected<'_> {
    match &node.value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Str(s) => Unexpected::Str(s),
        Value::Seq(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
    }
}

fn type_error(node: &Node, exp: &dyn Expected) -> Error {
    de::Error::invalid_type(unexpected(node), exp)
}

#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    /// Gives `result`'s error a span inside this node unless a deeper node already did.
    fn locate<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|e| e.locate_in(self.0))
    }

    /// An integer in `min..=max`, with a message naming the accepted range.
    fn int_in(self, min: i64, max: i64, what: &str) -> Result<i64, Error> {
        match self.0.value {
            Value::Int(i) if (min..=max).contains(&i) => Ok(i),
            Value::Int(i) => Err(Error::at(self.0.span, format!("expected {what} in {min}..={max}, found {i}"))),
            _ => Err(type_error(self.0, &what)),
        }
    }

    fn visit_seq<V: Visitor<'a>>(self, items: &'a [Node], visitor: V) -> Result<V::Value, Error> {
        let mut access = Seq(items.iter());
        let value = visitor.visit_seq(&mut access)?;
        match access.0.len() {
            0 => Ok(value),
            left => Err(de::Error::invalid_length(items.len(), &format!("{} elements", items.len() - left).as_str())),
        }
    }

    fn visit_map<V: Visitor<'a>>(self, entries: &'a [(Node, Node)], visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Map { entries: entries.iter(), value: None })
    }
}

/// Deserialises a child node. Types that buffer their input (untagged and
/// internally tagged enums) return errors without calling back into the
/// node's `deserialize_*`, so the child's span is applied here too.
fn child<'a, S: DeserializeSeed<'a>>(node: &'a Node, seed: S) -> Result<S::Value, Error> {
    NodeDe(node).locate(seed.deserialize(NodeDe(node)))
}

macro_rules! signed {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let r = self.int_in(<$t>::MIN as i64, <$t>::MAX as i64, "an integer").and_then(|i| visitor.$visit(i as $t));
            self.locate(r)
        }
    };
}

macro_rules! unsigned {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let max = i64::try_from(<$t>::MAX).unwrap_or(i64::MAX);
            let r = self.int_in(0, max, "a non-negative integer").and_then(|i| visitor.$visit(i as $t));
            self.locate(r)
        }
    };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = Error;

    /// Reports the node's real type; internally tagged and untagged enums rely on it.
    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => self.visit_seq(items, visitor),
            Value::Map(entries) => self.visit_map(entries, visitor),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.0.value {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => Err(type_error(self.0, &"a boolean (true or false)")),
        };
        self.locate(r)
    }

    signed!(deserialize_i8, visit_i8, i8);
    signed!(deserialize_i16, visit_i16, i16);
    signed!(deserialize_i32, visit_i32, i32);
    signed!(deserialize_i64, visit_i64, i64);
    unsigned!(deserialize_u8, visit_u8, u8);
    unsigned!(deserialize_u16, visit_u16, u16);
    unsigned!(deserialize_u32, visit_u32, u32);
    unsigned!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    /// Integers are accepted where a float is expected (`lr: 1` is fine).
    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.0.value {
            Value::Float(f) => visitor.visit_f64(f),
            Value::Int(i) => visitor.visit_f64(i as f64),
            _ => Err(type_error(self.0, &"a number")),
        };
        self.locate(r)
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Str(s) if s.chars().count() == 1 => visitor.visit_str(s),
            _ => Err(type_error(self.0, &"a single character")),
        };
        self.locate(r)
    }

    /// Strict: `name: 12` is not a string; quote it.
    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(type_error(self.0, &"a string")),
        };
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        self.locate(r)
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(type_error(self.0, &"null")),
        };
        self.locate(r)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        let r = visitor.visit_newtype_struct(self);
        self.locate(r)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Seq(items) => self.visit_seq(items, visitor),
            _ => Err(type_error(self.0, &visitor)),
        };
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Map(entries) => self.visit_map(entries, visitor),
            _ => Err(type_error(self.0, &visitor)),
        };
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// `variant` (unit variants) or `{variant: content}`.
    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Str(_) => visitor.visit_enum(Enum { tag: self.0, content: None }),
            Value::Map(entries) if entries.len() == 1 => {
                visitor.visit_enum(Enum { tag: &entries[0].0, content: Some(&entries[0].1) })
            }
            Value::Map(entries) => Err(Error::at(
                self.0.span,
                format!("expected a mapping with exactly one key (the variant name), found {} keys", entries.len()),
            )),
            _ => Err(type_error(self.0, &visitor)),
        };
        self.locate(r)
    }

    /// Keys must be strings; a non-string key gets "expected field identifier".
    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(type_error(self.0, &visitor)),
        };
        self.locate(r)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl<'a> IntoDeserializer<'a, Error> for NodeDe<'a> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

struct Seq<'a>(std::slice::Iter<'a, Node>);

impl<'a> SeqAccess<'a> for Seq<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|node| child(node, seed)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'a> MapAccess<'a> for Map<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                child(key, seed).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value =
            self.value.take().ok_or_else(|| <Error as de::Error>::custom("map value requested before its key"))?;
        child(value, seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Externally tagged enum: `tag` names the variant, `content` is its payload
/// (`None` for the bare-string form).
struct Enum<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'a> EnumAccess<'a> for Enum<'a> {
    type Error = Error;
    type Variant = Variant<'a>;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<(T::Value, Variant<'a>), Error> {
        let variant = child(self.tag, seed)?;
        Ok((variant, Variant { tag: self.tag, content: self.content }))
    }
}

struct Variant<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'a> Variant<'a> {
    fn content(&self, what: &str) -> Result<NodeDe<'a>, Error> {
        self.content.map(NodeDe).ok_or_else(|| {
            Error::at(
                self.tag.span,
                format!("variant `{}` needs {what}; write it as `{}: ...`", self.tag.key_text(), self.tag.key_text()),
            )
        })
    }
}

impl<'a> VariantAccess<'a> for Variant<'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            None => Ok(()),
            Some(node) if node.is_null() => Ok(()),
            Some(node) => Err(Error::at(
                node.span,
                format!("variant `{}` takes no value, found {}", self.tag.key_text(), node.kind_name()),
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        let content = self.content("a value")?;
        content.locate(seed.deserialize(content))
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self.content("a sequence")?, visitor)
    }

    fn struct_variant<V: Visitor<'a>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self.content("a mapping")?, visitor)
    }
}
