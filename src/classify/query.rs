//! The query's normalized form, for the key: two queries Graph reads as the same request get
//! the same form.
//!
//! Each `name=value` pair is percent-decoded (`+` is a space, as form encoding and the
//! clients that use it mean), OData system options are named in lower case (`$Filter` is
//! `$filter`), and their values are put in canonical form:
//!
//! - `$select`, `$expand`: the comma-separated items sorted (a set; nested options in
//!   parentheses are kept with their item);
//! - `$orderby`: items keep their order (it is the sort order), ` asc` (the default) dropped;
//! - `$filter`, `$search`: runs of whitespace outside string literals are one space;
//! - `$top`, `$skip`: the number without leading zeros; `$count`: `true`/`false`.
//!
//! The pairs are then sorted and joined with `&`, with `%`, `&`, `=` and `+` escaped again, so
//! no two different queries frame the same text.

/// The normalized form of a raw query string (without the `?`).
pub fn normalize(query: &str) -> String {
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .map_or((pair, None), |(n, v)| (n, Some(v)));
            let mut name = decode(name);
            if name.starts_with('$') {
                name.make_ascii_lowercase();
            }
            let value = value.map(|v| canonical_value(&name, &decode(v)));
            match value {
                Some(v) => format!("{}={}", escape(&name), escape(&v)),
                None => escape(&name),
            }
        })
        .collect();
    pairs.sort_unstable();
    pairs.join("&")
}

fn canonical_value(name: &str, value: &str) -> String {
    match name {
        "$select" | "$expand" => {
            let mut items: Vec<String> = top_level_items(value)
                .iter()
                .map(|i| collapse_whitespace(i))
                .filter(|i| !i.is_empty())
                .collect();
            items.sort_unstable();
            items.dedup();
            items.join(",")
        }
        "$orderby" => top_level_items(value)
            .iter()
            .map(|i| {
                let i = collapse_whitespace(i);
                match i.len().checked_sub(4) {
                    Some(cut)
                        if i.is_char_boundary(cut) && i[cut..].eq_ignore_ascii_case(" asc") =>
                    {
                        i[..cut].to_string()
                    }
                    _ => i,
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        "$filter" | "$search" => collapse_whitespace(value),
        "$top" | "$skip" => match value.trim().parse::<u64>() {
            Ok(n) => n.to_string(),
            Err(_) => value.to_string(),
        },
        "$count" => value.trim().to_ascii_lowercase(),
        _ => value.to_string(),
    }
}

/// Comma-separated items at parenthesis depth 0, outside string literals.
fn top_level_items(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
}

/// Trimmed, with each run of whitespace outside `'…'` literals one space. (OData escapes a
/// quote inside a literal by doubling it, which toggles twice and so stays inside.)
fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut pending_space) = (false, false);
    for c in value.trim().chars() {
        if c.is_whitespace() && !quoted {
            pending_space = true;
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(c);
    }
    out
}

/// Percent-decoding, `+` as a space; an invalid escape is kept as written, and bytes that are
/// not UTF-8 are replaced (the key only needs a stable form).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    out.push(hex(*h) << 4 | hex(*l));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The characters that frame pairs, escaped, so the joined form is unambiguous.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '=' => out.push_str("%3D"),
            '+' => out.push_str("%2B"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn spellings_of_one_query_are_one_form() {
        let forms = [
            "$select=id,displayName&$filter=startswith(displayName, 'Win 10')&$top=5",
            "%24top=05&%24SELECT=displayName%2C%20id&$filter=startswith(displayName,%20'Win 10')",
            "$Filter=startswith(displayName,++'Win 10')&$select=displayName,id,id&$top=5",
        ];
        let first = normalize(forms[0]);
        for f in forms {
            assert_eq!(normalize(f), first, "{f}");
        }
        assert_eq!(
            first,
            "$filter=startswith(displayName, 'Win 10')&$select=displayName,id&$top=5"
        );
    }

    #[test]
    fn what_changes_the_request_changes_the_form() {
        let pairs = [
            ("$orderby=a,b", "$orderby=b,a"),
            ("$filter=x eq 'a  b'", "$filter=x eq 'a b'"),
            (
                "$expand=assignments($select=id,target)",
                "$expand=assignments($select=target)",
            ),
            ("a=1%262", "a=1&2"),
            ("$top=5", "$top=6"),
            ("$skiptoken=AbC", "$skiptoken=abc"),
        ];
        for (a, b) in pairs {
            assert_ne!(normalize(a), normalize(b), "{a} / {b}");
        }
        assert_eq!(normalize("$orderby=name asc"), normalize("$orderby=name"));
        assert_eq!(
            normalize("$expand=b,assignments($select=id,target)"),
            "$expand=assignments($select%3Did,target),b"
        );
        assert_eq!(normalize("b=2&a=1&"), normalize("a=1&b=2"));
    }
}
