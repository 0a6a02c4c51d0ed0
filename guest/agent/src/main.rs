//! dangle's guest agent: PID 1 of the test VM.

fn main() {}
