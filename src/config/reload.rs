//! What a reload may change: the keys fixed for the life of the process, compared between
//! the running config and a newly validated one, so a reload that needs a restart is refused.

use super::Config;

/// The keys whose values differ between `old` and `new` but cannot change at run time: each
/// is bound to something built once (the listening socket, the runtime, the store pool, the
/// signing keys, the global log subscriber). Empty means `new` may be swapped in.
pub fn fixed_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("server.listen", old.server.listen == new.server.listen);
    check("server.worker_threads", old.server.worker_threads == new.server.worker_threads);
    check("server.max_connections", old.server.max_connections == new.server.max_connections);
    check("server.metrics_listen", old.server.metrics_listen == new.server.metrics_listen);
    // The certificate and key files are re-read on every reload; turning TLS on or off
    // would change what the open listener speaks.
    check("server.tls", old.server.tls.is_some() == new.server.tls.is_some());
    check("store.url", old.store.url == new.store.url);
    match (&old.tokens, &new.tokens) {
        (Some(a), Some(b)) => {
            check("tokens.issuer", a.issuer == b.issuer);
            check("tokens.algorithm", a.algorithm == b.algorithm);
            check("tokens.key_file", a.key_file == b.key_file);
            check("tokens.key_reload", a.key_reload == b.key_reload);
        }
        (None, None) => {}
        // The auth API and its store come and go only with a restart.
        _ => check("tokens", false),
    }
    check("api_keys.pepper_file", old.api_keys.pepper_file == new.api_keys.pepper_file);
    check("log.format", old.log.format == new.log.format);
    check("log.level", old.log.level == new.log.level);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[server]\nlisten = \"127.0.0.1:8080\"\n{extra}\n\
             [[routes]]\npath = \"/\"\nauth = \"public\"\n"
        );
        Config::from_toml(&text, std::iter::empty()).expect("valid config")
    }

    #[test]
    fn reloadable_keys_pass_and_fixed_ones_are_named() {
        let base = config("");
        assert!(fixed_changes(&base, &base).is_empty());
        assert!(fixed_changes(&base, &config("idle_timeout = \"7s\"")).is_empty(), "timeouts reload");
        let cases = [
            ("worker_threads = 3", "server.worker_threads"),
            ("max_connections = 17", "server.max_connections"),
            ("metrics_listen = \"127.0.0.1:9100\"", "server.metrics_listen"),
        ];
        for (extra, key) in cases {
            assert_eq!(fixed_changes(&base, &config(extra)), vec![key], "{extra}");
        }
        let moved = Config::from_toml(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[server]\nlisten = \"127.0.0.1:8081\"\n\
             [[routes]]\npath = \"/\"\nauth = \"public\"\n[log]\nlevel = \"debug\"\n",
            std::iter::empty(),
        )
        .expect("valid config");
        assert_eq!(fixed_changes(&base, &moved), vec!["server.listen", "log.level"]);
    }
}
