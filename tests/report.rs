//! `anbiq run --report` and `anbiq report` on the quickstart: one self-contained HTML page, checked as text and, where
//! Chromium is installed (CI installs Debian's), rendered by a real browser to a PNG that must not be blank and to a
//! DOM that must hold every chart.
//!
//! `ANBIQ_SCREENSHOT=PATH` keeps the rendered PNG (how README's screenshot is made).

use std::path::{Path, PathBuf};
use std::process::Command;

fn anbiq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anbiq"))
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/quickstart.yaml")
}

/// The quickstart's charts: teacher (loss, validation accuracy, learning rate), the filter's kept samples per class,
/// student and baseline (loss, learning rate each), and the evaluation's bars (accuracy, parameters, latency). Only
/// the teacher has a validation set, so there are no validation curves to overlay.
const CHARTS: usize = 3 + 1 + 2 + 2 + 3;
const STEPS: [&str; 7] = ["digits", "teacher", "logits", "kept", "student", "baseline", "report"];

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn check_page(html: &str, status: &str) {
    assert_eq!(count(html, "<figure class=\"chart\""), CHARTS, "charts");
    assert_eq!(count(html, "data-chart=\"bars\""), 4);
    for id in STEPS {
        assert!(html.contains(&format!("<section class=\"step\" id=\"step-{id}\"")), "no section for {id}");
        assert!(html.contains(&format!("href=\"#step-{id}\"")), "the graph does not link {id}");
    }
    assert_eq!(count(html, &format!("data-status=\"{status}\"")), STEPS.len(), "every step {status}");
    assert!(html.contains("gap closed (accuracy)"), "the student's share of the teacher–baseline gap");
    assert!(html.contains("anbiq run ") && html.contains("--set temperature=8"), "the command to reproduce it");
    // Self-contained: nothing to fetch. (SVG's namespace is a name, not a request.)
    for external in ["<script", "<link", " src=", "url(", "@import"] {
        assert!(!html.contains(external), "the page loads something: {external}");
    }
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"));
}

#[test]
fn the_report_shows_the_run_and_renders_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let lock = dir.path().join("quickstart.lock");
    let page = dir.path().join("quickstart.html");
    // `run … --report PAGE`, then later `report … -o PAGE` from the store alone.
    let anbiq_on = |command: &str, page_flag: &str, page: &Path| {
        let out = anbiq()
            .args([command, "--set", "temperature=8"])
            .arg(quickstart())
            .arg("--store")
            .arg(&store)
            .arg("--lock")
            .arg(&lock)
            .arg(page_flag)
            .arg(page)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("report: {}", page.display())), "{stdout}");
    };
    anbiq_on("run", "--report", &page);
    let html = std::fs::read_to_string(&page).unwrap();
    check_page(&html, "ran");

    // Later, from the store alone: the same page, every step now cached.
    let again = dir.path().join("again.html");
    anbiq_on("report", "-o", &again);
    check_page(&std::fs::read_to_string(&again).unwrap(), "cached");

    render_in_chromium(&page, dir.path());
}

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var_os("ANBIQ_CHROMIUM").map(PathBuf::from), Some("/usr/bin/chromium".into())];
    candidates.into_iter().flatten().find(|p| p.exists())
}

fn render_in_chromium(page: &Path, scratch: &Path) {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium (.ci/run)");
        eprintln!("skipping the browser check: no chromium (apt-get install chromium)");
        return;
    };
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        let profile = tempfile::tempdir_in(scratch).unwrap();
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The DOM as the browser built it: every chart's SVG parsed into the page, plus the step graph.
    let dom = headless(&["--dump-dom"]);
    assert_eq!(count(&dom, "<figure class=\"chart\""), CHARTS, "charts in the rendered DOM");
    assert_eq!(count(&dom, "<svg"), CHARTS + 1, "an SVG per chart and one for the graph");

    let shot = scratch.join("report.png");
    headless(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,1400"]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1280, 1400));
    let channels = info.color_type.samples();
    let rows = pixels[..info.buffer_size()].chunks(channels);
    let inked = rows.clone().filter(|p| p.iter().take(3).any(|&c| c < 200)).count();
    let colours: std::collections::BTreeSet<[u8; 3]> = rows.map(|p| [p[0], p[1], p[2]]).collect();
    let share = inked as f64 / (info.width * info.height) as f64;
    // Text, boxes and lines ink a few per cent of a white page; a blank or failed render inks none.
    assert!(share > 0.01, "the screenshot is blank ({:.3} % inked)", share * 100.0);
    assert!(colours.len() > 50, "only {} colours: the charts did not render", colours.len());
    if let Some(keep) = std::env::var_os("ANBIQ_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
