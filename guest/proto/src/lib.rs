//! The protocol between dangle's harness (host) and its guest agent: one
//! JSON object per line on a dedicated channel, never the kernel console.
