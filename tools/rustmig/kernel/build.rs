// SPDX-License-Identifier: GPL-2.0

//! Generates `kernel::uapi` for userspace from the uAPI header
//! (`include/uapi/linux/vfio_rustmig.h`), as the kernel's bindgen run does for the kernel: its
//! numeric `#define RUSTMIG_*` constants (`u32`, or `u64` when the value does not fit, as bindgen
//! types them) and its structs (`#[repr(C)]`, the same field names; a flexible array member is an
//! array of length 0). The header is so the one definition of the stream's layout, in the kernel
//! and here.
//!
//! A value is a C integer constant expression of literals (decimal, hex, `U`/`L` suffixes),
//! parentheses and `* + - << >> & |`; a `RUSTMIG_*` define that is not one fails the build, and
//! so does a struct member of a type or shape this generator does not know.

use std::{env, fs, path::Path};

const HEADER: &str = "../../../include/uapi/linux/vfio_rustmig.h";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = Path::new(&dir).join(HEADER);
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the uAPI header {}: {e}", path.display()));
    let mut out = format!("// The RUSTMIG_* defines and the structs of {HEADER}, by build.rs.\n\n");
    let mut n = 0;
    for (line_no, define) in defines(&text) {
        let Some((name, value)) = define.split_once(char::is_whitespace) else {
            continue;
        };
        if !name.starts_with("RUSTMIG_") || name.contains('(') {
            continue;
        }
        let value = value.trim();
        let v = eval(value).unwrap_or_else(|e| {
            panic!("{}:{line_no}: #define {name} {value}: {e}", path.display())
        });
        let ty = if u32::try_from(v).is_ok() {
            "u32"
        } else {
            "u64"
        };
        out += &format!("/// `{value}`\npub const {name}: {ty} = {v:#x};\n");
        n += 1;
    }
    assert!(n > 0, "no RUSTMIG_* define in {}", path.display());
    let structs =
        structs(&strip_comments(&text)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!structs.is_empty(), "no struct in {}", path.display());
    out += &structs;
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&out_dir).join("uapi.rs"), out).expect("cannot write uapi.rs");
}

/// Returns the body of each `#define` (after the keyword, comments removed, continuation lines
/// joined) with its line number.
fn defines(text: &str) -> Vec<(usize, String)> {
    let text = strip_comments(text);
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let Some(body) = rest.trim_start().strip_prefix("define") else {
            continue;
        };
        let mut body = body.trim().to_string();
        while body.ends_with('\\') {
            body.pop();
            match lines.next() {
                Some((_, next)) => body = format!("{} {}", body.trim_end(), next.trim()),
                None => break,
            }
        }
        out.push((i + 1, body.trim().to_string()));
    }
    out
}

/// Returns the Rust definitions of the header's structs.
fn structs(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("struct ") {
        rest = &rest[at + "struct ".len()..];
        let Some(open) = rest.find('{') else { break };
        let name = rest[..open].trim();
        // A use of a struct (in a comment's stead, a parameter...) is no definition.
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let close = rest.find("};").ok_or(format!("struct {name}: no end"))?;
        out += &format!("\n/// `struct {name}`\n#[repr(C)]\npub struct {name} {{\n");
        for member in rest[open + 1..close].split(';').map(str::trim) {
            if member.is_empty() {
                continue;
            }
            out += &format!(
                "    pub {},\n",
                field(member).map_err(|e| format!("struct {name}: {e}"))?
            );
        }
        out += "}\n";
        rest = &rest[close..];
    }
    Ok(out)
}

/// Returns the Rust field of a struct member: `TYPE NAME`, `TYPE NAME[LEN]` or `TYPE NAME[]`.
fn field(member: &str) -> Result<String, String> {
    let (ty, decl) = member
        .split_once(char::is_whitespace)
        .ok_or(format!("member {member:?}"))?;
    let ty = match ty {
        "__u8" => "u8",
        "__u16" | "__le16" => "u16",
        "__u32" | "__le32" => "u32",
        "__u64" | "__le64" => "u64",
        _ => return Err(format!("member {member:?}: type {ty} unknown")),
    };
    let decl = decl.trim();
    let Some((name, len)) = decl.split_once('[') else {
        return Ok(format!("{decl}: {ty}"));
    };
    let len = len
        .strip_suffix(']')
        .ok_or(format!("member {member:?}"))?
        .trim();
    let len = if len.is_empty() {
        "0".to_string()
    } else if len.starts_with("RUSTMIG_") {
        format!("{len} as usize")
    } else {
        eval(len)?.to_string()
    };
    Ok(format!("{}: [{ty}; {len}]", name.trim()))
}

/// Replaces C comments with spaces, keeping the newlines (and so the line numbers).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out += &rest[..b];
                let end = rest[b + 2..]
                    .find("*/")
                    .map_or(rest.len(), |e| b + 2 + e + 2);
                out.extend(
                    rest[b..end]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { ' ' }),
                );
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out += &rest[..l];
                let end = rest[l..].find('\n').map_or(rest.len(), |e| l + e);
                rest = &rest[end..];
            }
            (_, None) => {
                out += rest;
                return out;
            }
        }
    }
}

/// Evaluates a C integer constant expression.
fn eval(s: &str) -> Result<u64, String> {
    let tokens = tokenize(s)?;
    let mut p = Expr { tokens, at: 0 };
    let v = p.binary(0)?;
    if p.at != p.tokens.len() {
        return Err(format!("unexpected {:?}", p.tokens[p.at]));
    }
    Ok(v)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(u64),
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    const OPS: [&str; 9] = ["<<", ">>", "(", ")", "*", "+", "-", "&", "|"];
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            rest = &rest[op.len()..];
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            out.push(Tok::Num(literal(&rest[..end])?));
            rest = &rest[end..];
        } else {
            return Err(format!("not an integer expression at {rest:?}"));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// Parses an integer literal: decimal or hex, with optional `U`/`L` suffixes.
fn literal(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(['u', 'U', 'l', 'L']);
    let v = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16)
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8)
    } else {
        digits.parse()
    };
    v.map_err(|e| format!("bad literal {s:?}: {e}"))
}

struct Expr {
    tokens: Vec<Tok>,
    at: usize,
}

impl Expr {
    /// The binary operators from the loosest, as in C.
    const LEVELS: [&'static [&'static str]; 5] =
        [&["|"], &["&"], &["<<", ">>"], &["+", "-"], &["*"]];

    fn binary(&mut self, level: usize) -> Result<u64, String> {
        if level == Self::LEVELS.len() {
            return self.primary();
        }
        let mut v = self.binary(level + 1)?;
        while let Some(Tok::Op(op)) = self.tokens.get(self.at).cloned() {
            if !Self::LEVELS[level].contains(&op) {
                break;
            }
            self.at += 1;
            let r = self.binary(level + 1)?;
            let overflow = || format!("{v} {op} {r} overflows");
            v = match op {
                "|" => v | r,
                "&" => v & r,
                "<<" => u32::try_from(r)
                    .ok()
                    .and_then(|r| v.checked_shl(r))
                    .ok_or_else(overflow)?,
                ">>" => u32::try_from(r)
                    .ok()
                    .and_then(|r| v.checked_shr(r))
                    .ok_or_else(overflow)?,
                "+" => v.checked_add(r).ok_or_else(overflow)?,
                "-" => v.checked_sub(r).ok_or_else(overflow)?,
                _ => v.checked_mul(r).ok_or_else(overflow)?,
            };
        }
        Ok(v)
    }

    fn primary(&mut self) -> Result<u64, String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        match t {
            Some(Tok::Num(v)) => Ok(v),
            Some(Tok::Op("(")) => {
                let v = self.binary(0)?;
                match self.tokens.get(self.at) {
                    Some(Tok::Op(")")) => {
                        self.at += 1;
                        Ok(v)
                    }
                    _ => Err("missing )".into()),
                }
            }
            t => Err(format!("expected a number or (, found {t:?}")),
        }
    }
}
