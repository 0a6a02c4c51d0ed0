//! The failure of one consumer operation: which syscall, which errno.

use std::fmt;

use nix::errno::Errno;

/// A failed syscall (or uAPI call) of a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The syscall or operation, e.g. `read`, `GPIO_V2_GET_LINE_IOCTL`.
    pub syscall: String,
    /// Its errno, if it failed with one.
    pub errno: Option<i32>,
    /// Extra context (path, line) and the error text.
    pub detail: String,
}

impl OpError {
    /// A failure with an errno.
    pub fn errno(syscall: impl Into<String>, errno: i32, detail: impl Into<String>) -> Self {
        Self {
            syscall: syscall.into(),
            errno: Some(errno),
            detail: detail.into(),
        }
    }

    /// A failure without an errno (bad parameters, missing device).
    pub fn other(syscall: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            syscall: syscall.into(),
            errno: None,
            detail: detail.into(),
        }
    }

    /// From an I/O error.
    pub fn io(syscall: impl Into<String>, err: &std::io::Error, detail: impl fmt::Display) -> Self {
        Self {
            syscall: syscall.into(),
            errno: err.raw_os_error(),
            detail: format!("{detail}: {err}"),
        }
    }

    /// From a gpiocdev error.
    pub fn gpio(syscall: impl Into<String>, err: &gpiocdev::Error) -> Self {
        Self {
            syscall: syscall.into(),
            errno: gpio_errno(err),
            detail: err.to_string(),
        }
    }

    /// The key used in the errors-by-errno counters: `ENODEV`, or `other`.
    pub fn errno_name(&self) -> String {
        self.errno.map_or_else(|| "other".to_owned(), errno_name)
    }

    /// True for the `EINTR` a stop signal causes.
    pub fn is_eintr(&self) -> bool {
        self.errno == Some(libc::EINTR)
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.syscall)?;
        if let Some(e) = self.errno {
            write!(f, "{} ", errno_name(e))?;
        }
        write!(f, "({})", self.detail)
    }
}

/// `ENODEV` for 19, `E123` for numbers nix does not know.
pub fn errno_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("E{errno}"),
        e => format!("{e:?}"),
    }
}

/// The errno inside a gpiocdev error, if any.
pub fn gpio_errno(err: &gpiocdev::Error) -> Option<i32> {
    match err {
        gpiocdev::Error::Os(e) => Some(e.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(e)) => Some(e.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_name_known_and_unknown_are_named() {
        assert_eq!(errno_name(libc::ENODEV), "ENODEV");
        assert_eq!(errno_name(libc::EIO), "EIO");
        assert_eq!(errno_name(4000), "E4000");
    }

    #[test]
    fn op_error_display_names_syscall_and_errno() {
        let e = OpError::errno("read", libc::ENODEV, "/dev/gpiochip0 line 3");
        assert_eq!(e.to_string(), "read: ENODEV (/dev/gpiochip0 line 3)");
        assert_eq!(e.errno_name(), "ENODEV");
        assert_eq!(OpError::other("find", "x").errno_name(), "other");
    }
}
