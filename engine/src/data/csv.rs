//! Numeric CSV tables with one label column. Hand-written: the files we meet are plain numbers separated by a single
//! delimiter (no quoting), and a small parser gives `file:line` errors without another dependency.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::error::read_uncompressed;
use super::{DataError, Dataset, DatasetMeta, Result};

/// Which column holds the label. In YAML: `last`, `first`, a 0-based column index, or a header name.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelColumn {
    Last,
    First,
    /// 0-based column index.
    Index(usize),
    /// Column named in the header row (implies a header).
    Name(String),
}

impl Serialize for LabelColumn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            LabelColumn::Last => s.serialize_str("last"),
            LabelColumn::First => s.serialize_str("first"),
            LabelColumn::Index(i) => s.serialize_u64(*i as u64),
            LabelColumn::Name(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for LabelColumn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LabelColumn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`last`, `first`, a column index or a header name")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<LabelColumn, E> {
                Ok(LabelColumn::Index(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<LabelColumn, E> {
                usize::try_from(v)
                    .map(LabelColumn::Index)
                    .map_err(|_| E::custom(format!("a column index is 0 or more, found {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<LabelColumn, E> {
                Ok(match v {
                    "last" => LabelColumn::Last,
                    "first" => LabelColumn::First,
                    name => LabelColumn::Name(name.to_string()),
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CsvOptions {
    pub label: LabelColumn,
    /// `None`: auto-detect (see [`load`]).
    pub header: Option<bool>,
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { label: LabelColumn::Last, header: None, delimiter: b',' }
    }
}

/// Loads a CSV as `x: [N, features]`, `y: [N]`.
///
/// - Header auto-detection: the first row is a header when one of its feature fields is not a number, or when only
///   its label field is non-numeric while the second row's label is numeric. `LabelColumn::Name` always needs one.
/// - Labels: if every label is an integer (`3` or `3.0`) it is used as the class index (must be ≥ 0; classes =
///   max + 1). Otherwise all labels are treated as names, sorted, and mapped to indices (`meta.class_names`).
/// - Blank lines are skipped; fields are trimmed, so trailing spaces and CRLF line ends are fine.
pub fn load(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let bytes = read_uncompressed(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataError::format(path, format!("not UTF-8 text: {e}")))?;
    let delim = opts.delimiter as char;
    let at = |line: usize, msg: String| DataError::Format { path: format!("{}:{line}", path.display()), msg };
    // (1-based line number, fields)
    let rows: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split(delim).map(str::trim).collect()))
        .collect();
    let Some((first_line, first)) = rows.first() else {
        return Err(DataError::format(path, "empty file: no rows"));
    };
    let ncols = first.len();
    if ncols < 2 {
        return Err(at(*first_line, format!("found {ncols} column; need at least one feature and a label")));
    }

    let is_num = |s: &str| s.parse::<f64>().is_ok();
    let header = match (&opts.label, opts.header) {
        (LabelColumn::Name(_), Some(false)) => {
            return Err(DataError::Invalid("a label column given by name needs a header row".into()))
        }
        (LabelColumn::Name(_), _) => true,
        (_, Some(h)) => h,
        (label, None) => {
            let li = label_index(label, ncols, None).map_err(|m| at(*first_line, m))?;
            let features_text = first.iter().enumerate().any(|(i, f)| i != li && !is_num(f));
            let label_only =
                !is_num(first[li]) && rows.get(1).is_some_and(|(_, r)| r.get(li).is_some_and(|f| is_num(f)));
            features_text || label_only
        }
    };
    let li = label_index(&opts.label, ncols, header.then_some(first)).map_err(|m| at(*first_line, m))?;
    let data = if header { &rows[1..] } else { &rows[..] };
    if data.is_empty() {
        return Err(DataError::format(path, "no data rows"));
    }

    let nfeat = ncols - 1;
    let mut x = Vec::with_capacity(data.len() * nfeat);
    let mut labels = Vec::with_capacity(data.len());
    for (line, fields) in data {
        if fields.len() != ncols {
            return Err(at(*line, format!("expected {ncols} columns, found {}", fields.len())));
        }
        for (i, f) in fields.iter().enumerate() {
            if i == li {
                labels.push(*f);
            } else {
                let v = f.parse::<f32>().map_err(|_| at(*line, format!("column {}: {f:?} is not a number", i + 1)))?;
                x.push(v);
            }
        }
    }

    let (y, classes, class_names) = encode_labels(&labels, |row, msg| at(data[row].0, msg))?;
    let n = data.len() as i64;
    let meta = DatasetMeta {
        sample_shape: vec![nfeat as i64],
        classes,
        class_names,
        source: format!("csv:{}", path.display()),
        vocab: None,
    };
    Dataset::new(Tensor::from_slice(&x).view([n, nfeat as i64]), Tensor::from_slice(&y), meta)
}

fn label_index(label: &LabelColumn, ncols: usize, header: Option<&Vec<&str>>) -> std::result::Result<usize, String> {
    match label {
        LabelColumn::Last => Ok(ncols - 1),
        LabelColumn::First => Ok(0),
        LabelColumn::Index(i) if *i < ncols => Ok(*i),
        LabelColumn::Index(i) => Err(format!("label column {i} is out of range ({ncols} columns, 0-based)")),
        LabelColumn::Name(name) => header
            .and_then(|h| h.iter().position(|c| c == name))
            .ok_or_else(|| format!("no column named {name:?} in the header")),
    }
}

/// Integer labels as-is; otherwise sorted names. Returns (indices, classes, names).
fn encode_labels(
    labels: &[&str],
    at: impl Fn(usize, String) -> DataError,
) -> Result<(Vec<i64>, i64, Option<Vec<String>>)> {
    let as_int = |s: &str| {
        s.parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().filter(|v| v.fract() == 0.0 && v.abs() < 1e15).map(|v| v as i64))
    };
    let ints: Option<Vec<i64>> = labels.iter().map(|s| as_int(s)).collect();
    if let Some(ints) = ints {
        if let Some(row) = ints.iter().position(|&v| v < 0) {
            return Err(at(row, format!("label {} is negative; class labels must be >= 0", ints[row])));
        }
        let classes = ints.iter().max().map_or(0, |m| m + 1);
        return Ok((ints, classes, None));
    }
    let names: Vec<String> = labels.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let y = labels.iter().map(|s| names.binary_search_by(|n| n.as_str().cmp(s)).expect("present") as i64).collect();
    Ok((y, names.len() as i64, Some(names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn ys(ds: &Dataset) -> Vec<i64> {
        Vec::<i64>::try_from(&ds.y).unwrap()
    }

    #[test]
    fn label_column_options_and_header_detection() {
        let (_d, p) = write("1,2,0\r\n3,4,1 \r\n\n5,6,2\r\n");
        let ds = load(&p, &CsvOptions::default()).unwrap();
        assert_eq!((ds.len(), ds.meta.sample_shape.clone(), ds.meta.classes), (3, vec![2], 3));
        assert_eq!(ys(&ds), vec![0, 1, 2]);
        let first = load(&p, &CsvOptions { label: LabelColumn::First, ..Default::default() }).unwrap();
        assert_eq!(ys(&first), vec![1, 3, 5]);
        assert_eq!(first.x.double_value(&[1, 1]), 1.0);
        let mid = load(&p, &CsvOptions { label: LabelColumn::Index(1), ..Default::default() }).unwrap();
        assert_eq!(ys(&mid), vec![2, 4, 6]);

        let (_d, p) = write("a,b,target\n1,2,1\n3,4,0\n");
        let ds = load(&p, &CsvOptions { label: LabelColumn::Name("a".into()), ..Default::default() }).unwrap();
        assert_eq!(ys(&ds), vec![1, 3]);
        assert_eq!(load(&p, &CsvOptions::default()).unwrap().len(), 2); // auto-detected header
                                                                        // Only the label header is text: still a header.
        let (_d, p) = write("0,1,label\n1,2,1\n");
        assert_eq!(load(&p, &CsvOptions::default()).unwrap().len(), 1);
        let (_d, p) = write("1,2,1\n3,4,0\n");
        assert_eq!(load(&p, &CsvOptions { header: Some(true), ..Default::default() }).unwrap().len(), 1);
    }

    #[test]
    fn string_labels_become_sorted_class_names() {
        let (_d, p) = write("x,y,kind\n1,2,dog\n3,4,cat\n5,6,dog\n7,8,emu\n");
        let ds = load(&p, &CsvOptions::default()).unwrap();
        assert_eq!(ds.meta.class_names, Some(vec!["cat".into(), "dog".into(), "emu".into()]));
        assert_eq!(ys(&ds), vec![1, 0, 1, 2]);
        // Without a header, a string label in the first row must not be mistaken for one.
        let (_d, p) = write("1,2,dog\n3,4,cat\n");
        assert_eq!(load(&p, &CsvOptions::default()).unwrap().len(), 2);
    }

    #[test]
    fn errors_name_file_and_line() {
        let (_d, p) = write("a,b,c\n1,2,0\n\n3,4\n");
        let msg = load(&p, &CsvOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("t.csv:4") && msg.contains("expected 3 columns, found 2"), "{msg}");
        let (_d, p) = write("1,2,0\n3,x,1\n");
        let msg = load(&p, &CsvOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("t.csv:2") && msg.contains("column 2: \"x\" is not a number"), "{msg}");
        let (_d, p) = write("\n \n");
        let msg = load(&p, &CsvOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("t.csv") && msg.contains("empty"), "{msg}");
        let (_d, p) = write("1,2,-1\n");
        assert!(load(&p, &CsvOptions::default()).unwrap_err().to_string().contains("t.csv:1"));
        std::fs::write(&p, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(load(&p, &CsvOptions::default()).unwrap_err().to_string().contains("gzip"));
    }
}
