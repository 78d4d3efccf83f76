//! Connection URLs of SQL servers: `scheme://[user[:password]@]host[:port]/database[?key=value&…]`.
//!
//! Parsed by hand: the grammar that database URLs use is this small subset of RFC 3986
//! (percent-escapes in every part, an IPv6 host in brackets), and a general URL parser
//! would still leave the database-specific meaning of each part to us. The password is
//! kept only to be handed to the tools through their environment; it is never part of
//! [`ConnectionUrl::address`] nor of the `Debug` output.

use std::fmt;

/// A parsed connection URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    /// The user, if the URL names one.
    pub user: Option<String>,
    /// The password, if the URL holds one. Never shown.
    pub password: Option<String>,
    /// The host name or address (an IPv6 address without its brackets), if given.
    pub host: Option<String>,
    /// The port, if given.
    pub port: Option<u16>,
    /// The database: the path without its leading `/`, percent-decoded. Never empty.
    pub database: String,
    /// The query parameters, decoded, in the order written.
    pub parameters: Vec<(String, String)>,
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("parameters", &self.parameters)
            .finish()
    }
}

impl ConnectionUrl {
    /// Parses `url`, whose scheme must be one of `schemes`. The error says what is
    /// wrong, without repeating the URL (it may hold a password).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Self, String> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| format!("`url` must look like {}://host:port/database", schemes[0]))?;
        if !schemes.iter().any(|known| known.eq_ignore_ascii_case(scheme)) {
            return Err(format!("`url` must start with {}://, not {scheme}://", schemes.join(":// or ")));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(decode(user, "user")?), Some(decode(password, "password")?)),
                None => (Some(decode(info, "user")?), None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        let database = decode(path, "database")?;
        if database.is_empty() {
            return Err("`url` names no database: add it after the host, as in …://host:port/database".to_owned());
        }
        if database.contains('\0') {
            return Err("the database name in `url` holds a NUL character".to_owned());
        }
        let mut parameters = Vec::new();
        for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            parameters.push((decode(key, "parameter")?, decode(value, "parameter")?));
        }
        Ok(ConnectionUrl {
            user: user.filter(|user| !user.is_empty()),
            password,
            host: host.filter(|host| !host.is_empty()),
            port,
            database,
            parameters,
        })
    }

    /// `host:port/database` for messages, without user or password; `default_port`
    /// stands in when the URL gives none, `local` when it gives no host.
    pub fn address(&self, default_port: u16, local: &str) -> String {
        let host = match &self.host {
            Some(host) if host.contains(':') => format!("[{host}]"),
            Some(host) => host.clone(),
            None => local.to_owned(),
        };
        format!("{host}:{}/{}", self.port.unwrap_or(default_port), self.database)
    }
}

fn split_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("`url` has an IPv6 host without its closing `]`")?;
        match after.strip_prefix(':') {
            Some(port) => (host.to_owned(), Some(port)),
            None if after.is_empty() => (host.to_owned(), None),
            None => return Err("`url` has text after its IPv6 host that is not a :port".to_owned()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (decode(host, "host")?, Some(port)),
            None => (decode(hostport, "host")?, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(port.parse::<u16>().map_err(|_| format!("the port `{port}` in `url` is not a number"))?),
    };
    Ok((Some(host), port))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn decode(text: &str, part: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            let byte = hex
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("the {part} in `url` has a `%` that is not followed by two hex digits"))?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {part} in `url` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() -> Result<(), String> {
        let url = ConnectionUrl::parse(
            "postgresql://app%40team:p%3Ass@db.example:6543/app_main?sslmode=require&application_name=x%20y",
            &["postgresql", "postgres"],
        )?;
        assert_eq!(url.user.as_deref(), Some("app@team"));
        assert_eq!(url.password.as_deref(), Some("p:ss"));
        assert_eq!(url.host.as_deref(), Some("db.example"));
        assert_eq!(url.port, Some(6543));
        assert_eq!(url.database, "app_main");
        assert_eq!(
            url.parameters,
            vec![("sslmode".into(), "require".into()), ("application_name".into(), "x y".into())]
        );
        assert_eq!(url.address(5432, "local"), "db.example:6543/app_main");
        assert!(!format!("{url:?}").contains("p:ss"), "Debug hides the password");
        Ok(())
    }

    #[test]
    fn accepts_ipv6_and_missing_parts() -> Result<(), String> {
        let url = ConnectionUrl::parse("mysql://[::1]/shop", &["mysql"])?;
        assert_eq!((url.host.as_deref(), url.port, url.user.as_deref()), (Some("::1"), None, None));
        assert_eq!(url.address(3306, "local"), "[::1]:3306/shop");
        let url = ConnectionUrl::parse("postgres:///app?host=/run/postgresql", &["postgresql", "postgres"])?;
        assert_eq!(url.host, None);
        assert_eq!(url.address(5432, "local socket"), "local socket:5432/app");
        Ok(())
    }

    #[test]
    fn refuses_what_it_cannot_use_without_echoing_secrets() {
        let schemes = &["postgresql"];
        for (url, expected) in [
            ("127.0.0.1:5432/app", "must look like"),
            ("mysql://h/app", "must start with postgresql://"),
            ("postgresql://h:5432", "names no database"),
            ("postgresql://u:s3cret@h:port/app", "not a number"),
            ("postgresql://u:s3cret%zz@h/app", "password in `url` has a `%`"),
            ("postgresql://[::1/app", "closing `]`"),
        ] {
            let error = ConnectionUrl::parse(url, schemes).err().unwrap_or_default();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
