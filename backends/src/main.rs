//! `dangle-backend`: one vhost-user device per process.

fn main() {}
