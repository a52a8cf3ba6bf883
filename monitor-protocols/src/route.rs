//! Request targets as metric labels: `http_route` must name an endpoint, not a request.
//!
//! The query string and fragment are dropped first (they carry tokens and personal data,
//! and are never stored), then path segments that look like identifiers become
//! [`ID_PLACEHOLDER`]: what is left is what the application's router matched on. Since no
//! heuristic catches every identifier, the agent also caps the routes of each process.

/// Replaces a path segment that looks like an identifier.
pub const ID_PLACEHOLDER: &str = "{id}";

/// The route of `CONNECT host:port` and of any target that is neither a path, `*` nor an
/// absolute URL: the authority itself would be one series per destination.
pub const AUTHORITY_ROUTE: &str = "{authority}";

/// Longest route kept; a longer one is cut at a character boundary.
pub const MAX_ROUTE_LEN: usize = 256;

/// The label value for a request target (`/users/42?x=1`, `http://host/a`, `*`).
///
/// Path parameters (`;jsessionid=…`, everything after a `;` in a segment) are dropped.
/// Segments replaced by [`ID_PLACEHOLDER`], because they name a person, a secret or one
/// object rather than an endpoint:
/// - an e-mail address or anything else with an `@` (also percent-encoded, `%40`);
/// - all digits; digit groups with separators, at least 6 digits (card and phone numbers,
///   dates: `4111-1111-1111-1111`, `+1-555-0100`, `2026-12-04`);
/// - an IP address (`10.1.2.3`; hex digits and at least two `:` for IPv6);
/// - a UUID, bare or braced (`{…}`, also `%7B…%7D`);
/// - 8 or more hex digits with at least one digit (`5f3a9c1e`, not `deadbeef`: a word made
///   of a–f letters is kept);
/// - 12 or more token characters (letters, digits, `-_.~%=+`) mixing letters and digits
///   (`kP9qLm2Xw7RtYaZ3`), or base64 with its `=` padding.
///
/// A file name whose stem is such a segment keeps its extension (`{id}.png`).
pub fn normalize_route(target: &str) -> String {
    let path = path_of(target);
    let Some(path) = path else {
        return AUTHORITY_ROUTE.to_owned();
    };
    if path == "*" {
        return path.to_owned();
    }
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut route = String::with_capacity(path.len().min(MAX_ROUTE_LEN));
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            route.push('/');
        }
        route.push_str(normalize_segment(segment).as_ref());
        if route.len() >= MAX_ROUTE_LEN {
            break;
        }
    }
    if route.len() > MAX_ROUTE_LEN {
        let mut cut = MAX_ROUTE_LEN;
        while !route.is_char_boundary(cut) {
            cut -= 1;
        }
        route.truncate(cut);
    }
    route.shrink_to_fit();
    route
}

/// The path of a request target, without query or fragment; None for the authority form.
fn path_of(target: &str) -> Option<&str> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let target = &target[..end];
    if target.starts_with('/') || target == "*" {
        return Some(target);
    }
    // Absolute form (requests to a proxy): the path starts after the authority.
    let scheme_end = target.find("://")?;
    let scheme = &target[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
    {
        return None;
    }
    let after = &target[scheme_end + 3..];
    Some(after.find('/').map_or("", |slash| &after[slash..]))
}

/// The authority of an absolute-form target (`http://host:8080/x` → `host:8080`).
pub(crate) fn authority_of(target: &str) -> Option<&str> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let after = &target[target[..end].find("://")? + 3..end];
    let authority = &after[..after.find('/').unwrap_or(after.len())];
    // Credentials are no label: keep what follows them.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    (!authority.is_empty()).then_some(authority)
}

fn normalize_segment(segment: &str) -> std::borrow::Cow<'_, str> {
    // Path parameters (RFC 3986 §3.3) carry session ids; the segment before them is kept.
    let segment = segment.split(';').next().unwrap_or(segment);
    if is_identifier(segment) {
        return ID_PLACEHOLDER.into();
    }
    if let Some((stem, extension)) = segment.rsplit_once('.') {
        let short_extension = (1..=5).contains(&extension.len())
            && extension.bytes().all(|b| b.is_ascii_alphanumeric());
        if short_extension && is_identifier(stem) {
            return format!("{ID_PLACEHOLDER}.{extension}").into();
        }
    }
    segment.into()
}

fn is_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes.contains(&b'@') || contains_ignore_case(bytes, b"%40") {
        return true;
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == bytes.len() || is_uuid(unbraced(bytes)) {
        return true;
    }
    if digits >= 6
        && bytes
            .iter()
            .all(|&b| b.is_ascii_digit() || b"-.+()_ ".contains(&b))
    {
        return true;
    }
    if is_ipv4(segment) {
        return true;
    }
    let colons = bytes.iter().filter(|&&b| b == b':').count();
    if colons >= 2 && bytes.iter().all(|&b| b.is_ascii_hexdigit() || b == b':') {
        return true;
    }
    if bytes.len() >= 8 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let token = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-_.~%=+".contains(&b));
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let mixed = bytes.len() >= 12 && digits > 0 && letters > 0;
    let padded_base64 = bytes.len() >= 8 && bytes.ends_with(b"=") && !bytes.contains(&b'%');
    token && (mixed || padded_base64)
}

fn is_ipv4(segment: &str) -> bool {
    let parts: Vec<&str> = segment.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|part| {
            (1..=3).contains(&part.len())
                && part.bytes().all(|b| b.is_ascii_digit())
                && part.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A GUID in braces, `{…}` or percent-encoded `%7B…%7D`, without them.
fn unbraced(bytes: &[u8]) -> &[u8] {
    if let Some(inner) = bytes.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}")) {
        return inner;
    }
    let (open, close) = (b"%7B".as_slice(), b"%7D".as_slice());
    if bytes.len() > 6
        && bytes[..3].eq_ignore_ascii_case(open)
        && bytes[bytes.len() - 3..].eq_ignore_ascii_case(close)
    {
        return &bytes[3..bytes.len() - 3];
    }
    bytes
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, b)| match index {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_fragment_are_dropped() {
        assert_eq!(normalize_route("/login?token=secret"), "/login");
        assert_eq!(normalize_route("/a#frag?x"), "/a");
        assert_eq!(normalize_route("/?q"), "/");
        assert_eq!(normalize_route("http://h/p?token=secret"), "/p");
    }

    #[test]
    fn numeric_ids_collapse_to_one_route() {
        assert_eq!(normalize_route("/users/12345"), "/users/{id}");
        assert_eq!(normalize_route("/users/67890"), "/users/{id}");
        assert_eq!(
            normalize_route("/users/1/orders/2/items"),
            "/users/{id}/orders/{id}/items"
        );
    }

    #[test]
    fn uuids_hex_ids_and_tokens_are_identifiers() {
        assert_eq!(
            normalize_route("/o/123e4567-e89b-12d3-a456-426614174000"),
            "/o/{id}"
        );
        assert_eq!(
            normalize_route("/c/0123456789abcdef0123456789abcdef01234567"),
            "/c/{id}"
        );
        assert_eq!(normalize_route("/blob/5f3a9c1e"), "/blob/{id}");
        assert_eq!(
            normalize_route("/s/aZ3kP9qLm2Xw7RtY4bNc8"),
            "/s/{id}",
            "random-looking token"
        );
        assert_eq!(normalize_route("/img/123456.png"), "/img/{id}.png");
    }

    /// Each shape a review found verbatim in `http_route`, and its neighbours.
    #[test]
    fn personal_data_and_secrets_never_stay_in_a_route() {
        for (target, route) in [
            ("/u/jane.roe@example.org/orders", "/u/{id}/orders"),
            ("/u/jane.roe%40example.org/orders", "/u/{id}/orders"),
            ("/u/JANE%40EXAMPLE.ORG", "/u/{id}"),
            ("/cart;jsessionid=Q7ZK2M9XW4", "/cart"),
            ("/a;v=1/b;jsessionid=Q7/c", "/a/b/c"),
            ("/reset/kP9qLm2Xw7RtYaZ3", "/reset/{id}"),
            ("/v1/cards/4111-1111-1111-1111", "/v1/cards/{id}"),
            ("/v1/cards/4111 1111 1111 1111", "/v1/cards/{id}"),
            ("/call/+1-555-0100", "/call/{id}"),
            ("/call/(555)%20123", "/call/(555)%20123"),
            ("/day/2026-12-04", "/day/{id}"),
            ("/hosts/10.1.2.3", "/hosts/{id}"),
            ("/hosts/fe80::1:2", "/hosts/{id}"),
            ("/o/{123e4567-e89b-12d3-a456-426614174000}", "/o/{id}"),
            ("/o/%7B123e4567-e89b-12d3-a456-426614174000%7D", "/o/{id}"),
            ("/t/c2VjcmV0LXRva2Vu", "/t/{id}"),
            ("/t/c2VjcmV0LXRva2VuIQ==", "/t/{id}"),
            ("/t/YWJjZA==", "/t/{id}"),
        ] {
            assert_eq!(normalize_route(target), route, "{target}");
        }
    }

    #[test]
    fn words_and_short_segments_are_kept() {
        for route in [
            "/",
            "/api/v1/users",
            "/deadbeef",
            "/abc123",
            "/static/app.js",
            "/how-to-install-rust-on-linux",
            "/v1.2.3/release-notes",
            "/api/v2/health-check",
            "/oauth2",
            "/users/",
            "//double",
        ] {
            assert_eq!(normalize_route(route), route);
        }
    }

    #[test]
    fn absolute_asterisk_and_authority_forms() {
        assert_eq!(normalize_route("http://example.com:8080/a/7?x"), "/a/{id}");
        assert_eq!(normalize_route("https://example.com"), "/");
        assert_eq!(normalize_route("*"), "*");
        assert_eq!(normalize_route("example.com:443"), AUTHORITY_ROUTE);
        assert_eq!(normalize_route(""), AUTHORITY_ROUTE);
        assert_eq!(authority_of("http://u:p@h:1/x"), Some("h:1"));
        assert_eq!(authority_of("http:///x"), None);
        assert_eq!(authority_of("/x"), None);
    }

    #[test]
    fn long_routes_are_cut_at_a_char_boundary() {
        let long = format!("/{}", "é".repeat(400));
        let route = normalize_route(&long);
        // 1 + 2 × 127 = 255 bytes: one more `é` would pass the 256-byte cap.
        assert_eq!(route, format!("/{}", "é".repeat(127)));
        assert!(route.len() <= MAX_ROUTE_LEN);
    }
}
