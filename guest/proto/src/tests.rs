//! Round trips of every message and rejection of malformed lines.

use super::*;

fn counters() -> Counters {
    let mut errors = BTreeMap::new();
    errors.insert("ENODEV".to_owned(), 3);
    errors.insert("EIO".to_owned(), 1);
    Counters {
        ops_ok: 42,
        errors,
        last_error: Some("read: ENODEV".to_owned()),
    }
}

fn guest_info() -> GuestInfo {
    GuestInfo {
        kernel: "6.12.117".to_owned(),
        uptime_ms: 4000,
        agent: "0.1.0".to_owned(),
    }
}

fn all_specs() -> Vec<ConsumerSpec> {
    let chip = ChipSelector::Label("virtio0".to_owned());
    let adapter = AdapterSelector::NamePrefix("i2c_virtio".to_owned());
    vec![
        ConsumerSpec::GpioHold {
            chip: chip.clone(),
            line: 1,
            value: true,
        },
        ConsumerSpec::GpioToggle {
            chip: ChipSelector::Name("gpiochip0".to_owned()),
            line: 2,
            period_us: 100,
            iterations: Some(10),
        },
        ConsumerSpec::GpioEdgeRead {
            chip: ChipSelector::Path("/dev/gpiochip1".to_owned()),
            line: 3,
            wait: EdgeWait::Blocking,
        },
        ConsumerSpec::GpioEdgeRead {
            chip: chip.clone(),
            line: 3,
            wait: EdgeWait::Poll,
        },
        ConsumerSpec::GpioInfoWatch {
            chip: chip.clone(),
            line: 4,
        },
        ConsumerSpec::GpioV1LineEvent {
            chip: chip.clone(),
            line: 5,
        },
        ConsumerSpec::GpioRequestLoop {
            chip: chip.clone(),
            line: 6,
            iterations: None,
        },
        ConsumerSpec::I2cHold {
            adapter: AdapterSelector::Bus(0),
        },
        ConsumerSpec::I2cTransfer {
            adapter: adapter.clone(),
            addr: 0x50,
            op: I2cOp::Rdwr { reg: 0, len: 16 },
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::I2cTransfer {
            adapter: adapter.clone(),
            addr: 0x20,
            op: I2cOp::SmbusByte { cmd: 0 },
            period_us: 10,
            iterations: Some(1),
        },
        ConsumerSpec::I2cTransfer {
            adapter: adapter.clone(),
            addr: 0x20,
            op: I2cOp::SmbusWord { cmd: 2 },
            period_us: 10,
            iterations: Some(1),
        },
        ConsumerSpec::NvmemIo {
            source: NvmemSelector::Device("0-00500".to_owned()),
            len: 256,
            write: Some(vec![1, 2, 3]),
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::NvmemIo {
            source: NvmemSelector::Eeprom {
                adapter: adapter.clone(),
                addr: 0x50,
            },
            len: 16,
            write: None,
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::NvmemIo {
            source: NvmemSelector::DevicePrefix("0-0050".to_owned()),
            len: 16,
            write: None,
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::I2cClientChurn {
            adapter: adapter.clone(),
            device: "24c02".to_owned(),
            addr: 0x50,
            period_us: 1000,
            iterations: Some(3),
        },
        ConsumerSpec::BindUnbind {
            bus: "i2c".to_owned(),
            driver: "at24".to_owned(),
            device: "0-0050".to_owned(),
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::PciRemoveRescan {
            device: "0000:01:00.0".to_owned(),
            period_us: 0,
            iterations: Some(1),
        },
        ConsumerSpec::GpioAggregator {
            chip,
            lines: "0-3".to_owned(),
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::FileWrite {
            path: "/sys/kernel/debug/provoke-crash/DIRECT".to_owned(),
            data: "WRITE_AFTER_FREE".to_owned(),
            period_us: 0,
            iterations: None,
        },
        ConsumerSpec::NvmemKernelConsumer {
            device: "0-00500".to_owned(),
            period_us: 0,
            iterations: None,
        },
    ]
}

fn all_requests() -> Vec<Request> {
    let mut v = vec![
        Request::Hello {
            version: PROTOCOL_VERSION,
        },
        Request::Ping {},
        Request::Exec(ExecRequest {
            argv: vec!["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()],
            env: [("A".to_owned(), "b".to_owned())].into_iter().collect(),
            timeout_ms: 1000,
            stdin: Some("input\n".to_owned()),
        }),
        Request::Sysctl {
            name: "kernel.hung_task_timeout_secs".to_owned(),
            value: "20".to_owned(),
        },
        Request::WriteFile {
            path: "/sys/bus/i2c/devices/i2c-0/new_device".to_owned(),
            data: "24c02 0x50".to_owned(),
        },
        Request::ReadFile {
            path: "/proc/version".to_owned(),
            max_bytes: 4096,
        },
        Request::StopConsumer {
            consumer: "c1".to_owned(),
        },
        Request::InterruptConsumer {
            consumer: "c1".to_owned(),
        },
        Request::ConsumerStatus { consumer: None },
        Request::ConsumerStatus {
            consumer: Some("c1".to_owned()),
        },
        Request::ListDevices {},
        Request::Poweroff {},
    ];
    for (i, spec) in all_specs().into_iter().enumerate() {
        v.push(Request::StartConsumer {
            consumer: format!("c{i}"),
            spec,
            deadline_ms: 5000,
            progress_ms: if i % 2 == 0 { Some(500) } else { None },
        });
    }
    v
}

fn all_guest_messages() -> Vec<GuestMessage> {
    let responses = vec![
        Response::Hello {
            version: PROTOCOL_VERSION,
            guest: guest_info(),
        },
        Response::Pong { uptime_ms: 1 },
        Response::Exec(ExecOutput {
            code: Some(0),
            signal: None,
            timed_out: false,
            stdout: "hi\n".to_owned(),
            stderr: String::new(),
        }),
        Response::File {
            data: "Linux".to_owned(),
            truncated: true,
        },
        Response::Consumers {
            consumers: vec![ConsumerReport {
                id: "c1".to_owned(),
                counters: counters(),
                in_flight: Some(InFlight {
                    syscall: "read".to_owned(),
                    for_ms: 12,
                }),
                result: Some(ConsumerResult::Stopped {
                    counters: counters(),
                }),
            }],
        },
        Response::Devices(DeviceList {
            gpiochips: vec![GpioChipInfo {
                name: "gpiochip0".to_owned(),
                label: "virtio0".to_owned(),
                lines: 8,
                path: "/dev/gpiochip0".to_owned(),
                device_path: Some(
                    "/sys/devices/pci0000:00/0000:00:10.0/0000:01:00.0/virtio1/gpiochip0"
                        .to_owned(),
                ),
            }],
            i2c_adapters: vec![I2cAdapterInfo {
                bus: 0,
                name: "i2c_virtio at virtio bus 1".to_owned(),
                device_path: None,
            }],
            nvmem: vec![NvmemInfo {
                name: "0-00500".to_owned(),
                size: Some(256),
            }],
        }),
        Response::Done,
    ];
    let mut v: Vec<GuestMessage> = responses
        .into_iter()
        .enumerate()
        .map(|(i, r)| GuestMessage::Reply {
            id: Some(i as u64),
            result: ReplyResult::Ok(r),
        })
        .collect();
    v.push(GuestMessage::Reply {
        id: None,
        result: ReplyResult::Error(ErrorReply {
            kind: ErrorKind::BadRequest,
            message: "x".to_owned(),
            errno: None,
        }),
    });
    for kind in [
        ErrorKind::VersionMismatch,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Os,
    ] {
        v.push(GuestMessage::Reply {
            id: Some(9),
            result: ReplyResult::Error(ErrorReply {
                kind,
                message: "y".to_owned(),
                errno: Some(19),
            }),
        });
    }
    let events = vec![
        Event::Ready {
            protocol: PROTOCOL_VERSION,
            guest: guest_info(),
        },
        Event::ConsumerProgress {
            id: "c1".to_owned(),
            counters: counters(),
        },
        Event::ConsumerStuck {
            id: "c1".to_owned(),
            syscall: "read".to_owned(),
            for_ms: 5001,
        },
        Event::ConsumerExited {
            id: "c1".to_owned(),
            result: ConsumerResult::Completed {
                counters: counters(),
            },
        },
        Event::ConsumerExited {
            id: "c2".to_owned(),
            result: ConsumerResult::Failed {
                error: "open /dev/i2c-0: ENOENT".to_owned(),
                errno: Some(2),
                counters: Counters::default(),
            },
        },
        Event::Log {
            level: LogLevel::Warn,
            message: "w".to_owned(),
        },
        Event::Log {
            level: LogLevel::Info,
            message: "i".to_owned(),
        },
        Event::Log {
            level: LogLevel::Error,
            message: "e".to_owned(),
        },
    ];
    v.extend(
        events
            .into_iter()
            .map(|event| GuestMessage::Event { event }),
    );
    v
}

#[test]
fn host_message_every_request_round_trips() {
    for (i, request) in all_requests().into_iter().enumerate() {
        let msg = HostMessage {
            id: i as u64,
            request,
        };
        let line = encode(&msg).expect("encode");
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let back: HostMessage = decode(&line).expect("decode");
        assert_eq!(back, msg, "line {line}");
    }
}

#[test]
fn guest_message_every_variant_round_trips() {
    for msg in all_guest_messages() {
        let line = encode(&msg).expect("encode");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let back: GuestMessage = decode(&line).expect("decode");
        assert_eq!(back, msg, "line {line}");
    }
}

#[test]
fn host_message_documented_line_decodes() {
    let line = r#"{"id":2,"op":"start_consumer","consumer":"r0","spec":{"kind":"gpio_edge_read","chip":{"label":"virtio0"},"line":3,"wait":"blocking"},"deadline_ms":5000}"#;
    let msg: HostMessage = decode(line).expect("decode");
    assert_eq!(msg.id, 2);
    assert_eq!(
        msg.request,
        Request::StartConsumer {
            consumer: "r0".to_owned(),
            spec: ConsumerSpec::GpioEdgeRead {
                chip: ChipSelector::Label("virtio0".to_owned()),
                line: 3,
                wait: EdgeWait::Blocking,
            },
            deadline_ms: 5000,
            progress_ms: None,
        }
    );
}

#[test]
fn decode_malformed_lines_are_rejected_with_a_reason() {
    let bad = [
        ("", "EOF"),
        ("not json", "expected"),
        (r#"{"id":1}"#, "op"),
        (r#"{"id":1,"op":"fly"}"#, "fly"),
        (r#"{"op":"ping"}"#, "id"),
        (r#"{"id":-1,"op":"ping"}"#, "invalid value"),
        (
            r#"{"id":1,"op":"exec","argv":"ls","timeout_ms":1}"#,
            "sequence",
        ),
        (r#"{"id":1,"op":"list_devices","extra":true}"#, "extra"),
        (
            r#"{"id":1,"op":"start_consumer","consumer":"a","deadline_ms":1,"spec":{"kind":"gpio_hold","chip":{"label":"x"},"line":1,"value":true,"bogus":1}}"#,
            "bogus",
        ),
        (r#"[1,2]"#, "invalid type"),
    ];
    for (line, needle) in bad {
        let err = decode::<HostMessage>(line).expect_err(line);
        let reply = bad_request_reply(line, &err);
        let GuestMessage::Reply {
            result: ReplyResult::Error(e),
            ..
        } = reply
        else {
            panic!("not an error reply for {line}");
        };
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(
            e.message.contains(needle),
            "message for {line:?} lacks {needle:?}: {}",
            e.message
        );
    }
}

#[test]
fn bad_request_reply_names_the_salvaged_id() {
    let line = r#"{"id":77,"op":"fly"}"#;
    let err = decode::<HostMessage>(line).expect_err("bad op");
    match bad_request_reply(line, &err) {
        GuestMessage::Reply { id, .. } => assert_eq!(id, Some(77)),
        other => panic!("unexpected {other:?}"),
    }
    let err = decode::<HostMessage>("garbage").expect_err("garbage");
    match bad_request_reply("garbage", &err) {
        GuestMessage::Reply { id, .. } => assert_eq!(id, None),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn decode_overlong_line_is_rejected() {
    let line = "x".repeat(MAX_LINE_BYTES + 1);
    assert!(matches!(
        decode::<HostMessage>(&line),
        Err(DecodeError::TooLong { .. })
    ));
}
