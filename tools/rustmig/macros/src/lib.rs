// SPDX-License-Identifier: GPL-2.0

//! `#[kunit_tests]` for userspace builds of kernel code.
//!
//! In the kernel, `#[kunit_tests(suite)]` on a `mod` turns its `#[test]` functions into a KUnit
//! suite. Here it makes the module `#[cfg(test)]`, so the same functions run under `cargo test`
//! with the standard test harness (a test may return `Result`, as in KUnit).
//!
//! Written against `proc_macro` alone: no `syn`, no `quote`.

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// Marks a module of KUnit tests: `#[kunit_tests(suite_name)] mod tests { ... }`.
#[proc_macro_attribute]
pub fn kunit_tests(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut args = attr.into_iter();
    if !matches!(
        (args.next(), args.next()),
        (Some(TokenTree::Ident(_)), None)
    ) {
        return compile_error("#[kunit_tests] takes the suite's name: #[kunit_tests(my_suite)]");
    }
    if !is_inline_module(&item) {
        return compile_error("#[kunit_tests] applies to an inline module: mod tests { ... }");
    }
    let mut out: TokenStream = "#[cfg(test)]".parse().expect("a valid attribute");
    out.extend(item);
    out
}

/// Returns whether `item` is `[attributes] [visibility] mod name { ... }`.
fn is_inline_module(item: &TokenStream) -> bool {
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    tokens.windows(3).any(|w| {
        matches!(&w[0], TokenTree::Ident(i) if i.to_string() == "mod")
            && matches!(&w[1], TokenTree::Ident(_))
            && matches!(&w[2], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
    })
}

/// Returns a `compile_error!` with `msg`.
fn compile_error(msg: &str) -> TokenStream {
    format!("::core::compile_error!({msg:?});")
        .parse()
        .expect("a valid compile_error! invocation")
}
