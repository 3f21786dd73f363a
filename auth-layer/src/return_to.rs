//! Return-to targets: the same-origin paths `returnTo` may name (open-redirect defence).

/// The longest `returnTo` accepted.
const MAX_LEN: usize = 2048;

/// Checks a `returnTo` value: a path on this app (`/...`), never another origin.
///
/// Refused: anything not starting with exactly one `/` (`//evil`, `https://evil`, `evil`), any
/// backslash (`/\evil` is `//evil` to browsers), control characters and whitespace, encoded
/// slashes or backslashes at the start, and values longer than 2 KB.
pub fn validate(value: &str) -> Result<&str, &'static str> {
    if value.len() > MAX_LEN {
        return Err("returnTo is too long");
    }
    if !value.starts_with('/') || value.starts_with("//") {
        return Err("returnTo must be a path on this site, starting with a single /");
    }
    if value.contains('\\') || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("returnTo contains a backslash, whitespace or a control character");
    }
    let lower = value.get(1..4).map(str::to_ascii_lowercase).unwrap_or_default();
    if lower == "%2f"
        || lower == "%5c"
        || lower.starts_with("%0")
        || lower.starts_with("%1")
        || lower.starts_with("%09")
    {
        return Err("returnTo starts with an encoded slash, backslash or control character");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn same_origin_paths_are_accepted() {
        for ok in ["/", "/private", "/a/b?c=d&e=%2F", "/search?q=x#frag", "/%E2%9C%93"] {
            assert_eq!(validate(ok), Ok(ok), "{ok}");
        }
    }

    #[test]
    fn other_origins_and_tricks_are_refused() {
        let long = format!("/{}", "a".repeat(3000));
        for bad in [
            "",
            "private",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "https://evil.example/",
            "http:/evil",
            "javascript:alert(1)",
            "/%2F%2Fevil.example",
            "/%2fevil",
            "/%5Cevil",
            "/ok\r\nSet-Cookie: x=1",
            "/ok\tx",
            "/\u{0}",
            " /x",
            "/%0d%0aheader",
            long.as_str(),
        ] {
            assert!(validate(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
