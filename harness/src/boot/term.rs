//! The terminal `dangle boot` hands to QEMU is given back as it was found.
//!
//! QEMU's stdio chardev puts the terminal in raw mode and restores it when
//! it exits cleanly; when QEMU dies (a signal, an abort) it cannot.
//! [`TermGuard`] saves the settings before QEMU starts and puts them back
//! when dropped, whatever happened in between.

use std::io::IsTerminal;

use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

/// Restores standard input's terminal settings on drop.
#[derive(Debug)]
pub struct TermGuard {
    saved: Option<Termios>,
}

impl TermGuard {
    /// Saves the settings of standard input, when it is a terminal.
    pub fn save() -> Self {
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() {
            tcgetattr(&stdin)
                .map_err(|e| tracing::warn!("cannot read terminal settings: {e}"))
                .ok()
        } else {
            None
        };
        Self { saved }
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            if let Err(e) = tcsetattr(std::io::stdin(), SetArg::TCSANOW, t) {
                tracing::warn!("cannot restore terminal settings: {e}");
            }
        }
    }
}
