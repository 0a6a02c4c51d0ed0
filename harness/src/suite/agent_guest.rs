//! [`Guest`] over the real agent client.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use dangle_proto::{Event, Request, Response};

use super::guest::{Guest, GuestError};
use crate::agent::{AgentClient, AgentError};
use crate::vm::fixture::Vm;

/// The agent of a running VM.
#[derive(Debug)]
pub struct AgentGuest {
    client: AgentClient,
    events: Option<Receiver<Event>>,
}

impl From<AgentError> for GuestError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Timeout { request, timeout } => GuestError::Timeout {
                what: request,
                timeout,
            },
            AgentError::Disconnected(_) => GuestError::Closed,
            AgentError::Refused { request, reply } => GuestError::Refused {
                what: request,
                reply,
            },
            other => GuestError::Client(Box::new(other)),
        }
    }
}

impl AgentGuest {
    /// Connects to the agent of `vm` and completes the handshake, waiting
    /// up to `timeout` for the guest to boot that far.
    pub fn connect(vm: &Vm, timeout: Duration) -> Result<Self, GuestError> {
        Self::connect_socket(vm.agent_socket_path(), timeout)
    }

    /// [`AgentGuest::connect`] given the agent's socket.
    pub fn connect_socket(socket: &std::path::Path, timeout: Duration) -> Result<Self, GuestError> {
        let start = Instant::now();
        let client = AgentClient::connect_unix(socket, timeout)?;
        let events = client.take_events();
        let left = timeout.saturating_sub(start.elapsed());
        // The hello waits in the socket until the agent opens its port.
        client.hello(left)?;
        Ok(Self { client, events })
    }

    /// The client, for requests the trait does not cover.
    pub fn client(&self) -> &AgentClient {
        &self.client
    }
}

impl Guest for AgentGuest {
    fn call(&mut self, req: Request, timeout: Duration) -> Result<Response, GuestError> {
        Ok(self.client.request(req, timeout)?)
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.events
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }
}
