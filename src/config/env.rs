//! The `GATEHOUSE_SECTION__KEY=value` environment overlay, applied to the parsed TOML
//! table before validation, so an override is checked exactly like a file value.

use toml::{Table, Value};

pub const PREFIX: &str = "GATEHOUSE_";

/// Applies every `GATEHOUSE_*` variable to `table`. `__` separates path segments; a numeric
/// segment indexes an array (`GATEHOUSE_ISSUERS__0__JWKS_URL`). Values are read as TOML
/// (`5`, `true`, `["a","b"]`) when they parse as such, otherwise as plain strings.
pub fn overlay(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Vec<(String, String)>> {
    let mut problems = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            problems.push((name.clone(), "empty path segment".to_string()));
            continue;
        }
        let value = parse_value(&raw);
        if let Err(why) = set(table, &path, value) {
            problems.push((path.join("."), format!("from {name}: {why}")));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

fn parse_value(raw: &str) -> Value {
    // Parse `x = <raw>` so numbers, booleans, arrays and inline tables keep their types.
    match format!("x = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("path is never empty");
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let slot = table.entry(first.clone()).or_insert_with(|| empty_container(&rest[0]));
    set_in(slot, rest, value)
}

fn set_in(slot: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    match slot {
        Value::Table(t) => set(t, path, value),
        Value::Array(items) => {
            let (first, rest) = path.split_first().expect("path is never empty");
            let index: usize = first.parse().map_err(|_| format!("`{first}` is not an array index"))?;
            if index > items.len() {
                return Err(format!("index {index} skips past the array's end ({})", items.len()));
            }
            if index == items.len() {
                items.push(if rest.is_empty() { value.clone() } else { empty_container(&rest[0]) });
            }
            if rest.is_empty() {
                items[index] = value;
                Ok(())
            } else {
                set_in(&mut items[index], rest, value)
            }
        }
        _ => Err("overrides a plain value with a nested one".to_string()),
    }
}

fn empty_container(next_segment: &str) -> Value {
    if next_segment.parse::<usize>().is_ok() { Value::Array(Vec::new()) } else { Value::Table(Table::new()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_nested_keys_and_keeps_types() {
        let mut t: Table = "[server]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        overlay(
            &mut t,
            vars(&[
                ("GATEHOUSE_SERVER__LISTEN", "0.0.0.0:9"),
                ("GATEHOUSE_SERVER__WORKER_THREADS", "3"),
                ("GATEHOUSE_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("GATEHOUSE_ISSUERS__0__ISSUER", "https://idp"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(t["server"]["listen"].as_str(), Some("0.0.0.0:9"));
        assert_eq!(t["server"]["worker_threads"].as_integer(), Some(3));
        assert_eq!(t["server"]["trusted_proxies"][0].as_str(), Some("10.0.0.0/8"));
        assert_eq!(t["issuers"][0]["issuer"].as_str(), Some("https://idp"));
    }

    #[test]
    fn reports_bad_paths() {
        let mut t: Table = "[server]\nlisten = \"x\"\n".parse().unwrap();
        let err = overlay(&mut t, vars(&[("GATEHOUSE_SERVER__LISTEN__X", "1")])).unwrap_err();
        assert_eq!(err[0].0, "server.listen.x");
    }
}
