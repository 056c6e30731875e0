//! Numeric CSV tables with one label column. Hand-written: the files we meet are plain numbers separated by a single
//! delimiter (no quoting), and a small parser gives `file:line` errors without another dependency.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::error::read_uncompressed;
use super::{DataError, Dataset, DatasetMeta, DeclaredClasses, Result};

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

impl schemars::JsonSchema for LabelColumn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LabelColumn".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                {"enum": ["last", "first"]},
                {"type": "integer", "minimum": 0, "description": "A column index (0 is the first column)."},
                {"type": "string", "description": "A column's name in the header row."}
            ]
        })
    }
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct CsvOptions {
    pub label: LabelColumn,
    /// `None`: auto-detect (see [`load`]).
    pub header: Option<bool>,
    pub delimiter: u8,
    /// The dataset's declared `classes` (see [`super::classes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<DeclaredClasses>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { label: LabelColumn::Last, header: None, delimiter: b',', classes: None }
    }
}

/// One field of a row: its 1-based column (in characters) and its trimmed text.
type Field<'a> = (usize, &'a str);

/// Loads a CSV as `x: [N, features]`, `y: [N]`.
///
/// - Header auto-detection: the first row is a header when one of its feature fields is not a number, or when only
///   its label field is non-numeric while the second row's label is numeric. `LabelColumn::Name` always needs one.
/// - Features must be finite numbers: `NaN`, `inf` and values beyond f32 (`1e400`) are refused at `file:line:col`.
/// - Labels follow [`super::classes`]: all integers (`3` or `3.0`, class indices) or all names; a column that mixes
///   them, or a number that is not whole, is refused at the first offending row.
/// - Blank lines are skipped; fields are trimmed, so trailing spaces and CRLF line ends are fine. Only `delimiter`
///   separates fields; there is no quoting.
pub fn load(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let bytes = read_uncompressed(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataError::format(path, format!("not UTF-8 text: {e}")))?;
    // Spreadsheets write a byte-order mark; left in, it would make the first field text (and the first row a header).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delim = opts.delimiter as char;
    let at = |line: usize, msg: String| DataError::Format { path: format!("{}:{line}", path.display()), msg };
    let at_field = |line: usize, col: usize, msg: String| DataError::Format {
        path: format!("{}:{line}:{col}", path.display()),
        msg,
    };
    // (1-based line number, fields)
    let rows: Vec<(usize, Vec<Field>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, fields(l, delim)))
        .collect();
    let Some((first_line, first)) = rows.first() else {
        return Err(DataError::format(path, "empty file: no rows"));
    };
    let ncols = first.len();
    if ncols < 2 {
        return Err(at(*first_line, format!("found {ncols} column; need at least one feature and a label")));
    }

    let is_num = |s: &str| s.parse::<f64>().is_ok();
    let names: Vec<&str> = first.iter().map(|(_, f)| *f).collect();
    let header = match (&opts.label, opts.header) {
        (LabelColumn::Name(_), Some(false)) => {
            return Err(DataError::Invalid("a label column given by name needs a header row".into()))
        }
        (LabelColumn::Name(_), _) => true,
        (_, Some(h)) => h,
        (label, None) => {
            let li = label_index(label, ncols, None).map_err(|m| at(*first_line, m))?;
            let features_text = names.iter().enumerate().any(|(i, f)| i != li && !is_num(f));
            let label_only =
                !is_num(names[li]) && rows.get(1).is_some_and(|(_, r)| r.get(li).is_some_and(|(_, f)| is_num(f)));
            features_text || label_only
        }
    };
    let li = label_index(&opts.label, ncols, header.then_some(&names)).map_err(|m| at(*first_line, m))?;
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
        for (i, &(col, f)) in fields.iter().enumerate() {
            if i == li {
                labels.push((*line, col, f));
                continue;
            }
            let v = f
                .parse::<f32>()
                .map_err(|_| at_field(*line, col, format!("column {}: {f:?} is not a number", i + 1)))?;
            if !v.is_finite() {
                let lower = f.to_ascii_lowercase();
                let literal = matches!(lower.trim_start_matches(['+', '-']), "inf" | "infinity" | "nan");
                let why = if literal { "" } else { " (out of f32's range)" };
                return Err(at_field(*line, col, format!("column {}: {f:?} is not a finite number{why}", i + 1)));
            }
            x.push(v);
        }
    }

    let place = |row: usize| format!("{}:{}:{}", path.display(), labels[row].0, labels[row].1);
    let source = path.display().to_string();
    let texts: Vec<&str> = labels.iter().map(|(_, _, f)| *f).collect();
    let (y, classes, class_names) =
        match label_kind(&texts).map_err(|(row, msg)| DataError::Format { path: place(row), msg })? {
            LabelKind::Indices(ids) => {
                let classes = super::classes::of_indices(&ids, opts.classes.as_ref(), place, &source)?;
                (ids, classes, opts.classes.as_ref().and_then(|d| d.names()).map(<[String]>::to_vec))
            }
            LabelKind::Names => {
                let (ids, names) = super::classes::of_names(&texts, opts.classes.as_ref(), place, &source)?;
                (ids, names.len() as i64, Some(names))
            }
        };
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

/// The trimmed fields of a line with their 1-based columns (counted in characters, as editors do).
fn fields(line: &str, delim: char) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for part in line.split(delim) {
        let lead = part.len() - part.trim_start().len();
        out.push((line[..start + lead].chars().count() + 1, part.trim()));
        start += part.len() + delim.len_utf8();
    }
    out
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

enum LabelKind {
    /// Every label a whole number: the class indices.
    Indices(Vec<i64>),
    /// Every label a name.
    Names,
}

/// Whether the labels are class indices or class names; the first number that is not whole, or the first label of
/// the other kind than the column's first, is an error at its row.
fn label_kind(labels: &[&str]) -> std::result::Result<LabelKind, (usize, String)> {
    let index = |s: &str| match (s.parse::<i64>(), s.parse::<f64>()) {
        (Ok(v), _) => Ok(Some(v)),
        (_, Ok(v)) if v.fract() == 0.0 && v.abs() < 9e15 => Ok(Some(v as i64)),
        (_, Ok(_)) => Err(()),
        _ => Ok(None),
    };
    let kind = |id: &Option<i64>| if id.is_some() { "a class index" } else { "a class name" };
    let mut ids = Vec::with_capacity(labels.len());
    let mut first = None;
    for (row, label) in labels.iter().enumerate() {
        let Ok(id) = index(label) else {
            let what = if label.parse::<f64>().is_ok_and(f64::is_finite) { "a whole number" } else { "a class index" };
            return Err((row, format!("label {label:?} is not {what} (integer labels are class indices 0, 1, …)")));
        };
        let column = *first.get_or_insert(id);
        if column.is_some() != id.is_some() {
            return Err((
                row,
                format!(
                    "label {label:?} is {} but the column's first label, {:?}, is {}: labels are all class indices \
                     or all class names",
                    kind(&id),
                    labels[0],
                    kind(&column)
                ),
            ));
        }
        ids.extend(id);
    }
    Ok(if matches!(first, Some(None)) { LabelKind::Names } else { LabelKind::Indices(ids) })
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

    #[test]
    fn labels_are_all_indices_or_all_names_and_cells_finite() {
        let err = |text: &str| {
            let (_dir, p) = write(text);
            load(&p, &CsvOptions::default()).unwrap_err().to_string()
        };
        let msg = err("a,b,label\n1,2,0\n3,4,10\n5,6,x\n");
        assert!(
            msg.contains(
                "t.csv:4:5: label \"x\" is a class name but the column's first label, \"0\", is a class index"
            ),
            "{msg}"
        );
        let msg = err("1,2,cat\n3,4,dog\n5,6,7\n");
        assert!(msg.contains("t.csv:3:5: label \"7\" is a class index but"), "{msg}");
        let msg = err("1,2,0\n3,4,0.5\n");
        assert!(msg.contains("t.csv:2:5: label \"0.5\" is not a whole number"), "{msg}");
        let msg = err("1,2,0\n3,4,100000\n");
        assert!(msg.contains("t.csv:2:5: label 100000 would make 100001 classes"), "{msg}");
        let msg = err("1,NaN,0\n3,4,1\n");
        assert!(msg.contains("t.csv:1:3: column 2: \"NaN\" is not a finite number"), "{msg}");
        let msg = err("1, 2,0\n3,  inf ,1\n");
        assert!(msg.contains("t.csv:2:5: column 2: \"inf\" is not a finite number"), "{msg}");
        let msg = err("1,2,0\n1e400,4,1\n");
        assert!(msg.contains("t.csv:2:1: column 1: \"1e400\" is not a finite number (out of f32's range)"), "{msg}");
        // Declared names fix the order (and may include a class the file lacks).
        let (_d, p) = write("1,2,dog\n3,4,cat\n");
        let classes = Some(DeclaredClasses::Names(vec!["dog".into(), "cat".into(), "emu".into()]));
        let ds = load(&p, &CsvOptions { classes, ..Default::default() }).unwrap();
        assert_eq!((ys(&ds), ds.meta.classes), (vec![0, 1], 3));
    }
}
