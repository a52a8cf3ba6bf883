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
/// Segments replaced by [`ID_PLACEHOLDER`]: all digits; a UUID; 8 or more hex digits with
/// at least one digit (`5f3a9c1e`, not `deadbeef`… a word made of a–f letters is kept);
/// 20 or more token characters (letters, digits, `-_.~%=+`) mixing letters and digits.
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
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == bytes.len() || is_uuid(bytes) {
        return true;
    }
    if bytes.len() >= 8 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    bytes.len() >= 20
        && digits > 0
        && letters > 0
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.~%=+".contains(&b))
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

    #[test]
    fn words_and_short_segments_are_kept() {
        for route in [
            "/",
            "/api/v1/users",
            "/deadbeef",
            "/abc123",
            "/static/app.js",
            "/how-to-install-rust-on-linux",
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
        assert!(route.len() <= MAX_ROUTE_LEN);
        assert!(route.starts_with("/é"));
    }
}
