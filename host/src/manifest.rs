//! Reading `spin.toml` (manifest version 2) the way `spin up` does, for the parts
//! this host supports: variables, HTTP triggers, and each component's source,
//! outbound hosts, key-value stores, SQLite databases and variable templates.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
struct RawApplication {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Debug, Deserialize)]
struct RawHttpTrigger {
    route: String,
    component: String,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Settings for tools, which Spin ignores; this host reads its own
    /// (`[component.<id>.tool.vapi-edge-host]`).
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
    /// `spin build`'s command, named when the `.wasm` is missing.
    build: Option<RawBuild>,
}

#[derive(Debug, Deserialize)]
struct RawBuild {
    command: String,
}

/// What `[component.<id>.tool.vapi-edge-host]` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostSettings {
    request_timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
}

/// The name of this host's table under a component's `tool`.
pub const TOOL_NAME: &str = "vapi-edge-host";

/// One application variable after resolution. (`secret` only matters to hosts
/// that print variables; this one never does.)
#[derive(Debug, Clone)]
pub struct Variable {
    pub value: String,
}

/// A component with everything resolved against the application variables.
#[derive(Debug, Clone)]
pub struct Component {
    pub source: PathBuf,
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    /// SQLite database labels the component may open.
    pub sqlite_databases: Vec<String>,
    /// Component variables (what `variables::get` sees), already rendered.
    pub variables: HashMap<String, String>,
    /// Its requests' deadline, when its manifest sets one for this host.
    pub request_timeout: Option<std::time::Duration>,
    /// The largest body its requests may have, when its manifest sets it
    /// for this host (larger: 413 before the body is read).
    pub max_body_bytes: Option<u64>,
    /// The command that builds `source` (`[component.<id>.build]`), if any.
    pub build_command: Option<String>,
}

/// An HTTP route: an exact path, or a prefix when written `/prefix/...`.
#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: String,
    pub component: String,
}

impl Route {
    pub fn matches(&self, path: &str) -> bool {
        match self.pattern.strip_suffix("/...") {
            Some(prefix) => {
                path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
            }
            None => path == self.pattern || path.trim_end_matches('/') == self.pattern,
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    /// The folder of `spin.toml`: paths in it start there, and Spin keeps the
    /// app's local state (`.spin/`) there.
    pub dir: PathBuf,
    pub routes: Vec<Route>,
    pub components: HashMap<String, Component>,
}

/// Loads a manifest; `env` supplies `SPIN_VARIABLE_*` values (a function so tests
/// need not touch the process environment).
/// `path` may be the manifest or, as with `spin up --from`, its folder.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<App> {
    let in_folder;
    let path = if path.is_dir() {
        in_folder = path.join("spin.toml");
        in_folder.as_path()
    } else {
        path
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read manifest {} (run from the app's folder, or name its spin.toml with \
             --from)",
            path.display()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, env).with_context(|| format!("invalid manifest {}", path.display()))
}

pub fn parse(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<App> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))?;
    if raw.spin_manifest_version != 2 {
        bail!("spin_manifest_version must be 2");
    }
    let variables = resolve_variables(&raw.variables, env)?;
    let mut components = HashMap::new();
    for (id, component) in raw.component {
        let render_in = |what: &str, template: &str| {
            render(template, &variables).with_context(|| format!("component `{id}` {what}"))
        };
        let allowed_outbound_hosts = component
            .allowed_outbound_hosts
            .iter()
            .map(|t| render_in("allowed_outbound_hosts", t))
            .collect::<Result<Vec<_>>>()?;
        let mut component_variables = HashMap::new();
        for (name, template) in &component.variables {
            let value = render_in(&format!("variable `{name}`"), template)?;
            component_variables.insert(name.clone(), value);
        }
        let host_settings: RawHostSettings = match component.tool.get(TOOL_NAME) {
            Some(table) => table
                .clone()
                .try_into()
                .with_context(|| format!("component `{id}` tool.{TOOL_NAME}"))?,
            None => RawHostSettings::default(),
        };
        let request_timeout = match host_settings.request_timeout_ms {
            Some(0) => {
                bail!("component `{id}` tool.{TOOL_NAME}.request_timeout_ms must be above 0")
            }
            ms => ms.map(std::time::Duration::from_millis),
        };
        components.insert(
            id,
            Component {
                source: base.join(&component.source),
                allowed_outbound_hosts,
                key_value_stores: component.key_value_stores,
                sqlite_databases: component.sqlite_databases,
                variables: component_variables,
                request_timeout,
                max_body_bytes: host_settings.max_body_bytes,
                build_command: component.build.map(|build| build.command),
            },
        );
    }
    let mut routes = Vec::new();
    for trigger in raw.trigger.http {
        if !components.contains_key(&trigger.component) {
            bail!(
                "trigger route `{}` names component `{}`, which is not defined",
                trigger.route,
                trigger.component
            );
        }
        routes.push(Route {
            pattern: trigger.route,
            component: trigger.component,
        });
    }
    if routes.is_empty() {
        bail!("no [[trigger.http]] route is defined");
    }
    // Spin prefers the most specific route: exact paths before wildcards, longer first.
    routes.sort_by_key(|r| {
        (
            r.pattern.ends_with("/..."),
            std::cmp::Reverse(r.pattern.len()),
        )
    });
    Ok(App {
        name: raw.application.name,
        dir: base.to_path_buf(),
        routes,
        components,
    })
}

fn resolve_variables(
    declared: &BTreeMap<String, RawVariable>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<String, Variable>> {
    let mut resolved = HashMap::new();
    for (name, decl) in declared {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("variable name `{name}` must be lower-case letters, digits and underscores");
        }
        if decl.required && decl.default.is_some() {
            bail!("variable `{name}` cannot be both required and have a default");
        }
        let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        let value = match (env(&env_name), &decl.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.clone(),
            (None, None) => bail!("variable `{name}` is required: set {env_name}"),
        };
        let _ = decl.secret;
        resolved.insert(name.clone(), Variable { value });
    }
    Ok(resolved)
}

/// Renders `{{ name }}` placeholders with application variables.
fn render(template: &str, variables: &HashMap<String, Variable>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed `{{{{` in `{template}`"))?;
        let name = after[..end].trim();
        let variable = variables
            .get(name)
            .ok_or_else(|| anyhow!("refers to undeclared variable `{name}`"))?;
        out.push_str(&variable.value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_the_manifest_or_its_folder() {
        let dir = std::env::temp_dir().join(format!("vapi-edge-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("spin.toml"), MANIFEST).unwrap();
        let env = env(&[("SPIN_VARIABLE_TOKEN", "x")]);
        let by_file = load(&dir.join("spin.toml"), &env).unwrap();
        let by_folder = load(&dir, &env).unwrap();
        assert_eq!(by_file.name, by_folder.name);
        assert_eq!(by_file.dir, by_folder.dir);
        let missing = load(&dir.join("absent.toml"), &env).unwrap_err();
        assert!(format!("{missing:#}").contains("--from"), "{missing:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
pg_url = { default = "", secret = true }
token = { required = true }
host = { default = "http://127.0.0.1:8787" }
[[trigger.http]]
route = "/..."
component = "web"
[[trigger.http]]
route = "/healthz"
component = "web"
[component.web]
source = "target/app.wasm"
allowed_outbound_hosts = ["{{ host }}"]
key_value_stores = ["default"]
sqlite_databases = ["default", "reports"]
[component.web.variables]
pg_url = "{{ pg_url }}"
token = "Bearer {{token}}"
"#;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn variables_come_from_spin_variable_env_then_defaults() {
        let app = parse(
            MANIFEST,
            Path::new("/app"),
            &env(&[("SPIN_VARIABLE_TOKEN", "t0k")]),
        )
        .unwrap();
        let web = &app.components["web"];
        assert_eq!(web.variables["token"], "Bearer t0k");
        assert_eq!(web.variables["pg_url"], "");
        assert_eq!(web.allowed_outbound_hosts, vec!["http://127.0.0.1:8787"]);
        assert_eq!(web.source, Path::new("/app/target/app.wasm"));
        assert_eq!(web.key_value_stores, ["default"]);
        assert_eq!(web.sqlite_databases, ["default", "reports"]);
        assert_eq!(app.dir, Path::new("/app"));
    }

    #[test]
    fn a_component_may_set_this_hosts_request_deadline_and_other_tools_are_ignored() {
        let env = env(&[("SPIN_VARIABLE_TOKEN", "x")]);
        let app = parse(MANIFEST, Path::new("."), &env).unwrap();
        assert_eq!(app.components["web"].request_timeout, None);
        let text = format!(
            "{MANIFEST}[component.web.tool.vapi-edge-host]\nrequest_timeout_ms = 305000\n\
             max_body_bytes = 5242880\n[component.web.tool.other]\nanything = [1, 2]\n"
        );
        let app = parse(&text, Path::new("."), &env).unwrap();
        assert_eq!(
            app.components["web"].request_timeout,
            Some(std::time::Duration::from_millis(305_000))
        );
        assert_eq!(app.components["web"].max_body_bytes, Some(5 << 20));
        let typo = format!("{MANIFEST}[component.web.tool.vapi-edge-host]\nrequest_timeout = 5\n");
        let err = format!("{:#}", parse(&typo, Path::new("."), &env).unwrap_err());
        assert!(err.contains("tool.vapi-edge-host"), "{err}");
    }

    #[test]
    fn a_missing_required_variable_names_the_env_var() {
        let err = parse(MANIFEST, Path::new("."), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_TOKEN"), "{err}");
    }

    #[test]
    fn exact_routes_win_over_wildcards() {
        let app = parse(
            MANIFEST,
            Path::new("."),
            &env(&[("SPIN_VARIABLE_TOKEN", "x")]),
        )
        .unwrap();
        assert_eq!(app.routes[0].pattern, "/healthz");
        assert!(app.routes[1].matches("/webhooks/vapi"));
        assert!(Route {
            pattern: "/api/...".into(),
            component: "x".into()
        }
        .matches("/api/v1"));
        assert!(!Route {
            pattern: "/api/...".into(),
            component: "x".into()
        }
        .matches("/apiv1"));
    }

    #[test]
    fn an_undeclared_template_variable_is_an_error() {
        let text = MANIFEST.replace("{{ host }}", "{{ nope }}");
        let err = parse(&text, Path::new("."), &env(&[("SPIN_VARIABLE_TOKEN", "x")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("undeclared variable `nope`"),
            "{err:#}"
        );
    }
}
