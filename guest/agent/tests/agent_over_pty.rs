//! The real `dangle-agent` binary, run as an ordinary process (not PID 1)
//! with a pty as its channel: Ready, hello, exec, a consumer's life and
//! poweroff, all through the line protocol.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dangle_proto::{
    ConsumerResult, ConsumerSpec, Event, ExecRequest, GuestMessage, HostMessage, PROTOCOL_VERSION,
    ReplyResult, Request, Response,
};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

const WAIT: Duration = Duration::from_secs(20);

fn pty() -> (OwnedFd, String) {
    let p = openpty(None, None).expect("openpty");
    let mut t = tcgetattr(&p.master).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&p.master, SetArg::TCSANOW, &t).expect("tcsetattr");
    let name = std::fs::read_link(format!("/proc/self/fd/{}", p.slave.as_raw_fd()))
        .expect("pts name")
        .to_string_lossy()
        .into_owned();
    // Keep the slave open until the agent has it, so the pty never hangs up.
    std::mem::forget(p.slave);
    (p.master, name)
}

struct Guest {
    w: File,
    rx: mpsc::Receiver<GuestMessage>,
    next: u64,
}

impl Guest {
    fn send(&mut self, request: Request) -> u64 {
        self.next += 1;
        let line = dangle_proto::encode(&HostMessage {
            id: self.next,
            request,
        })
        .expect("encode");
        self.w.write_all(line.as_bytes()).expect("write");
        self.next
    }

    fn reply(&self, id: u64) -> ReplyResult {
        loop {
            match self.rx.recv_timeout(WAIT).expect("reply in time") {
                GuestMessage::Reply {
                    id: Some(i),
                    result,
                } if i == id => return result,
                _ => continue,
            }
        }
    }

    fn event(&self, pred: impl Fn(&Event) -> bool) -> Event {
        loop {
            if let GuestMessage::Event { event } = self.rx.recv_timeout(WAIT).expect("event") {
                if pred(&event) {
                    return event;
                }
            }
        }
    }
}

#[test]
fn agent_binary_over_pty_serves_the_protocol() {
    let (master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dangle-agent"))
        .env("DANGLE_AGENT_CHANNEL", &slave)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agent");
    let master = File::from(master);
    let r = master.try_clone().expect("dup");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Ok(m) = dangle_proto::decode::<GuestMessage>(&line) {
                if tx.send(m).is_err() {
                    break;
                }
            }
        }
    });
    let mut g = Guest {
        w: master,
        rx,
        next: 0,
    };

    let ready = g.event(|e| matches!(e, Event::Ready { .. }));
    assert!(matches!(
        ready,
        Event::Ready {
            protocol: PROTOCOL_VERSION,
            ..
        }
    ));

    let id = g.send(Request::Hello {
        version: PROTOCOL_VERSION,
    });
    assert!(matches!(
        g.reply(id),
        ReplyResult::Ok(Response::Hello { .. })
    ));

    g.w.write_all(b"this is not json\n").expect("write");
    let id = g.send(Request::Exec(ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "echo agent-ok".into()],
        env: Default::default(),
        timeout_ms: 10_000,
        stdin: None,
    }));
    match g.reply(id) {
        ReplyResult::Ok(Response::Exec(out)) => assert_eq!(out.stdout, "agent-ok\n"),
        other => panic!("unexpected {other:?}"),
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("sink");
    std::fs::write(&target, "").expect("write");
    let id = g.send(Request::StartConsumer {
        consumer: "fw".into(),
        spec: ConsumerSpec::FileWrite {
            path: target.to_string_lossy().into_owned(),
            data: "x".into(),
            period_us: 1000,
            iterations: Some(3),
        },
        deadline_ms: 5000,
        progress_ms: None,
    });
    assert_eq!(g.reply(id), ReplyResult::Ok(Response::Done));
    match g.event(|e| matches!(e, Event::ConsumerExited { .. })) {
        Event::ConsumerExited {
            id,
            result: ConsumerResult::Completed { counters },
        } => {
            assert_eq!(id, "fw");
            assert_eq!(counters.ops_ok, 3);
        }
        other => panic!("unexpected {other:?}"),
    }

    let id = g.send(Request::Poweroff {});
    assert_eq!(g.reply(id), ReplyResult::Ok(Response::Done));
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
