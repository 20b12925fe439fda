// SPDX-License-Identifier: GPL-2.0

//! `rustmig COMMAND ARGS...`: see `rustmig --help`.

use std::io::{stderr, stdout};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Option<Vec<String>> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect();
    let Some(args) = args else {
        eprintln!("rustmig: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let code = rustmig_inspect::run(&args, &mut stdout().lock(), &mut stderr().lock());
    ExitCode::from(code)
}
