//! Where a node of a suite file is, by its path from the document root
//! (`scenarios[2].consumers[0].gpio-hold.line`), as the YAML parser saw it.
//!
//! Pass two of loading ([`super::load`]) checks values that only make
//! sense together (a line against its device's `lines`), long after
//! deserialization has thrown the marks away. To point at the offending
//! value it asks [`locate`], which reads the document again with the same
//! parser (serde_yaml_ng), walks down the path skipping every other node,
//! and stops at the target by raising an error there: serde_yaml_ng stamps
//! that error with the target's own start mark. A path that leaves the
//! document (a default the file never wrote) stops at the deepest node
//! that exists, so the error still points into the right scenario.
//!
//! This runs only on the error path, once per reported problem.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a [`NodePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key as written (kebab-case field, variant name).
    Key(String),
    /// A position in a sequence, from 0.
    Index(usize),
}

/// A path from the document root to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePath(Vec<Segment>);

impl NodePath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path, then the value of mapping key `key`.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    /// This path, then item `index` of a sequence.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What the probe raises at its target; anything else is a real error.
const FOUND: &str = "dangle-locate: found";

/// The 1-based line and column of the node at `path` in `text` (or of the
/// deepest node on the way that exists). `None` when the text does not
/// parse at all.
pub fn locate(text: &str, path: &NodePath) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe { path: &path.0 }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// Walks down `path`; errs with [`FOUND`] at the node it ends on.
struct Probe<'p> {
    path: &'p [Segment],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Accepts any scalar key and keeps it as text when it is a string.
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        Ok(KeyText(v.as_str().map(str::to_owned)))
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(KeyText(key)) = map.next_key()? {
            if key.as_deref() == Some(want.as_str()) {
                return map.next_value_seed(Probe { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        // Not there: this mapping is as close as it gets.
        Err(de::Error::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut i = 0;
        while i < *want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(FOUND));
            }
            i += 1;
        }
        match seq.next_element_seed(Probe { path: rest })? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(FOUND)),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): point at it.
        Err(de::Error::custom(FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: t
scenarios:
  - name: a
    consumers:
      - gpio-hold: { device: gpio0, line: 40 }
      - i2c-hold:
          device: i2c0
    expect: clean
";

    fn at(path: &NodePath) -> (usize, usize) {
        locate(DOC, path).expect("located")
    }

    #[test]
    fn locate_scalar_in_flow_mapping_points_at_the_value() {
        let p = NodePath::root()
            .key("scenarios")
            .index(0)
            .key("consumers")
            .index(0)
            .key("gpio-hold")
            .key("line");
        assert_eq!(p.to_string(), "scenarios[0].consumers[0].gpio-hold.line");
        assert_eq!(at(&p), (5, 43));
    }

    #[test]
    fn locate_block_mapping_value_points_at_the_value() {
        let p = NodePath::root()
            .key("scenarios")
            .index(0)
            .key("consumers")
            .index(1)
            .key("i2c-hold")
            .key("device");
        assert_eq!(at(&p), (7, 19));
    }

    #[test]
    fn locate_missing_node_stops_at_the_deepest_existing_one() {
        let sc = NodePath::root().key("scenarios").index(0);
        let devices = sc.key("devices").index(0).key("id");
        // The scenario mapping starts at its first key.
        assert_eq!(at(&devices), at(&sc));
        assert_eq!(at(&sc), (3, 5));
        let past_end = NodePath::root().key("scenarios").index(7);
        assert_eq!(at(&past_end), (3, 3));
    }

    #[test]
    fn locate_unparsable_text_is_none() {
        assert_eq!(locate("a: 1\nb: [\n", &NodePath::root().key("c")), None);
    }
}
