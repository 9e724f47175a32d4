//! The `gatehouse` command: parse arguments, load and validate config, then serve or run
//! one operator task (`check-config`, `token`, `user create`, `client ...`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gatehouse::Config;
use gatehouse::domain::claims::{AccessClaims, OperatorFacts};
use gatehouse::domain::users::{self, NewAccount};
use gatehouse::domain::{DomainError, clients, validate};
use gatehouse::store::Store;

// Many small, short-lived allocations per request (headers, URIs, futures): mimalloc
// handles them with less CPU than glibc's allocator (measured with bench/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "An authentication sidecar for any HTTP app")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    #[arg(long, short, env = "GATEHOUSE_CONFIG", default_value = "config/gatehouse.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ConfigArg),
    /// Validate a config file (with GATEHOUSE_* overrides) and exit non-zero on any problem.
    CheckConfig(ConfigArg),
    /// Print a token signed with Gatehouse's own key, for trying things out.
    Token {
        #[command(flatten)]
        config: ConfigArg,
        /// The subject (user id).
        #[arg(long, default_value = "demo-user")]
        sub: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Comma-separated permissions.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        #[arg(long)]
        team_id: Option<String>,
        /// Lifetime, e.g. `15m`; defaults to `tokens.access_ttl`.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Manage accounts in the store.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage Gatehouse's own signing keys in the store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the OAuth2 clients of the client-credentials grant in the store.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client and print its client_id and client_secret; the secret is shown only here.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (they become the token's permissions).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List live clients, one per line: client_id, name, scopes, created_at (tab-separated).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Delete a client; running replicas refuse its tokens within a second.
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Store a new signing key. Replicas pick it up within `tokens.key_reload` and start
    /// signing with it after `--activate-in`; the old key keeps verifying until its last
    /// token has expired.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// Keep this longer than `tokens.key_reload`.
        #[arg(long, default_value = "30s")]
        activate_in: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input (one line) or, on a
    /// terminal, prompted for; never from the command line.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Comma-separated permissions.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        #[arg(long)]
        team_id: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig(ConfigArg { config }) => check_config(&config),
        Command::Serve(ConfigArg { config: path }) => load(&path).and_then(|config| serve(config, path)),
        Command::Token { config, sub, email, role, permissions, team_id, ttl } => {
            token(&config.config, sub, email, role, permissions, team_id, ttl).map(|t| println!("{t}"))
        }
        Command::User {
            command: UserCommand::Create { config, email, username, name, role, permissions, team_id },
        } => create_user(&config.config, email, username, name, role, permissions, team_id),
        Command::Keys { command: KeysCommand::Rotate { config, activate_in } } => {
            rotate_keys(&config.config, &activate_in)
        }
        Command::Client { command } => client(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(text)) => {
            eprint!("{text}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A bad config exits 2 (as `check-config` documents); anything else 1.
enum Failure {
    Config(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn load(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Config(format!("{}: {e}", path.display())))
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let c = load(path)?;
    println!("{}: ok", path.display());
    for (what, n) in gatehouse::config::summary(&c) {
        println!("  {what}: {n}");
    }
    Ok(())
}

fn serve(config: Config, path: PathBuf) -> Result<(), Failure> {
    gatehouse::telemetry::init(&config.log);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = config.server.worker_threads {
        runtime.worker_threads(n);
    }
    runtime.build().map_err(anyhow::Error::from)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
        gatehouse::run_reloading(listener, config, path, shutdown_signal()).await
    })?;
    Ok(())
}

/// A small runtime for the one-shot commands that touch the store.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn token(
    path: &Path,
    sub: String,
    email: Option<String>,
    role: Option<String>,
    permissions: Vec<String>,
    team_id: Option<String>,
    ttl: Option<String>,
) -> Result<String, Failure> {
    let config = load(path)?;
    let tokens = config.tokens.as_ref().ok_or_else(|| {
        anyhow::anyhow!("{}: there is no [tokens] section, so Gatehouse has no key to sign with", path.display())
    })?;
    let ttl = match ttl {
        Some(t) => gatehouse::config::parse_duration(&t).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?,
        None => tokens.access_ttl,
    };
    let key = runtime()?.block_on(async {
        let store: Option<std::sync::Arc<dyn Store>> = match tokens.key_file {
            Some(_) => None,
            None => Some(std::sync::Arc::new(gatehouse::store::SqlStore::connect(&config.store.url).await?)),
        };
        let own = gatehouse::auth::own_keys::OwnKeys::load(tokens, store, config.jwt.leeway).await?;
        anyhow::Ok(own.ring().signing.clone())
    })?;
    let now = gatehouse::clock::now_secs() as i64;
    let claims = AccessClaims::operator(
        tokens,
        &sub,
        &permissions,
        OperatorFacts { email: email.as_deref(), role: role.as_deref(), team_id: team_id.as_deref() },
        ttl,
        now,
    );
    Ok(key.sign(&claims))
}

/// A domain error as the operator reads it: the store's own message, not the API's
/// "internal error" (the CLI has no log to look in).
fn cli_error(e: DomainError) -> anyhow::Error {
    anyhow::Error::new(e)
}

fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn create_user(
    path: &Path,
    email: String,
    username: Option<String>,
    name: Option<String>,
    role: Option<String>,
    permissions: Vec<String>,
    team_id: Option<String>,
) -> Result<(), Failure> {
    let config = load(path)?;
    let cfg = &config.accounts;
    // The flags are checked before the password is asked for; `users::create` checks all.
    validate::email(&email).map_err(|e| anyhow::anyhow!("--{e}"))?;
    if let Some(u) = &username {
        validate::username(u).map_err(|e| anyhow::anyhow!("--{e}"))?;
    }
    let password = read_password()?;
    let new = NewAccount {
        email,
        password,
        username,
        name,
        role,
        permissions: (!permissions.is_empty()).then_some(permissions),
        team_id,
        ..NewAccount::default()
    };
    let user = runtime()?.block_on(async {
        let store = gatehouse::store::SqlStore::connect(&config.store.url).await?;
        let passwords = gatehouse::auth::password::Passwords::new(1);
        let now = gatehouse::clock::now_secs() as i64;
        users::create(&store, &passwords, cfg, new, now).await.map_err(cli_error)
    })?;
    println!("created user {} <{}> role={} permissions={}", user.id, user.email, user.role, user.permissions.join(","));
    Ok(())
}

fn rotate_keys(path: &Path, activate_in: &str) -> Result<(), Failure> {
    let config = load(path)?;
    let activate_in =
        gatehouse::config::parse_duration(activate_in).map_err(|e| anyhow::anyhow!("--activate-in: {e}"))?;
    let tokens =
        config.tokens.as_ref().ok_or_else(|| anyhow::anyhow!("{}: there is no [tokens] section", path.display()))?;
    if tokens.key_file.is_some() {
        return Err(anyhow::anyhow!("tokens.key_file is set: rotate by replacing that file").into());
    }
    let kid = runtime()?.block_on(async {
        let store = gatehouse::store::SqlStore::connect(&config.store.url).await?;
        gatehouse::auth::own_keys::rotate(&store, tokens, activate_in).await
    })?;
    println!("stored signing key {kid}; it signs from {} s from now", activate_in.as_secs());
    Ok(())
}

fn client(command: ClientCommand) -> Result<(), Failure> {
    let path = match &command {
        ClientCommand::Create { config, .. }
        | ClientCommand::List { config }
        | ClientCommand::Delete { config, .. } => &config.config,
    };
    let config = load(path)?;
    let now = gatehouse::clock::now_secs() as i64;
    runtime()?.block_on(async {
        let store = gatehouse::store::SqlStore::connect(&config.store.url).await?;
        match command {
            ClientCommand::Create { name, scopes, .. } => {
                validate::name(&name).map_err(|e| anyhow::anyhow!("--{e}"))?;
                validate::scopes("scopes", &scopes).map_err(|e| anyhow::anyhow!("--{e}"))?;
                // The same pepper as the servers': a client made here authenticates there.
                let pepper = gatehouse::auth::api_key::Pepper::load(&config, &store).await?;
                let (client, secret) =
                    clients::create(&store, &pepper, &config, &name, &scopes, None, now).await.map_err(cli_error)?;
                println!("client_id: {}\nclient_secret: {secret}", client.id);
                eprintln!("the secret is shown only this once: store it now");
            }
            ClientCommand::List { .. } => {
                for c in store.clients().await? {
                    let created = gatehouse::api::session::rfc3339(c.created_at);
                    println!("{}\t{}\t{}\t{}", c.id, c.name, c.scopes.join(","), created.as_str().unwrap_or(""));
                }
            }
            ClientCommand::Delete { id, .. } => {
                let now = gatehouse::clock::now_secs() as i64;
                if clients::delete(&store, &config, &id, now).await.map_err(cli_error)?.is_none() {
                    anyhow::bail!("no live client {id}");
                }
                println!("deleted client {id}; its tokens are refused from now on");
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
