//! The environment layer of [`crate::config`]: `IMGMIRROR_<SECTION>_<KEY>` variables
//! applied on top of the file's table before it is deserialised. It owns the variable
//! grammar only; the keys and their validation stay in `config`.

use super::{ConfigError, ENV_PREFIX};

/// Applies `IMGMIRROR_<SECTION>_<KEY>=value` on top of the file. The value is read as a
/// TOML value when it parses as one (numbers, booleans, arrays, inline tables) and as a
/// plain string otherwise, so `IMGMIRROR_UPSTREAM_ALLOW_CIDRS='["10.0.0.0/8"]'` works.
pub(super) fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    const SECTIONS: [&str; 11] = [
        "security",
        "store",
        "server",
        "cache",
        "upstream",
        "response",
        "transform",
        "admin",
        "article",
        "log",
        "metrics",
    ];
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            // IMGMIRROR_LOG (the log filter, no key after the section) is not a config key.
            continue;
        }
        if (section, key) == ("upstream", "host") {
            let message = "[[upstream.host]] entries are set in the config file only";
            return Err(ConfigError::Env {
                var,
                message: message.into(),
            });
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = section_table.as_table_mut() else {
            return Err(ConfigError::Env {
                var,
                message: format!("[{section}] in the file is not a table"),
            });
        };
        section_table.insert(key.to_string(), value);
    }
    Ok(())
}
