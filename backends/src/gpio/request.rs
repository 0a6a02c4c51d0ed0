//! virtio-gpio requests: a descriptor chain is parsed into a typed
//! [`GpioRequest`] (request queue) or [`EventRequest`] (event queue) before
//! anything runs, then a request is executed on the line model.
//!
//! Parsing reads only the driver's part of the chain and never writes guest
//! memory. A chain that does not parse is described by a [`ChainError`];
//! the transport still returns it to the guest, with `ERR` (or `INVALID`)
//! in its first writable byte when it has one.

use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::lines::{GpioError, GpioLines};
use super::virtio_gpio::{
    VIRTIO_GPIO_MSG_GET_DIRECTION, VIRTIO_GPIO_MSG_GET_LINE_NAMES, VIRTIO_GPIO_MSG_GET_VALUE,
    VIRTIO_GPIO_MSG_IRQ_TYPE, VIRTIO_GPIO_MSG_SET_DIRECTION, VIRTIO_GPIO_MSG_SET_VALUE,
    VirtioGpioIrqRequest, VirtioGpioRequest, VirtioGpioResponse,
};
use crate::virtq::{Buf, Chain, Layout};

/// Kind of a request-queue request, from its `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpioRequestKind {
    /// `VIRTIO_GPIO_MSG_GET_LINE_NAMES`.
    GetLineNames,
    /// `VIRTIO_GPIO_MSG_GET_DIRECTION`.
    GetDirection,
    /// `VIRTIO_GPIO_MSG_SET_DIRECTION`.
    SetDirection,
    /// `VIRTIO_GPIO_MSG_GET_VALUE`.
    GetValue,
    /// `VIRTIO_GPIO_MSG_SET_VALUE`.
    SetValue,
    /// `VIRTIO_GPIO_MSG_IRQ_TYPE`.
    SetIrqType,
}

impl GpioRequestKind {
    /// The kind of a wire `type`, `None` for a type the spec does not define.
    pub fn from_wire(t: u16) -> Option<Self> {
        Some(match t {
            VIRTIO_GPIO_MSG_GET_LINE_NAMES => Self::GetLineNames,
            VIRTIO_GPIO_MSG_GET_DIRECTION => Self::GetDirection,
            VIRTIO_GPIO_MSG_SET_DIRECTION => Self::SetDirection,
            VIRTIO_GPIO_MSG_GET_VALUE => Self::GetValue,
            VIRTIO_GPIO_MSG_SET_VALUE => Self::SetValue,
            VIRTIO_GPIO_MSG_IRQ_TYPE => Self::SetIrqType,
            _ => return None,
        })
    }

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetLineNames => "get_line_names",
            Self::GetDirection => "get_direction",
            Self::SetDirection => "set_direction",
            Self::GetValue => "get_value",
            Self::SetValue => "set_value",
            Self::SetIrqType => "set_irq_type",
        }
    }
}

/// Why a chain is not a well-formed request or event buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Not one readable descriptor followed by one writable descriptor.
    #[error("expected a readable then a writable descriptor, got {0}")]
    Shape(Layout),
    /// The readable part has the wrong size (a request must be exactly 8
    /// bytes, an event buffer's at least 2).
    #[error("request is {got} bytes, expected {want}")]
    RequestSize {
        /// Bytes found.
        got: u32,
        /// Bytes expected.
        want: usize,
    },
    /// The writable part is too short for the response.
    #[error("response buffer is {got} bytes, need {need}")]
    ResponseSize {
        /// Bytes found.
        got: u32,
        /// Bytes needed.
        need: usize,
    },
    /// The readable part could not be read from guest memory.
    #[error("request not readable from guest memory")]
    Memory,
    /// A `type` the spec does not define.
    #[error("unknown request type {0:#x}")]
    UnknownType(u16),
}

/// The readable and the writable descriptor of a two-descriptor chain.
fn two_part(chain: &Chain) -> Result<(Buf, Buf), ChainError> {
    match chain.bufs.as_slice() {
        [r, w] if !r.writable && w.writable && !chain.truncated => Ok((*r, *w)),
        _ => Err(ChainError::Shape(chain.layout())),
    }
}

/// A request-queue chain, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioRequest {
    /// Request type.
    pub kind: GpioRequestKind,
    /// Line.
    pub gpio: u16,
    /// Value field.
    pub value: u32,
    /// The response buffer: big enough for the response of `kind`.
    pub resp: Buf,
}

impl GpioRequest {
    /// Parses a request-queue chain: one readable descriptor of exactly
    /// 8 bytes (`struct virtio_gpio_request`), then one writable descriptor
    /// that holds the response: 2 bytes, or `1 + names_size` for
    /// `GET_LINE_NAMES` (`names_size` is the names block's size).
    pub fn parse<M: GuestMemory>(
        chain: &Chain,
        mem: &M,
        names_size: usize,
    ) -> Result<Self, ChainError> {
        let (r, w) = two_part(chain)?;
        let want = size_of::<VirtioGpioRequest>();
        if r.len as usize != want {
            return Err(ChainError::RequestSize { got: r.len, want });
        }
        let req: VirtioGpioRequest = mem.read_obj(r.addr).map_err(|_| ChainError::Memory)?;
        let t = req.type_.to_native();
        let kind = GpioRequestKind::from_wire(t).ok_or(ChainError::UnknownType(t))?;
        let need = match kind {
            GpioRequestKind::GetLineNames => 1 + names_size,
            _ => size_of::<VirtioGpioResponse>(),
        };
        if (w.len as usize) < need {
            return Err(ChainError::ResponseSize { got: w.len, need });
        }
        Ok(GpioRequest {
            kind,
            gpio: req.gpio.to_native(),
            value: req.value.to_native(),
            resp: w,
        })
    }

    /// Runs the request on `lines`; the `value` byte of the response.
    pub fn execute<T>(&self, lines: &mut GpioLines<T>) -> Result<u8, GpioError> {
        match self.kind {
            GpioRequestKind::GetLineNames => {
                if self.gpio != 0 || self.value != 0 || lines.names_block().is_empty() {
                    return Err(GpioError::BadValue {
                        what: "GET_LINE_NAMES",
                        value: self.value,
                    });
                }
                Ok(0)
            }
            GpioRequestKind::GetDirection => lines.get_direction(self.gpio, self.value),
            GpioRequestKind::SetDirection => lines.set_direction(self.gpio, self.value).map(|()| 0),
            GpioRequestKind::GetValue => lines.get_value(self.gpio, self.value),
            GpioRequestKind::SetValue => lines.set_value(self.gpio, self.value).map(|()| 0),
            GpioRequestKind::SetIrqType => lines.set_irq_type(self.gpio, self.value).map(|()| 0),
        }
    }
}

impl fmt::Display for GpioRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on line {}", self.kind.name(), self.gpio)
    }
}

/// An event-queue chain, parsed: the line the driver waits on and where the
/// status byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRequest {
    /// Line.
    pub gpio: u16,
    /// The status byte (`struct virtio_gpio_irq_response`).
    pub status: GuestAddress,
}

impl EventRequest {
    /// Parses an event-queue chain: one readable descriptor of at least
    /// 2 bytes (`struct virtio_gpio_irq_request`), then one writable
    /// descriptor of at least 1 byte.
    pub fn parse<M: GuestMemory>(chain: &Chain, mem: &M) -> Result<Self, ChainError> {
        let (r, w) = two_part(chain)?;
        let want = size_of::<VirtioGpioIrqRequest>();
        if (r.len as usize) < want {
            return Err(ChainError::RequestSize { got: r.len, want });
        }
        if w.len < 1 {
            return Err(ChainError::ResponseSize {
                got: w.len,
                need: 1,
            });
        }
        let req: VirtioGpioIrqRequest = mem.read_obj(r.addr).map_err(|_| ChainError::Memory)?;
        Ok(EventRequest {
            gpio: req.gpio.to_native(),
            status: w.addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    const REQ: u64 = 0x100;
    const RESP: u64 = 0x200;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap()
    }

    use Buf as B;

    fn chain(bufs: &[Buf]) -> Chain {
        Chain::new(3, bufs.to_vec())
    }

    /// A memory holding one request at [`REQ`].
    fn with_request(t: u16, gpio: u16, value: u32) -> GuestMemoryMmap {
        let mem = memory();
        let mut bytes = t.to_le_bytes().to_vec();
        bytes.extend_from_slice(&gpio.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
        mem.write_slice(&bytes, GuestAddress(REQ)).unwrap();
        mem
    }

    fn parse(mem: &GuestMemoryMmap, bufs: &[Buf]) -> Result<GpioRequest, ChainError> {
        GpioRequest::parse(&chain(bufs), mem, 5)
    }

    #[test]
    fn gpio_request_well_formed_parses_to_typed_request() {
        let mem = with_request(VIRTIO_GPIO_MSG_SET_VALUE, 7, 1);
        let resp = B::new(RESP, 2, true);
        assert_eq!(
            parse(&mem, &[B::new(REQ, 8, false), resp]),
            Ok(GpioRequest {
                kind: GpioRequestKind::SetValue,
                gpio: 7,
                value: 1,
                resp,
            })
        );
    }

    #[test]
    fn gpio_request_bad_shapes_are_shape_errors() {
        let mem = with_request(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0);
        let r = B::new(REQ, 8, false);
        let w = B::new(RESP, 2, true);
        for bufs in [
            vec![],
            vec![r],
            vec![w, r],
            vec![r, r],
            vec![w, w],
            vec![r, w, w],
        ] {
            assert!(
                matches!(parse(&mem, &bufs), Err(ChainError::Shape(_))),
                "{bufs:?}"
            );
        }
        let mut long = chain(&[r, w]);
        long.truncated = true;
        let err = GpioRequest::parse(&long, &mem, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a readable then a writable descriptor, got [R8, W2, ...]"
        );
    }

    #[test]
    fn gpio_request_wrong_request_size_is_rejected() {
        let mem = with_request(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0);
        for len in [0, 7, 9] {
            assert_eq!(
                parse(&mem, &[B::new(REQ, len, false), B::new(RESP, 2, true)]),
                Err(ChainError::RequestSize { got: len, want: 8 })
            );
        }
    }

    #[test]
    fn gpio_request_short_response_is_rejected() {
        let mem = with_request(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0);
        assert_eq!(
            parse(&mem, &[B::new(REQ, 8, false), B::new(RESP, 1, true)]),
            Err(ChainError::ResponseSize { got: 1, need: 2 })
        );
        // GET_LINE_NAMES needs the status plus the whole names block.
        let mem = with_request(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0);
        assert_eq!(
            parse(&mem, &[B::new(REQ, 8, false), B::new(RESP, 5, true)]),
            Err(ChainError::ResponseSize { got: 5, need: 6 })
        );
        assert!(parse(&mem, &[B::new(REQ, 8, false), B::new(RESP, 6, true)]).is_ok());
    }

    #[test]
    fn gpio_request_outside_memory_is_memory_error() {
        let mem = memory();
        assert_eq!(
            parse(&mem, &[B::new(0x10_0000, 8, false), B::new(RESP, 2, true)]),
            Err(ChainError::Memory)
        );
    }

    #[test]
    fn gpio_request_unknown_type_is_rejected() {
        for t in [0, 7, 0xffff] {
            let mem = with_request(t, 0, 0);
            assert_eq!(
                parse(&mem, &[B::new(REQ, 8, false), B::new(RESP, 2, true)]),
                Err(ChainError::UnknownType(t))
            );
        }
    }

    #[test]
    fn gpio_request_execute_runs_on_lines() {
        let mut lines = GpioLines::<()>::new(4, &["a".to_owned()]);
        let req = |kind, gpio, value| GpioRequest {
            kind,
            gpio,
            value,
            resp: B::new(RESP, 2, true),
        };
        for (kind, gpio, value, want) in [
            (GpioRequestKind::SetDirection, 1, 1, 0),
            (GpioRequestKind::SetValue, 1, 1, 0),
            (GpioRequestKind::GetValue, 1, 0, 1),
            (GpioRequestKind::GetLineNames, 0, 0, 0),
        ] {
            assert_eq!(
                req(kind, gpio, value).execute(&mut lines),
                Ok(want),
                "{kind:?}"
            );
        }
        assert!(matches!(
            req(GpioRequestKind::GetLineNames, 0, 1).execute(&mut lines),
            Err(GpioError::BadValue { .. })
        ));
        assert_eq!(
            req(GpioRequestKind::GetValue, 4, 0).execute(&mut lines),
            Err(GpioError::LineOutOfRange(4))
        );
    }

    #[test]
    fn event_request_well_formed_parses() {
        let mem = memory();
        mem.write_slice(&9u16.to_le_bytes(), GuestAddress(REQ))
            .unwrap();
        let ev = EventRequest::parse(
            &chain(&[B::new(REQ, 2, false), B::new(RESP, 1, true)]),
            &mem,
        );
        assert_eq!(
            ev,
            Ok(EventRequest {
                gpio: 9,
                status: GuestAddress(RESP)
            })
        );
    }

    #[test]
    fn event_request_malformed_shapes_are_rejected() {
        let mem = memory();
        let parse = |bufs: &[Buf]| EventRequest::parse(&chain(bufs), &mem);
        assert!(matches!(
            parse(&[B::new(RESP, 1, true)]),
            Err(ChainError::Shape(_))
        ));
        assert_eq!(
            parse(&[B::new(REQ, 1, false), B::new(RESP, 1, true)]),
            Err(ChainError::RequestSize { got: 1, want: 2 })
        );
        assert_eq!(
            parse(&[B::new(REQ, 2, false), B::new(RESP, 0, true)]),
            Err(ChainError::ResponseSize { got: 0, need: 1 })
        );
        assert_eq!(
            parse(&[B::new(0x10_0000, 2, false), B::new(RESP, 1, true)]),
            Err(ChainError::Memory)
        );
    }
}
