//! End-to-end tests: text → tree → typed config, with exact positions.

use super::*;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

fn parse(text: &str) -> Node {
    parse_yaml(text).unwrap_or_else(|e| panic!("parse failed: {e:?}"))
}

/// The located error from deserialising `text` as `T`, as "line:col: message".
fn err<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
    from_node::<T>(&parse(text)).unwrap_err().to_string()
}

fn sp(line: u32, col: u32) -> Span {
    Span::new(line, col)
}

// ---------------------------------------------------------------- parsing

#[test]
fn scalar_typing_follows_core_schema() {
    let cases: &[(&str, Value)] = &[
        ("", Value::Null),
        ("~", Value::Null),
        ("null", Value::Null),
        ("NULL", Value::Null),
        ("true", Value::Bool(true)),
        ("False", Value::Bool(false)),
        ("yes", Value::Str("yes".into())),
        ("42", Value::Int(42)),
        ("-7", Value::Int(-7)),
        ("+3", Value::Int(3)),
        ("0x1F", Value::Int(31)),
        ("0o17", Value::Int(15)),
        ("-9223372036854775808", Value::Int(i64::MIN)),
        ("1.5", Value::Float(1.5)),
        ("1e-3", Value::Float(0.001)),
        ("-2.5E+2", Value::Float(-250.0)),
        (".5", Value::Float(0.5)),
        ("3.", Value::Float(3.0)),
        (".inf", Value::Float(f64::INFINITY)),
        ("-.Inf", Value::Float(f64::NEG_INFINITY)),
        ("1_000", Value::Str("1_000".into())),
        ("0x", Value::Str("0x".into())),
        ("1e", Value::Str("1e".into())),
        ("inf", Value::Str("inf".into())),
        ("'42'", Value::Str("42".into())),
        ("\"true\"", Value::Str("true".into())),
        ("'null'", Value::Str("null".into())),
        ("!!str 12", Value::Str("12".into())),
        ("!!float 3", Value::Float(3.0)),
        ("hello world", Value::Str("hello world".into())),
    ];
    for (text, want) in cases {
        let got = parse(&format!("v: {text}\n"));
        assert_eq!(&got.get("v").unwrap().value, want, "for `{text}`");
    }
    assert!(matches!(parse("v: .nan").get("v").unwrap().value, Value::Float(f) if f.is_nan()));
}

#[test]
fn out_of_range_integer_is_an_error() {
    let e = parse_yaml("a: 1\nseed: 18446744073709551615\n").unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].span, sp(2, 7));
    assert!(e[0].message.contains("does not fit"), "{}", e[0]);
}

#[test]
fn spans_of_keys_values_and_collections() {
    let n = parse("a:\n  b: 1\n  c: [1, {d: 'x'}]\n");
    assert_eq!(n.span, sp(1, 1));
    let a = n.get("a").unwrap();
    assert_eq!(a.span, sp(2, 3), "block mapping starts at its first key");
    let (b_key, b_val) = &a.as_map().unwrap()[0];
    assert_eq!((b_key.span, b_val.span), (sp(2, 3), sp(2, 6)));
    let c = a.get("c").unwrap();
    assert_eq!(c.span, sp(3, 6));
    let flow = &c.as_seq().unwrap()[1];
    assert_eq!(flow.span, sp(3, 10));
    assert_eq!(flow.get("d").unwrap().span, sp(3, 14));
    assert_eq!(flow.get("d").unwrap().as_str(), Some("x"));
}

#[test]
fn multi_line_strings() {
    let n = parse("lit: |\n  one\n  two\nfold: >\n  one\n  two\nplain: a\n  b\n");
    assert_eq!(n.get("lit").unwrap().as_str(), Some("one\ntwo\n"));
    assert_eq!(n.get("fold").unwrap().as_str(), Some("one two\n"));
    assert_eq!(n.get("plain").unwrap().as_str(), Some("a b"));
    // Block scalars are located at their first content line (the scanner's mark).
    assert_eq!(n.get("lit").unwrap().span, sp(2, 3));
}

#[test]
fn anchors_and_aliases() {
    let n = parse("base: &opt\n  lr: 0.1\n  steps: 5\nstudent:\n  optim: *opt\nlist: [&one 1, *one]\n");
    let optim = n.get("student").unwrap().get("optim").unwrap();
    assert_eq!(optim.to_json(), serde_json::json!({"lr": 0.1, "steps": 5}));
    // The copy is located at the alias; its contents at the anchor.
    assert_eq!(optim.span, sp(5, 10));
    assert_eq!(optim.get("lr").unwrap().span, sp(2, 7));
    assert_eq!(n.get("list").unwrap().to_json(), serde_json::json!([1, 1]));
}

#[test]
fn syntax_error_position() {
    let e = parse_yaml("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.starts_with("syntax error: "), "{}", e[0]);
    assert_eq!(e[0].span, sp(3, 2));

    let e = parse_yaml("a: 1\n  b: 2\n").unwrap_err();
    assert_eq!(e[0].span, sp(2, 4), "{}", e[0]);
}

#[test]
fn all_duplicate_keys_reported_with_first_position() {
    let text = "a: 1\nm:\n  x: 1\n  y: 2\n  x: 3\nb: 2\na: 4\nf: {k: 1, k: 2}\n";
    let e = parse_yaml(text).unwrap_err();
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "5:3: duplicate key `x` (first at 3:3)",
            "7:1: duplicate key `a` (first at 1:1)",
            "8:11: duplicate key `k` (first at 8:5)",
        ]
    );
    // Same text but different types are different keys.
    parse("1: a\n'1': b\n");
}

#[test]
fn duplicate_keys_kept_alongside_later_syntax_error() {
    let e = parse_yaml("a: 1\na: 2\nb: [\n").unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].to_string(), "2:1: duplicate key `a` (first at 1:1)");
}

#[test]
fn empty_file_and_multiple_documents() {
    assert_eq!(parse(""), Node::new(Value::Null, sp(1, 1)));
    assert_eq!(parse("# only a comment\n").value, Value::Null);
    let e = parse_yaml("a: 1\n---\nb: 2\n").unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].span, sp(2, 1));
    assert!(e[0].message.contains("single YAML document"));
}

#[test]
fn unsupported_tag_is_an_error() {
    let e = parse_yaml("a: !custom x\n").unwrap_err();
    assert_eq!(e[0].to_string(), "1:12: unsupported tag `!custom`");
}

#[test]
fn recursive_alias_is_rejected() {
    let e = parse_yaml("a: &x [1, *x]\n").unwrap_err();
    assert_eq!(e[0].span, sp(1, 11));
}

// ---------------------------------------------------------------- node helpers

#[test]
fn to_json_round_trip() {
    let text = "name: kd\nn: 3\nx: 1.5\nok: true\nnone: ~\nlist: [1, 'two', {three: 3}]\nnested: {a: {b: [null]}}\n";
    let n = parse(text);
    let json = n.to_json();
    assert_eq!(
        json,
        serde_json::json!({"name": "kd", "n": 3, "x": 1.5, "ok": true, "none": null,
            "list": [1, "two", {"three": 3}], "nested": {"a": {"b": [null]}}})
    );
    // Key order is preserved.
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "n", "x", "ok", "none", "list", "nested"]);
    let back = Node::from_json(&json, sp(9, 9));
    assert_eq!(back.to_json(), json);
    assert_eq!(back.get("n").unwrap().value, Value::Int(3));
    assert_eq!(back.get("list").unwrap().span, sp(9, 9));
    // Serialize gives the same plain data.
    assert_eq!(serde_json::to_value(&n).unwrap(), json);
    // Non-string keys become text in JSON.
    assert_eq!(parse("1: a\ntrue: b\n").to_json(), serde_json::json!({"1": "a", "true": "b"}));
}

#[test]
fn kind_names() {
    let n = parse("[~, true, 1, 1.0, s, [], {}]");
    let kinds: Vec<&str> = n.as_seq().unwrap().iter().map(Node::kind_name).collect();
    assert_eq!(kinds, ["null", "boolean", "integer", "float", "string", "sequence", "mapping"]);
}

// ---------------------------------------------------------------- deserialisation

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Workflow {
    name: String,
    #[serde(default)]
    seed: u64,
    data: Data,
    steps: Vec<Step>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    model: Option<Model>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Data {
    path: String,
    batch_size: usize,
    #[serde(default)]
    shuffle: bool,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Step {
    id: String,
    epochs: u32,
    lr: f64,
    temperature: Option<f32>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(tag = "arch", deny_unknown_fields)]
enum Model {
    #[serde(rename = "mlp")]
    Mlp { hidden: Vec<u32> },
    #[serde(rename = "cnn")]
    Cnn { channels: u32 },
}

const GOOD: &str = "\
name: kd
data:
  path: data.csv
  batch_size: 32
steps:
  - id: teacher
    epochs: 2
    lr: 1
  - {id: student, epochs: 3, lr: 0.01, temperature: 4}
model:
  arch: mlp
  hidden: [64, 32]
";

#[test]
fn deserialises_nested_config() {
    let w: Workflow = from_node(&parse(GOOD)).unwrap();
    assert_eq!(w.name, "kd");
    assert_eq!(w.seed, 0);
    assert_eq!(w.data.batch_size, 32);
    assert_eq!(w.steps[0].lr, 1.0, "integer accepted as float");
    assert_eq!(w.steps[1].temperature, Some(4.0));
    assert_eq!(w.steps[0].temperature, None);
    assert_eq!(w.model, Some(Model::Mlp { hidden: vec![64, 32] }));
}

#[test]
fn unknown_field_in_nested_struct_points_at_key() {
    let text = GOOD.replace("  batch_size: 32\n", "  batch_size: 32\n  shufle: true\n");
    assert_eq!(err::<Workflow>(&text), "5:3: unknown field `shufle`, expected one of `path`, `batch_size`, `shuffle`");
}

#[test]
fn wrong_type_in_vec_element_points_at_value() {
    let text = GOOD.replace("epochs: 3,", "epochs: three,");
    assert_eq!(err::<Workflow>(&text), "9:27: expected a non-negative integer, found string \"three\"");
    let text = GOOD.replace("    epochs: 2", "    epochs: -2");
    assert_eq!(err::<Workflow>(&text), "7:13: expected a non-negative integer in 0..=4294967295, found -2");
    let text = GOOD.replace("batch_size: 32", "batch_size: [32]");
    assert_eq!(err::<Workflow>(&text), "4:15: expected a non-negative integer, found sequence");
}

#[test]
fn missing_field_points_at_enclosing_mapping() {
    let text = GOOD.replace("  path: data.csv\n", "");
    assert_eq!(err::<Workflow>(&text), "3:3: missing field `path`");
    let text = GOOD.replace("data:\n  path: data.csv\n  batch_size: 32\n", "");
    assert_eq!(err::<Workflow>(&text), "1:1: missing field `data`");
}

#[test]
fn internally_tagged_enum() {
    let text = GOOD.replace("arch: mlp", "arch: rnn");
    assert_eq!(err::<Workflow>(&text), "11:9: unknown variant `rnn`, expected `mlp` or `cnn`");
    let text = GOOD.replace("  arch: mlp\n", "");
    assert_eq!(err::<Workflow>(&text), "11:3: missing field `arch`");
    // Content is replayed from a buffer; unknown fields are still found by name.
    let text = GOOD.replace("  hidden: [64, 32]\n", "  hidden: [64, 32]\n  dropout: 0.1\n");
    assert_eq!(err::<Workflow>(&text), "13:3: unknown field `dropout`, expected `hidden`");
    // Wrong types inside buffered content are found by value when unambiguous
    // (the message is serde's, since our deserializer is not involved)...
    let text = GOOD.replace("hidden: [64, 32]", "hidden: [64, 3.5]");
    assert_eq!(err::<Workflow>(&text), "12:16: expected u32, found floating point `3.5`");
    // ...and otherwise fall back to the enclosing mapping.
    let text = GOOD.replace("hidden: [64, 32]", "hidden: [3.5, 3.5]");
    assert_eq!(err::<Workflow>(&text), "11:3: expected u32, found floating point `3.5`");
    let m: Model = from_node(&parse("{arch: cnn, channels: 8}")).unwrap();
    assert_eq!(m, Model::Cnn { channels: 8 });
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Loss {
    Mse,
    Kl { temperature: f64 },
    Weighted(f64),
    Pair(u8, u8),
}

#[test]
fn externally_tagged_enum() {
    let v: Vec<Loss> = from_node(&parse("- mse\n- kl: {temperature: 2}\n- weighted: 0.5\n- pair: [1, 2]\n")).unwrap();
    assert_eq!(v, [Loss::Mse, Loss::Kl { temperature: 2.0 }, Loss::Weighted(0.5), Loss::Pair(1, 2)]);
    assert_eq!(
        err::<Vec<Loss>>("- mse\n- ce\n"),
        "2:3: unknown variant `ce`, expected one of `mse`, `kl`, `weighted`, `pair`"
    );
    assert_eq!(err::<Vec<Loss>>("- kl: {temperature: hot}\n"), "1:21: expected a number, found string \"hot\"");
    assert_eq!(
        err::<Loss>("{kl: {}, mse: ~}"),
        "1:1: expected a mapping with exactly one key (the variant name), found 2 keys"
    );
    assert_eq!(err::<Loss>("kl"), "1:1: variant `kl` needs a mapping; write it as `kl: ...`");
    assert_eq!(err::<Loss>("pair: [1, 2, 3]"), "1:7: invalid length 3, expected 2 elements");
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Schedule {
    Constant(f64),
    Steps(Vec<f64>),
    Named { kind: String },
}

#[test]
fn untagged_enum() {
    let v: Vec<Schedule> = from_node(&parse("[1, [0.1, 0.01], {kind: cosine}]")).unwrap();
    assert_eq!(
        v,
        [Schedule::Constant(1.0), Schedule::Steps(vec![0.1, 0.01]), Schedule::Named { kind: "cosine".into() }]
    );
    assert_eq!(err::<Vec<Schedule>>("[1, true]"), "1:5: data did not match any variant of untagged enum Schedule");
}

#[derive(Deserialize, Debug, PartialEq)]
struct WithFlatten {
    id: String,
    #[serde(flatten)]
    common: Common,
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Common {
    retries: u32,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Meters(f64);

#[derive(Deserialize, Debug, PartialEq)]
struct Misc {
    c: char,
    len: Meters,
    small: i8,
    pair: (String, bool),
    unit: (),
}

#[test]
fn flatten_newtype_and_misc_types() {
    let f: WithFlatten = from_node(&parse("id: a\nretries: 3\nextra: [1, x]\n")).unwrap();
    assert_eq!(f.common.retries, 3);
    assert_eq!(f.rest["extra"], serde_json::json!([1, "x"]));
    assert_eq!(err::<WithFlatten>("id: a\n"), "1:1: missing field `retries`");

    let m: Misc = from_node(&parse("c: x\nlen: 3\nsmall: -4\npair: [p, false]\nunit: ~\n")).unwrap();
    assert_eq!(m, Misc { c: 'x', len: Meters(3.0), small: -4, pair: ("p".into(), false), unit: () });
    assert_eq!(
        err::<Misc>("c: xy\nlen: 3\nsmall: 1\npair: [p, false]\nunit: ~\n"),
        "1:4: expected a single character, found string \"xy\""
    );
    assert_eq!(
        err::<Misc>("c: x\nlen: 3\nsmall: 300\npair: [p, false]\nunit: ~\n"),
        "3:8: expected an integer in -128..=127, found 300"
    );
    assert_eq!(
        err::<Misc>("c: x\nlen: 3\nsmall: 1\npair: [p, 1]\nunit: ~\n"),
        "4:11: expected a boolean (true or false), found integer `1`"
    );
    assert_eq!(err::<String>("12"), "1:1: expected a string, found integer `12`");
    assert_eq!(err::<Data>("- 1"), "1:1: expected struct Data, found sequence");
    let map: BTreeMap<String, Vec<i64>> = from_node(&parse("a: [1]\nb: []\n")).unwrap();
    assert_eq!(map["a"], [1]);
}

// ---------------------------------------------------------------- interpolation

fn params(text: &str) -> BTreeMap<String, Node> {
    match parse(text).value {
        Value::Map(entries) => entries.into_iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v)).collect(),
        _ => panic!("params must be a mapping"),
    }
}

#[test]
fn interpolation_gives_typed_values() {
    let p = params("temperature: 4\nalpha: 0.5\nname: kd\nlayers: [8, 4]\n");
    let mut n = parse(
        "t: \"${params.temperature}\"\na: ${params.alpha}\nlayers: ${params.layers}\n\
         out: runs/${params.name}-t${params.temperature}/a${ params.alpha }\nlit: cost $$${x} $5\n\
         ${params.name}: key untouched\n",
    );
    assert_eq!(interpolate(&mut n, &p), []);
    let t = n.get("t").unwrap();
    assert_eq!((&t.value, t.span), (&Value::Int(4), sp(1, 4)));
    assert_eq!(n.get("a").unwrap().value, Value::Float(0.5));
    assert_eq!(n.get("layers").unwrap().to_json(), serde_json::json!([8, 4]));
    assert_eq!(n.get("out").unwrap().as_str(), Some("runs/kd-t4/a0.5"));
    assert_eq!(n.get("lit").unwrap().as_str(), Some("cost $${x} $5"));
    assert_eq!(n.get("${params.name}").unwrap().as_str(), Some("key untouched"));

    #[derive(Deserialize)]
    struct T {
        t: u32,
        a: f64,
        layers: Vec<usize>,
    }
    let typed: T = from_node(&n).unwrap();
    assert_eq!((typed.t, typed.a, typed.layers), (4, 0.5, vec![8, 4]));
}

#[test]
fn escaped_reference_is_literal() {
    let mut n = parse("a: $${params.x}\n");
    assert_eq!(interpolate(&mut n, &BTreeMap::new()), []);
    assert_eq!(n.get("a").unwrap().as_str(), Some("${params.x}"));
}

#[test]
fn interpolation_errors() {
    let p = params("temperature: 4\nalpha: 0.5\nlayers: [8]\n");
    let text = "\
steps:
  - t: ${params.tmp}
    s: x-${params.layers}
    u: ${params.alpha
    v: ${env.HOME}
    w: ok ${params.alpha}
";
    let mut n = parse(text);
    let errors: Vec<String> = interpolate(&mut n, &p).iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "2:8: unknown parameter `tmp` (known: alpha, layers, temperature)",
            "3:8: `params.layers` is a sequence and can only be used as a whole value, not inside a longer string",
            "4:8: unterminated `${params.alpha`: expected `${params.NAME}` (write `$${` for a literal `${`)",
            "5:8: malformed reference `${env.HOME}`: expected `${params.NAME}` (write `$${` for a literal `${`)",
        ]
    );
    let step = &n.get("steps").unwrap().as_seq().unwrap()[0];
    assert_eq!(step.get("w").unwrap().as_str(), Some("ok 0.5"));
    assert_eq!(step.get("t").unwrap().as_str(), Some("${params.tmp}"), "left unchanged");

    let mut n = parse("a: ${params.x}");
    let e = interpolate(&mut n, &BTreeMap::new());
    assert_eq!(e[0].message, "unknown parameter `x` (no parameters are defined)");
}

#[test]
fn diagnostics_from_pipeline() {
    let e = parse_yaml("a: 1\na: 2\n").unwrap_err();
    let d = Diagnostics::from_located("wf/train.yaml", e);
    assert_eq!(d.to_string(), "wf/train.yaml:2:1: duplicate key `a` (first at 1:1)");
    let err: Box<dyn std::error::Error> = Box::new(d);
    assert!(err.to_string().starts_with("wf/train.yaml:2:1"));
}
