//! The GPIO controller model: line directions, values, world-driven input
//! levels and the interrupt state machine of virtio-gpio. Pure code: event
//! buffers are opaque tokens `T` handed in and out by the transport.
//!
//! Interrupt rules (VIRTIO 1.2, 5.17.6.3): the driver unmasks a line by
//! queueing one event buffer for it; the device returns that buffer with
//! `VALID` when the interrupt fires, and the line stays masked until the
//! driver queues a new buffer. An edge seen while masked is latched and
//! delivered as soon as a buffer arrives. A level interrupt fires whenever a
//! buffer is queued while the level is active. Setting the type to `NONE`
//! returns the queued buffer, if any, with `INVALID`.

use super::virtio_gpio::{
    VIRTIO_GPIO_DIRECTION_IN, VIRTIO_GPIO_DIRECTION_NONE, VIRTIO_GPIO_DIRECTION_OUT,
    VIRTIO_GPIO_IRQ_STATUS_INVALID, VIRTIO_GPIO_IRQ_STATUS_VALID, VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH,
    VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING, VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING,
    VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH, VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW, VIRTIO_GPIO_IRQ_TYPE_NONE,
};

/// Why the model refused a request; on the wire every refusal is `ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpioError {
    /// The line number is not below `ngpio`.
    #[error("line {0} out of range")]
    LineOutOfRange(u16),
    /// A value field the request type does not allow.
    #[error("invalid value {value} for {what}")]
    BadValue {
        /// Which field or request.
        what: &'static str,
        /// The value received.
        value: u32,
    },
    /// `SET_IRQ_TYPE` without `VIRTIO_GPIO_F_IRQ` negotiated.
    #[error("interrupts not negotiated")]
    IrqNotNegotiated,
    /// An event buffer for a line whose interrupt is disabled.
    #[error("interrupt of line {0} is disabled")]
    IrqDisabled(u16),
    /// A second event buffer for a line that already has one queued.
    #[error("line {0} already has an event buffer queued")]
    EventAlreadyQueued(u16),
}

/// Line direction as seen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Not in use.
    None,
    /// Driven by the guest.
    Out,
    /// Driven by the world (control socket).
    In,
}

impl Direction {
    /// Wire value (`VIRTIO_GPIO_DIRECTION_*`).
    pub fn to_wire(self) -> u8 {
        match self {
            Direction::None => VIRTIO_GPIO_DIRECTION_NONE,
            Direction::Out => VIRTIO_GPIO_DIRECTION_OUT,
            Direction::In => VIRTIO_GPIO_DIRECTION_IN,
        }
    }

    /// Parses a wire value.
    pub fn from_wire(value: u32) -> Option<Self> {
        match u8::try_from(value).ok()? {
            VIRTIO_GPIO_DIRECTION_NONE => Some(Direction::None),
            VIRTIO_GPIO_DIRECTION_OUT => Some(Direction::Out),
            VIRTIO_GPIO_DIRECTION_IN => Some(Direction::In),
            _ => None,
        }
    }
}

/// Interrupt trigger of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrqType {
    /// Disabled.
    None,
    /// Rising edge.
    EdgeRising,
    /// Falling edge.
    EdgeFalling,
    /// Both edges.
    EdgeBoth,
    /// Level high.
    LevelHigh,
    /// Level low.
    LevelLow,
}

impl IrqType {
    /// Parses a wire value (`VIRTIO_GPIO_IRQ_TYPE_*`).
    pub fn from_wire(value: u32) -> Option<Self> {
        match u8::try_from(value).ok()? {
            VIRTIO_GPIO_IRQ_TYPE_NONE => Some(IrqType::None),
            VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING => Some(IrqType::EdgeRising),
            VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING => Some(IrqType::EdgeFalling),
            VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH => Some(IrqType::EdgeBoth),
            VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH => Some(IrqType::LevelHigh),
            VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW => Some(IrqType::LevelLow),
            _ => None,
        }
    }

    fn fires_on_edge(self, rising: bool) -> bool {
        match self {
            IrqType::EdgeRising => rising,
            IrqType::EdgeFalling => !rising,
            IrqType::EdgeBoth => true,
            _ => false,
        }
    }

    fn level_active(self, level: bool) -> bool {
        match self {
            IrqType::LevelHigh => level,
            IrqType::LevelLow => !level,
            _ => false,
        }
    }
}

/// Snapshot of one line, for the control socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineState {
    /// Line number.
    pub line: u16,
    /// Name given on the command line, empty if none.
    pub name: String,
    /// Direction set by the guest.
    pub direction: Direction,
    /// Level the world drives on the line.
    pub input: bool,
    /// Output latch written by the guest.
    pub output: bool,
    /// What the guest reads with `GET_VALUE`.
    pub value: bool,
    /// Interrupt trigger set by the guest.
    pub irq: IrqType,
    /// An edge is latched waiting for an event buffer.
    pub latched: bool,
    /// An event buffer is queued (the line is unmasked).
    pub unmasked: bool,
}

#[derive(Debug)]
struct Line<T> {
    direction: Direction,
    output: bool,
    input: bool,
    irq: IrqType,
    latched: bool,
    waiting: Option<T>,
}

impl<T> Line<T> {
    fn new(input: bool) -> Self {
        Line {
            direction: Direction::None,
            output: false,
            input,
            irq: IrqType::None,
            latched: false,
            waiting: None,
        }
    }

    fn value(&self) -> bool {
        match self.direction {
            Direction::Out => self.output,
            Direction::In | Direction::None => self.input,
        }
    }
}

/// The controller: `ngpio` lines plus their names.
#[derive(Debug)]
pub struct GpioLines<T> {
    names: Vec<String>,
    names_block: Vec<u8>,
    lines: Vec<Line<T>>,
    irq_negotiated: bool,
    ready: Vec<(T, u8)>,
}

impl<T> GpioLines<T> {
    /// A controller with `ngpio` lines; `names` may be shorter than `ngpio`
    /// (missing names are empty) and may be empty (no names block at all).
    pub fn new(ngpio: u16, names: &[String]) -> Self {
        let mut all_names: Vec<String> = names.iter().take(ngpio.into()).cloned().collect();
        let names_block = if names.is_empty() {
            Vec::new()
        } else {
            all_names.resize(ngpio.into(), String::new());
            let mut block = Vec::new();
            for name in &all_names {
                block.extend_from_slice(name.as_bytes());
                block.push(0);
            }
            block
        };
        all_names.resize(ngpio.into(), String::new());
        GpioLines {
            names: all_names,
            names_block,
            lines: (0..ngpio).map(|_| Line::new(false)).collect(),
            irq_negotiated: false,
            ready: Vec::new(),
        }
    }

    /// Number of lines.
    pub fn ngpio(&self) -> u16 {
        // `new` creates at most u16::MAX lines.
        u16::try_from(self.lines.len()).unwrap_or(u16::MAX)
    }

    /// The names block (`GET_LINE_NAMES`): every name NUL-terminated, in
    /// line order; empty when no names were given.
    pub fn names_block(&self) -> &[u8] {
        &self.names_block
    }

    /// Records whether the driver acked `VIRTIO_GPIO_F_IRQ`.
    pub fn set_irq_negotiated(&mut self, negotiated: bool) {
        self.irq_negotiated = negotiated;
    }

    fn line_mut(&mut self, gpio: u16) -> Result<&mut Line<T>, GpioError> {
        self.lines
            .get_mut(usize::from(gpio))
            .ok_or(GpioError::LineOutOfRange(gpio))
    }

    fn line(&self, gpio: u16) -> Result<&Line<T>, GpioError> {
        self.lines
            .get(usize::from(gpio))
            .ok_or(GpioError::LineOutOfRange(gpio))
    }

    /// `GET_DIRECTION`: `value` must be 0.
    pub fn get_direction(&self, gpio: u16, value: u32) -> Result<u8, GpioError> {
        let line = self.line(gpio)?;
        if value != 0 {
            return Err(GpioError::BadValue {
                what: "GET_DIRECTION",
                value,
            });
        }
        Ok(line.direction.to_wire())
    }

    /// `SET_DIRECTION`: `value` is a `VIRTIO_GPIO_DIRECTION_*`.
    pub fn set_direction(&mut self, gpio: u16, value: u32) -> Result<(), GpioError> {
        let line = self.line_mut(gpio)?;
        let direction = Direction::from_wire(value).ok_or(GpioError::BadValue {
            what: "direction",
            value,
        })?;
        line.direction = direction;
        Ok(())
    }

    /// `GET_VALUE`: `value` must be 0. Outputs read their latch, inputs and
    /// unused lines the level the world drives.
    pub fn get_value(&self, gpio: u16, value: u32) -> Result<u8, GpioError> {
        let line = self.line(gpio)?;
        if value != 0 {
            return Err(GpioError::BadValue {
                what: "GET_VALUE",
                value,
            });
        }
        Ok(u8::from(line.value()))
    }

    /// `SET_VALUE`: 0 or 1. Accepted in any direction, because drivers set
    /// the value before switching a line to output (Linux does).
    pub fn set_value(&mut self, gpio: u16, value: u32) -> Result<(), GpioError> {
        let line = self.line_mut(gpio)?;
        line.output = match value {
            0 => false,
            1 => true,
            _ => {
                return Err(GpioError::BadValue {
                    what: "value",
                    value,
                });
            }
        };
        Ok(())
    }

    /// `SET_IRQ_TYPE`. Disabling returns the queued event buffer (see
    /// [`GpioLines::take_ready`]) with `INVALID`.
    pub fn set_irq_type(&mut self, gpio: u16, value: u32) -> Result<(), GpioError> {
        if !self.irq_negotiated {
            return Err(GpioError::IrqNotNegotiated);
        }
        let irq = IrqType::from_wire(value).ok_or(GpioError::BadValue {
            what: "irq type",
            value,
        })?;
        let line = self.line_mut(gpio)?;
        line.irq = irq;
        line.latched = false;
        if irq == IrqType::None {
            if let Some(token) = line.waiting.take() {
                self.ready.push((token, VIRTIO_GPIO_IRQ_STATUS_INVALID));
            }
        } else {
            self.fire_if_pending(gpio);
        }
        Ok(())
    }

    /// An event buffer for `gpio` arrived (unmask). On error the token comes
    /// back and must be returned to the driver with `INVALID`.
    pub fn queue_event(&mut self, gpio: u16, token: T) -> Result<(), (T, GpioError)> {
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            return Err((token, GpioError::LineOutOfRange(gpio)));
        };
        if line.irq == IrqType::None {
            return Err((token, GpioError::IrqDisabled(gpio)));
        }
        if line.waiting.is_some() {
            return Err((token, GpioError::EventAlreadyQueued(gpio)));
        }
        line.waiting = Some(token);
        self.fire_if_pending(gpio);
        Ok(())
    }

    fn fire_if_pending(&mut self, gpio: u16) {
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            return;
        };
        let due = line.latched || line.irq.level_active(line.input);
        if due {
            if let Some(token) = line.waiting.take() {
                line.latched = false;
                self.ready.push((token, VIRTIO_GPIO_IRQ_STATUS_VALID));
            }
        }
    }

    /// The world drives `gpio` to `level`. Returns whether the level changed.
    pub fn drive_input(&mut self, gpio: u16, level: bool) -> Result<bool, GpioError> {
        let line = self.line_mut(gpio)?;
        let changed = line.input != level;
        line.input = level;
        if changed && line.irq.fires_on_edge(level) {
            line.latched = true;
        }
        self.fire_if_pending(gpio);
        Ok(changed)
    }

    /// Event buffers to return now, with their status, oldest first.
    pub fn take_ready(&mut self) -> Vec<(T, u8)> {
        std::mem::take(&mut self.ready)
    }

    /// Drops every queued event buffer (the event queue was stopped; its
    /// buffers belong to a ring that no longer exists). Latches stay.
    pub fn forget_event_buffers(&mut self) {
        for line in &mut self.lines {
            line.waiting = None;
        }
        self.ready.clear();
    }

    /// Forgets everything the driver set (directions, latches, interrupt
    /// types, queued buffers): a new front end starts from power-on. The
    /// levels the world drives persist.
    pub fn reset_guest_state(&mut self) {
        for line in &mut self.lines {
            *line = Line::new(line.input);
        }
        self.ready.clear();
        self.irq_negotiated = false;
    }

    /// Snapshot of one line.
    pub fn state(&self, gpio: u16) -> Result<LineState, GpioError> {
        let line = self.line(gpio)?;
        Ok(LineState {
            line: gpio,
            name: self.names[usize::from(gpio)].clone(),
            direction: line.direction,
            input: line.input,
            output: line.output,
            value: line.value(),
            irq: line.irq,
            latched: line.latched,
            unmasked: line.waiting.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> GpioLines<u32> {
        let mut l = GpioLines::new(4, &[]);
        l.set_irq_negotiated(true);
        l
    }

    #[test]
    fn names_block_given_partial_names_pads_with_empty_strings() {
        let l: GpioLines<u32> = GpioLines::new(3, &["a".into(), "bc".into()]);
        assert_eq!(l.names_block(), b"a\0bc\0\0");
        let none: GpioLines<u32> = GpioLines::new(3, &[]);
        assert!(none.names_block().is_empty());
    }

    #[test]
    fn direction_roundtrip_and_bad_values_rejected() {
        let mut l = lines();
        assert_eq!(l.get_direction(1, 0), Ok(VIRTIO_GPIO_DIRECTION_NONE));
        l.set_direction(1, 1).unwrap();
        assert_eq!(l.get_direction(1, 0), Ok(VIRTIO_GPIO_DIRECTION_OUT));
        assert!(matches!(
            l.set_direction(1, 3),
            Err(GpioError::BadValue { .. })
        ));
        assert!(matches!(
            l.get_direction(1, 7),
            Err(GpioError::BadValue { .. })
        ));
        assert_eq!(l.get_direction(4, 0), Err(GpioError::LineOutOfRange(4)));
    }

    #[test]
    fn value_output_reads_latch_input_reads_world() {
        let mut l = lines();
        l.set_value(0, 1).unwrap();
        l.set_direction(0, 1).unwrap();
        assert_eq!(l.get_value(0, 0), Ok(1));
        l.set_direction(0, 2).unwrap();
        assert_eq!(l.get_value(0, 0), Ok(0));
        l.drive_input(0, true).unwrap();
        assert_eq!(l.get_value(0, 0), Ok(1));
        assert!(matches!(l.set_value(0, 2), Err(GpioError::BadValue { .. })));
    }

    #[test]
    fn irq_type_without_feature_fails() {
        let mut l: GpioLines<u32> = GpioLines::new(2, &[]);
        assert_eq!(l.set_irq_type(0, 1), Err(GpioError::IrqNotNegotiated));
    }

    #[test]
    fn edge_rising_with_buffer_fires_valid() {
        let mut l = lines();
        l.set_irq_type(2, u32::from(VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING))
            .unwrap();
        l.queue_event(2, 7).unwrap();
        l.drive_input(2, false).unwrap();
        assert!(l.take_ready().is_empty());
        l.drive_input(2, true).unwrap();
        assert_eq!(l.take_ready(), vec![(7, VIRTIO_GPIO_IRQ_STATUS_VALID)]);
        // Falling edge does not fire a rising-edge line.
        l.queue_event(2, 8).unwrap();
        l.drive_input(2, false).unwrap();
        assert!(l.take_ready().is_empty());
    }

    #[test]
    fn edge_while_masked_latches_until_buffer_queued() {
        let mut l = lines();
        l.set_irq_type(1, u32::from(VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH))
            .unwrap();
        l.drive_input(1, true).unwrap();
        assert!(l.state(1).unwrap().latched);
        l.queue_event(1, 3).unwrap();
        assert_eq!(l.take_ready(), vec![(3, VIRTIO_GPIO_IRQ_STATUS_VALID)]);
        assert!(!l.state(1).unwrap().latched);
    }

    #[test]
    fn level_high_fires_on_every_queue_while_active() {
        let mut l = lines();
        l.drive_input(0, true).unwrap();
        l.set_irq_type(0, u32::from(VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH))
            .unwrap();
        l.queue_event(0, 1).unwrap();
        l.queue_event(0, 2).unwrap();
        assert_eq!(
            l.take_ready(),
            vec![
                (1, VIRTIO_GPIO_IRQ_STATUS_VALID),
                (2, VIRTIO_GPIO_IRQ_STATUS_VALID)
            ]
        );
        l.drive_input(0, false).unwrap();
        l.queue_event(0, 3).unwrap();
        assert!(l.take_ready().is_empty());
    }

    #[test]
    fn level_low_fires_when_line_drops() {
        let mut l = lines();
        l.drive_input(3, true).unwrap();
        l.set_irq_type(3, u32::from(VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW))
            .unwrap();
        l.queue_event(3, 9).unwrap();
        assert!(l.take_ready().is_empty());
        l.drive_input(3, false).unwrap();
        assert_eq!(l.take_ready(), vec![(9, VIRTIO_GPIO_IRQ_STATUS_VALID)]);
    }

    #[test]
    fn irq_type_none_returns_queued_buffer_invalid() {
        let mut l = lines();
        l.set_irq_type(0, u32::from(VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING))
            .unwrap();
        l.queue_event(0, 5).unwrap();
        l.set_irq_type(0, u32::from(VIRTIO_GPIO_IRQ_TYPE_NONE))
            .unwrap();
        assert_eq!(l.take_ready(), vec![(5, VIRTIO_GPIO_IRQ_STATUS_INVALID)]);
    }

    #[test]
    fn queue_event_rejected_when_disabled_or_duplicate() {
        let mut l = lines();
        assert_eq!(l.queue_event(0, 1), Err((1, GpioError::IrqDisabled(0))));
        assert_eq!(l.queue_event(9, 2), Err((2, GpioError::LineOutOfRange(9))));
        l.set_irq_type(0, 1).unwrap();
        l.queue_event(0, 3).unwrap();
        assert_eq!(
            l.queue_event(0, 4),
            Err((4, GpioError::EventAlreadyQueued(0)))
        );
    }

    #[test]
    fn forget_event_buffers_unmasks_nothing_and_keeps_latch() {
        let mut l = lines();
        l.set_irq_type(0, 3).unwrap();
        l.queue_event(0, 1).unwrap();
        l.set_irq_type(1, 3).unwrap();
        l.drive_input(1, true).unwrap();
        l.forget_event_buffers();
        assert!(!l.state(0).unwrap().unmasked);
        assert!(l.state(1).unwrap().latched);
        l.drive_input(0, true).unwrap();
        assert!(l.take_ready().is_empty());
    }

    #[test]
    fn reset_guest_state_keeps_world_levels() {
        let mut l = lines();
        l.drive_input(1, true).unwrap();
        l.set_direction(1, 2).unwrap();
        l.set_irq_type(1, 3).unwrap();
        l.queue_event(1, 1).unwrap();
        l.reset_guest_state();
        let s = l.state(1).unwrap();
        assert!(s.input);
        assert_eq!(s.direction, Direction::None);
        assert_eq!(s.irq, IrqType::None);
        assert!(!s.unmasked);
        assert_eq!(l.set_irq_type(1, 1), Err(GpioError::IrqNotNegotiated));
    }
}
