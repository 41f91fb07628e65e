//! Test helpers that read the kernels' source and PTX, so that Rust-side constants and
//! declarations are checked against what the kernels are compiled with.

/// The value of `#define NAME <expression>` in `src` (the text of `file`, named in panics), for
/// the integer expressions the kernels use: a literal, or `(A * B / C ...)` of literals and
/// other defines, left to right.
pub(crate) fn define(src: &str, file: &str, name: &str) -> u64 {
    let line = src
        .lines()
        .find_map(|l| {
            l.strip_prefix("#define ")?
                .strip_prefix(name)?
                .strip_prefix(' ')
        })
        .unwrap_or_else(|| panic!("no #define {name} in {file}"));
    let expr = line.split("//").next().unwrap().trim();
    let expr = expr.trim_start_matches('(').trim_end_matches(')');
    let mut tokens = expr.split_whitespace();
    let value = |f: &str| f.parse().unwrap_or_else(|_| define(src, file, f));
    let mut acc = value(tokens.next().unwrap());
    while let (Some(op), Some(f)) = (tokens.next(), tokens.next()) {
        match op {
            "*" => acc *= value(f),
            "/" => acc /= value(f),
            _ => panic!("unsupported operator {op} in #define {name} of {file}"),
        }
    }
    acc
}

/// The PTX parameter types of `.entry kernel(...)` in `ptx`.
#[cfg(feature = "cuda")]
pub(crate) fn ptx_params(ptx: &str, kernel: &str) -> Vec<String> {
    let start = ptx
        .find(&format!(".entry {kernel}("))
        .unwrap_or_else(|| panic!("no .entry {kernel} in its PTX"));
    let body = &ptx[start..];
    let body = &body[..body.find(')').unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix(".param "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::define;

    #[test]
    fn defines_are_evaluated() {
        let src = "#define A 4\n#define B 8 // eight\n#define C (B / A * 3)\n";
        assert_eq!(define(src, "t", "A"), 4);
        assert_eq!(define(src, "t", "B"), 8);
        assert_eq!(define(src, "t", "C"), 6);
    }
}
