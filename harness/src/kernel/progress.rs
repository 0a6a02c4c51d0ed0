//! Build progress: an indicatif bar on a terminal, plain lines otherwise
//! (not a TTY, or `CI` set), or nothing.
//!
//! Progress of `make` is measured by its `CC` lines against an estimate (the
//! count of the last full build of the same tree, or a default).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown (also the values of `--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and `CI` is unset, else plain lines.
    #[default]
    Auto,
    /// Always a bar.
    Bar,
    /// Plain lines on stderr.
    Plain,
    /// Nothing.
    Quiet,
}

/// Plain mode prints at most one compile-progress line this often.
const PLAIN_INTERVAL: Duration = Duration::from_secs(15);

/// The progress reporter [`super::ensure_kernel`] writes to.
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    bar: Option<ProgressBar>,
    done: u64,
    estimate: Option<u64>,
    last_plain: Option<Instant>,
}

impl Progress {
    /// A reporter; `Auto` is resolved here.
    pub fn new(mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto => {
                if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
                    ProgressMode::Bar
                } else {
                    ProgressMode::Plain
                }
            }
            m => m,
        };
        Self {
            mode,
            state: Mutex::new(State::default()),
        }
    }

    /// A reporter that shows nothing (for library callers and tests).
    pub fn quiet() -> Self {
        Self::new(ProgressMode::Quiet)
    }

    /// The resolved mode.
    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A one-line status message (a phase starting, a result).
    pub fn message(&self, msg: &str) {
        let st = self.lock();
        match (self.mode, &st.bar) {
            (ProgressMode::Quiet, _) => {}
            (_, Some(bar)) => bar.println(format!("kernel: {msg}")),
            _ => eprintln!("kernel: {msg}"),
        }
        tracing::debug!("kernel: {msg}");
    }

    /// The compile phase starts; `estimate` is the expected `CC` count.
    pub fn start_compile(&self, estimate: Option<u64>) {
        let mut st = self.lock();
        st.done = 0;
        st.estimate = estimate;
        st.last_plain = Some(Instant::now());
        if self.mode == ProgressMode::Bar {
            let bar = match estimate {
                Some(n) => {
                    let b = ProgressBar::new(n);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{elapsed_precise} [{bar:30}] {pos}/~{len} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b
                }
                None => {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template(
                            "{elapsed_precise} {spinner} {pos} compiled {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b
                }
            };
            b_enable_tick(&bar);
            st.bar = Some(bar);
        }
    }

    /// One `CC` line of make's output.
    pub fn compiled(&self, what: &str) {
        let mut st = self.lock();
        st.done += 1;
        let done = st.done;
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &st.bar {
                    if bar.length().is_some_and(|len| done > len) {
                        bar.set_length(done);
                    }
                    bar.set_position(done);
                    bar.set_message(what.to_owned());
                }
            }
            ProgressMode::Plain => {
                if st.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL) {
                    st.last_plain = Some(Instant::now());
                    match st.estimate {
                        Some(n) => eprintln!("kernel: compiled {done}/~{n} ({what})"),
                        None => eprintln!("kernel: compiled {done} ({what})"),
                    }
                }
            }
            ProgressMode::Auto | ProgressMode::Quiet => {}
        }
    }

    /// The compile phase ended; returns how many `CC` lines were seen.
    pub fn finish_compile(&self) -> u64 {
        let mut st = self.lock();
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        }
        st.done
    }
}

fn b_enable_tick(bar: &ProgressBar) {
    bar.enable_steady_tick(Duration::from_millis(200));
}

/// If `line` is a kbuild `CC` line, the object it compiles.
pub fn cc_target(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("CC")?;
    if !rest.starts_with(' ') {
        return None;
    }
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cc_target_kbuild_lines_recognized() {
        assert_eq!(
            cc_target("  CC      kernel/irq/proc.o"),
            Some("kernel/irq/proc.o")
        );
        assert_eq!(cc_target("  CCACHE  x"), None);
        assert_eq!(cc_target("  LD      vmlinux"), None);
        assert_eq!(cc_target("  CC [M]  foo.o"), Some("[M]"));
    }

    #[test]
    fn progress_quiet_counts_compiles() {
        let p = Progress::quiet();
        p.start_compile(Some(10));
        p.compiled("a.o");
        p.compiled("b.o");
        assert_eq!(p.finish_compile(), 2);
    }
}
