//! What a classification dataset's labels mean, decided once where the data enters.
//!
//! Integer labels are class indices: classes are `0..=max`, or `0..N` when the dataset declares `classes: N` (a test
//! split may lack a class). Ids so sparse that most classes would have no sample (a stray `100000`, a label byte of
//! 255 among digits) are refused unless declared; classes with no sample are a warning. Named labels get indices in
//! sorted order, or in the order of a declared `classes: [names]`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{DataError, Result};

/// `classes:` on a dataset: how many there are, or their names in index order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum DeclaredClasses {
    Count(i64),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for DeclaredClasses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DeclaredClasses;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of classes (`classes: 10`) or their names (`classes: [cat, dog]`)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(DeclaredClasses::Count(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                i64::try_from(v).map(DeclaredClasses::Count).map_err(|_| E::custom(format!("{v} classes is too many")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(DeclaredClasses::Names(names))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl DeclaredClasses {
    pub fn count(&self) -> i64 {
        match self {
            DeclaredClasses::Count(n) => *n,
            DeclaredClasses::Names(names) => names.len() as i64,
        }
    }

    pub fn names(&self) -> Option<&[String]> {
        match self {
            DeclaredClasses::Count(_) => None,
            DeclaredClasses::Names(names) => Some(names),
        }
    }

    /// A problem with the declaration itself (for the workflow's parse-time errors).
    pub fn problem(&self) -> Option<String> {
        match self {
            DeclaredClasses::Count(n) if *n < 1 => Some(format!("must be a positive number of classes, got {n}")),
            DeclaredClasses::Names(names) if names.is_empty() => Some("lists no class names".into()),
            DeclaredClasses::Names(names) => {
                let mut seen = BTreeSet::new();
                names.iter().find(|n| !seen.insert(n.as_str())).map(|n| format!("names class `{n}` twice"))
            }
            _ => None,
        }
    }
}

/// Without a declaration, more classes than this many times the distinct labels (and more than
/// [`SPARSE_MIN_CLASSES`]) means the ids are not class indices.
const SPARSE_FACTOR: i64 = 2;
const SPARSE_MIN_CLASSES: i64 = 10;

/// The number of classes of integer `labels`, checked: each is `>= 0`, below a declared count, and (undeclared) the
/// ids are not sparse. `place(i)` names where label `i` is written (`file:line:col`, `file: item i`). `source` names
/// the data in the warning about classes with no sample.
pub fn of_indices(
    labels: &[i64],
    declared: Option<&DeclaredClasses>,
    place: impl Fn(usize) -> String,
    source: &str,
) -> Result<i64> {
    let at = |i: usize, msg: String| DataError::Format { path: place(i), msg };
    if let Some(i) = labels.iter().position(|&v| v < 0) {
        return Err(at(i, format!("label {} is negative; class labels are indices 0, 1, …", labels[i])));
    }
    let Some((top, &max)) = labels.iter().enumerate().max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i))) else {
        return Ok(declared.map_or(0, DeclaredClasses::count));
    };
    let used: BTreeSet<i64> = labels.iter().copied().collect();
    let classes = match declared {
        Some(d) if max >= d.count() => {
            return Err(at(top, format!("label {max} is not below the declared `classes` ({})", d.count())))
        }
        Some(d) => d.count(),
        None => {
            let classes = max + 1;
            if classes > SPARSE_MIN_CLASSES && classes > SPARSE_FACTOR * used.len() as i64 {
                return Err(at(
                    top,
                    format!(
                        "label {max} would make {classes} classes, {} of them without a sample: labels are class \
                         indices 0..N; declare `classes: {classes}` on the dataset if that is meant",
                        classes - used.len() as i64
                    ),
                ));
            }
            classes
        }
    };
    warn_unused(classes, &used, source);
    Ok(classes)
}

/// Indices of named labels: their positions in the declared names, or in the sorted set of names. Returns
/// (indices, names).
pub fn of_names(
    labels: &[&str],
    declared: Option<&DeclaredClasses>,
    place: impl Fn(usize) -> String,
    source: &str,
) -> Result<(Vec<i64>, Vec<String>)> {
    let at = |i: usize, msg: String| DataError::Format { path: place(i), msg };
    let names: Vec<String> = match declared {
        None => labels.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>().into_iter().collect(),
        Some(DeclaredClasses::Names(names)) => names.clone(),
        Some(DeclaredClasses::Count(n)) => {
            return Err(at(0, format!("the labels are names; declare them as `classes: [..]` (not a count, {n})")))
        }
    };
    let index: std::collections::HashMap<&str, i64> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), i as i64)).collect();
    let mut ids = Vec::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        match index.get(label) {
            Some(&id) => ids.push(id),
            None => return Err(at(i, format!("label `{label}` is not one of the declared `classes` {names:?}"))),
        }
    }
    warn_unused(names.len() as i64, &ids.iter().copied().collect(), source);
    Ok((ids, names))
}

/// Two sets of class names that must be the same (a model's and its data's, training and validation data), `ours`
/// and `theirs` called `sides.0` and `sides.1` in the message, which names the first class that differs.
pub fn same_names(ours: &[String], theirs: &[String], sides: (&str, &str)) -> std::result::Result<(), String> {
    let (a, b) = sides;
    match ours.iter().zip(theirs).position(|(x, y)| x != y) {
        None if ours.len() == theirs.len() => Ok(()),
        found => {
            let which = found.map(|i| format!(": class {i} is `{}` in {a}, `{}` in {b}", ours[i], theirs[i]));
            Err(format!(
                "{a} has classes {ours:?}, {b} {theirs:?}{}; give the datasets the same `classes: [..]`",
                which.unwrap_or_default()
            ))
        }
    }
}

fn warn_unused(classes: i64, used: &BTreeSet<i64>, source: &str) {
    let missing = classes - used.iter().filter(|c| (0..classes).contains(*c)).count() as i64;
    if missing > 0 {
        // Only the first few are listed: a declared count may be large.
        let shown: Vec<String> = (0..classes).filter(|c| !used.contains(c)).take(8).map(|c| c.to_string()).collect();
        let more = if missing > 8 { format!(" and {} more", missing - 8) } else { String::new() };
        tracing::warn!("{source}: {missing} of {classes} classes have no sample ({}{more})", shown.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(i: usize) -> String {
        format!("f:{}", i + 1)
    }

    #[test]
    fn indices_are_checked_and_sparse_ids_refused_unless_declared() {
        assert_eq!(of_indices(&[0, 2, 1, 2], None, place, "t").unwrap(), 3);
        assert_eq!(of_indices(&[0, 5], None, place, "t").unwrap(), 6); // a gap: a warning, not an error
        let e = of_indices(&[0, 1, 100000, 1], None, place, "t").unwrap_err().to_string();
        assert!(e.starts_with("f:3: label 100000 would make 100001 classes, 99998 of them"), "{e}");
        assert_eq!(of_indices(&[0, 1, 100000], Some(&DeclaredClasses::Count(100001)), place, "t").unwrap(), 100001);
        let e = of_indices(&[0, 3, 1], Some(&DeclaredClasses::Count(3)), place, "t").unwrap_err().to_string();
        assert!(e.starts_with("f:2: label 3 is not below the declared `classes` (3)"), "{e}");
        let e = of_indices(&[0, -1], None, place, "t").unwrap_err().to_string();
        assert!(e.starts_with("f:2: label -1 is negative"), "{e}");
        // A test split may lack a class: the declared count stands.
        assert_eq!(of_indices(&[0, 1], Some(&DeclaredClasses::Count(3)), place, "t").unwrap(), 3);
    }

    #[test]
    fn names_sort_or_follow_the_declaration() {
        let (ids, names) = of_names(&["dog", "cat", "dog"], None, place, "t").unwrap();
        assert_eq!((ids, names), (vec![1, 0, 1], vec!["cat".to_string(), "dog".to_string()]));
        let declared = DeclaredClasses::Names(vec!["dog".into(), "cat".into(), "emu".into()]);
        let (ids, names) = of_names(&["dog", "cat"], Some(&declared), place, "t").unwrap();
        assert_eq!((ids, names.len()), (vec![0, 1], 3));
        let e = of_names(&["dog", "gnu"], Some(&declared), place, "t").unwrap_err().to_string();
        assert!(e.starts_with("f:2: label `gnu` is not one of the declared `classes`"), "{e}");
        assert_eq!(DeclaredClasses::Names(vec!["a".into(), "a".into()]).problem().unwrap(), "names class `a` twice");
    }
}
