//! Bisections over real git repositories made by the tests, with a fake
//! step runner: a commit "has the finding" when `state.txt` holds the
//! marker, and "does not build" when a file named `broken` exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cli::{Config, execute};
use super::*;

const TITLE: &str = "WARNING in virtio_gpio_remove";
const NOISE: &str = "INFO: task hung in unrelated_path";

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=dangle test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One commit of the test history: subject, whether the marker is in
/// `state.txt`, whether `broken` exists.
struct Rev {
    subject: &'static str,
    marker: bool,
    broken: bool,
}

/// A repository on branch `main` with one commit per `revs`; the hashes
/// in order.
fn repo(revs: &[Rev]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    git_ok(p, &["init", "-q", "-b", "main"]);
    let mut hashes = Vec::new();
    for (i, r) in revs.iter().enumerate() {
        let state = if r.marker { "base\nMARKER\n" } else { "base\n" };
        std::fs::write(p.join("state.txt"), state).unwrap();
        std::fs::write(p.join("other.txt"), format!("change {i}\n")).unwrap();
        if r.broken {
            std::fs::write(p.join("broken"), "").unwrap();
        } else {
            let _ = std::fs::remove_file(p.join("broken"));
        }
        git_ok(p, &["add", "-A"]);
        git_ok(p, &["commit", "-q", "-m", r.subject]);
        hashes.push(git_ok(p, &["rev-parse", "HEAD"]));
    }
    (dir, hashes)
}

fn rev(subject: &'static str, marker: bool) -> Rev {
    Rev {
        subject,
        marker,
        broken: false,
    }
}

/// Six commits; the fourth adds the marker.
fn cause_history() -> Vec<Rev> {
    vec![
        rev("base", false),
        rev("two", false),
        rev("three", false),
        rev("four: add the WARN", true),
        rev("five", true),
        rev("six", true),
    ]
}

/// Reads the checked-out tree: the marker is the finding, `broken` a
/// failed build. Every run also reports [`NOISE`].
struct Fake {
    tree: PathBuf,
    built: Vec<String>,
    fail_runs_at: Option<usize>,
}

impl Fake {
    fn new(tree: &Path) -> Self {
        Self {
            tree: tree.to_owned(),
            built: Vec::new(),
            fail_runs_at: None,
        }
    }
}

impl StepRunner for Fake {
    fn build(&mut self, commit: &Commit) -> Result<BuildOutcome, BisectError> {
        let head = git_ok(&self.tree, &["rev-parse", "HEAD"]);
        assert_eq!(
            head, commit.hash,
            "build of a commit that is not checked out"
        );
        self.built.push(commit.subject.clone());
        if self.tree.join("broken").exists() {
            return Ok(BuildOutcome::Failed {
                reason: "make bzImage failed".into(),
            });
        }
        Ok(BuildOutcome::Built {
            cached: false,
            ccache: None,
        })
    }

    fn runs(&mut self, n: u32, _seed: u64) -> Result<Vec<Vec<String>>, BisectError> {
        if self.fail_runs_at == Some(self.built.len()) {
            return Err(BisectError::Infrastructure("QEMU died".into()));
        }
        let state = std::fs::read_to_string(self.tree.join("state.txt")).unwrap();
        let mut titles = vec![NOISE.to_owned()];
        if state.contains("MARKER") {
            titles.push(TITLE.to_owned());
        }
        Ok((0..n).map(|_| titles.clone()).collect())
    }
}

fn options(good: &str, bad: &str, direction: Direction) -> BisectOptions {
    BisectOptions {
        good: good.to_owned(),
        bad: bad.to_owned(),
        direction,
        runs: 2,
        seed: 1,
        title: Some(regex::Regex::new("WARNING in virtio_gpio").unwrap()),
        cancel: Arc::default(),
    }
}

/// The tree is on `main` at `head`, clean, with no bisection running.
fn assert_restored(tree: &Path, head: &str) {
    assert_eq!(git_ok(tree, &["rev-parse", "HEAD"]), head);
    assert_eq!(git_ok(tree, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git_ok(tree, &["status", "--porcelain"]), "");
    let log = Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["bisect", "log"])
        .output()
        .unwrap();
    assert!(!log.status.success(), "a bisection is still in progress");
}

fn found(b: &Bisection) -> &Commit {
    match &b.conclusion {
        Conclusion::Found { commit } => commit,
        other => panic!("no commit found: {other:?}"),
    }
}

#[test]
fn bisect_cause_marker_at_fourth_commit_finds_it() {
    let (dir, h) = repo(&cause_history());
    let mut fake = Fake::new(dir.path());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Cause),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(found(&b).hash, h[3]);
    assert_eq!(found(&b).subject, "four: add the WARN");
    assert_eq!(b.status(), Status::Ok);
    assert_eq!(b.steps[0].role, Role::Good);
    assert_eq!(b.steps[1].role, Role::Bad);
    assert_eq!((b.steps[1].seen, b.steps[1].runs), (2, 2));
    // --title filters out the noise every run reports.
    assert_eq!(b.steps[1].titles, [TITLE]);
    assert_eq!(b.steps[0].seen, 0);
    assert!(
        b.steps[2..]
            .iter()
            .all(|s| s.role == Role::Step && s.mark.is_some())
    );
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_fix_marker_removed_at_fourth_commit_finds_it() {
    let hist = vec![
        rev("base with the WARN", true),
        rev("two", true),
        rev("three", true),
        rev("four: fix the WARN", false),
        rev("five", false),
        rev("six", false),
    ];
    let (dir, h) = repo(&hist);
    let mut fake = Fake::new(dir.path());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Fix),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(found(&b).subject, "four: fix the WARN");
    let marks: Vec<Mark> = b.steps.iter().filter_map(|s| s.mark).collect();
    for (s, m) in b.steps[2..].iter().zip(&marks) {
        // Finding seen means "not fixed yet": the old term.
        assert_eq!(*m == Mark::Old, s.seen > 0, "{s:?}");
    }
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_build_failure_away_from_answer_is_skipped_and_found() {
    let mut hist = cause_history();
    hist[4].broken = true;
    hist.push(rev("seven", true));
    let (dir, h) = repo(&hist);
    let mut fake = Fake::new(dir.path());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[6], Direction::Cause),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(found(&b).hash, h[3]);
    assert_restored(dir.path(), &h[6]);
}

#[test]
fn bisect_build_failure_next_to_answer_is_ambiguous() {
    let mut hist = cause_history();
    hist[2].broken = true;
    let (dir, h) = repo(&hist);
    let mut fake = Fake::new(dir.path());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Cause),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap();
    let Conclusion::Ambiguous { candidates } = &b.conclusion else {
        panic!("{:?}", b.conclusion);
    };
    let mut got: Vec<&str> = candidates.iter().map(|c| c.hash.as_str()).collect();
    got.sort_unstable();
    let mut want = vec![h[2].as_str(), h[3].as_str()];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(b.steps.iter().any(|s| s.mark == Some(Mark::Skip)));
    assert_eq!(b.status(), Status::Findings);
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_dirty_tree_is_bad_input_naming_files() {
    let (dir, h) = repo(&cause_history());
    std::fs::write(dir.path().join("state.txt"), "edited\n").unwrap();
    std::fs::write(dir.path().join("stray.c"), "").unwrap();
    let e = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Cause),
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap_err();
    assert_eq!(crate::exit::status_of(&e), Status::BadInput);
    let msg = e.to_string();
    assert!(
        msg.contains("state.txt") && msg.contains("stray.c"),
        "{msg}"
    );
}

#[test]
fn bisect_not_a_git_tree_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let e = bisect(
        dir.path(),
        &options("a", "b", Direction::Cause),
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap_err();
    assert!(matches!(e, BisectError::NotGit { .. }), "{e}");
    assert_eq!(crate::exit::status_of(&e), Status::BadInput);
}

#[test]
fn bisect_unknown_or_reversed_revisions_are_bad_input() {
    let (dir, h) = repo(&cause_history());
    for (good, bad) in [("nosuchrev", h[5].as_str()), (&h[5], &h[0])] {
        let e = bisect(
            dir.path(),
            &options(good, bad, Direction::Cause),
            &mut Fake::new(dir.path()),
            &mut NoObserver,
        )
        .unwrap_err();
        assert_eq!(crate::exit::status_of(&e), Status::BadInput, "{e}");
    }
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_good_endpoint_with_finding_is_wrong_endpoint() {
    let (dir, h) = repo(&cause_history());
    let mut fake = Fake::new(dir.path());
    let b = bisect(
        dir.path(),
        &options(&h[3], &h[5], Direction::Cause),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap();
    let Conclusion::WrongEndpoint(w) = &b.conclusion else {
        panic!("{:?}", b.conclusion);
    };
    assert_eq!(w.which, Role::Good);
    assert!(w.reason.contains("--good already shows"), "{}", w.reason);
    assert_eq!(b.status(), Status::Findings);
    // Nothing was bisected once GOOD was wrong.
    assert_eq!(fake.built.len(), 1);
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_bad_endpoint_without_finding_is_wrong_endpoint() {
    let (dir, h) = repo(&cause_history());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[2], Direction::Cause),
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap();
    let Conclusion::WrongEndpoint(w) = &b.conclusion else {
        panic!("{:?}", b.conclusion);
    };
    assert_eq!(w.which, Role::Bad);
    assert!(w.reason.contains("--bad does not show"), "{}", w.reason);
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_fix_with_cause_endpoints_is_wrong_endpoint() {
    let (dir, h) = repo(&cause_history());
    let b = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Fix),
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap();
    let Conclusion::WrongEndpoint(w) = &b.conclusion else {
        panic!("{:?}", b.conclusion);
    };
    assert_eq!(w.which, Role::Good);
    assert!(w.reason.contains("fix bisection"), "{}", w.reason);
}

#[test]
fn bisect_infrastructure_error_mid_bisection_restores_tree() {
    let (dir, h) = repo(&cause_history());
    let mut fake = Fake::new(dir.path());
    // Builds 1 and 2 are the endpoints; the first bisection step fails.
    fake.fail_runs_at = Some(3);
    let e = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Cause),
        &mut fake,
        &mut NoObserver,
    )
    .unwrap_err();
    assert_eq!(crate::exit::status_of(&e), Status::Infrastructure, "{e}");
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_cancelled_restores_tree() {
    let (dir, h) = repo(&cause_history());
    let opts = options(&h[0], &h[5], Direction::Cause);
    opts.cancel.store(true, Ordering::SeqCst);
    let e = bisect(
        dir.path(),
        &opts,
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap_err();
    assert!(matches!(e, BisectError::Interrupted), "{e}");
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn bisect_in_progress_is_bad_input() {
    let (dir, h) = repo(&cause_history());
    git_ok(dir.path(), &["bisect", "start"]);
    let e = bisect(
        dir.path(),
        &options(&h[0], &h[5], Direction::Cause),
        &mut Fake::new(dir.path()),
        &mut NoObserver,
    )
    .unwrap_err();
    assert!(matches!(e, BisectError::InProgress { .. }), "{e}");
    git_ok(dir.path(), &["bisect", "reset"]);
}

fn config(tree: &Path, args: &[&str]) -> Config {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Top {
        #[command(flatten)]
        a: cli::BisectArgs,
    }
    let mut argv = vec!["dangle-bisect", "--kernel-src", tree.to_str().unwrap()];
    argv.extend_from_slice(args);
    Config::try_from(Top::try_parse_from(argv).unwrap().a).unwrap()
}

#[test]
fn execute_cause_found_exits_0_and_writes_json() {
    let (dir, h) = repo(&cause_history());
    let json = dir.path().join("../bisect-test.json");
    let json = std::path::absolute(json).unwrap();
    let mut c = config(
        dir.path(),
        &[
            "--good",
            &h[0],
            "--bad",
            "main",
            "--scenario",
            "smoke:x",
            "--title",
            "WARNING",
            "--runs",
            "1",
        ],
    );
    c.json = Some(json.clone());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, b) = execute(&c, &mut Fake::new(dir.path()), &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    let err = String::from_utf8(err).unwrap();
    assert_eq!(status, Status::Ok, "{out}\n{err}");
    assert!(
        out.contains("first bad commit: ") && out.contains("four: add the WARN"),
        "{out}"
    );
    assert!(err.contains("-> bad") && err.contains("-> good"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(v["conclusion"], "found");
    assert_eq!(v["commit"]["hash"], h[3]);
    assert_eq!(v["steps"].as_array().unwrap().len(), b.unwrap().steps.len());
    assert_restored(dir.path(), &h[5]);
}

#[test]
fn execute_wrong_endpoint_exits_1_saying_which() {
    let (dir, h) = repo(&cause_history());
    let c = config(
        dir.path(),
        &["--good", &h[4], "--bad", &h[5], "--title", "WARNING"],
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, _) = execute(&c, &mut Fake::new(dir.path()), &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(status, Status::Findings);
    assert!(out.contains("cannot bisect: --good"), "{out}");
}

#[test]
fn execute_dirty_tree_exits_2() {
    let (dir, h) = repo(&cause_history());
    std::fs::write(dir.path().join("other.txt"), "dirty\n").unwrap();
    let c = config(
        dir.path(),
        &["--good", &h[0], "--bad", &h[5], "--scenario", "smoke:x"],
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, _) = execute(&c, &mut Fake::new(dir.path()), &mut out, &mut err);
    assert_eq!(status, Status::BadInput);
    assert!(String::from_utf8(err).unwrap().contains("other.txt"));
}

#[test]
fn args_scenario_without_suite_is_bad_input() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Top {
        #[command(flatten)]
        a: cli::BisectArgs,
    }
    let a = Top::try_parse_from([
        "x",
        "--kernel-src",
        "t",
        "--good",
        "a",
        "--bad",
        "b",
        "--scenario",
        "nocolon",
    ])
    .unwrap()
    .a;
    let e = Config::try_from(a).unwrap_err();
    assert_eq!(crate::exit::status_of(&e), Status::BadInput);
    // Neither --scenario nor --title: clap refuses.
    assert!(Top::try_parse_from(["x", "--kernel-src", "t", "--good", "a", "--bad", "b"]).is_err());
}
