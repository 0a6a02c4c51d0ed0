//! Kernel console -> crash reports, titled the way syzkaller's `pkg/report`
//! titles them. (Work in progress: see issue 3.)

pub mod cli;
