//! `dangle-agent`: PID 1 of dangle's test VM. All logic lives in the
//! library; see [`dangle_agent::pid1`].

fn main() {
    dangle_agent::pid1::main();
}
