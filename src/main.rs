//! The `gatehouse` command: parse arguments, load and validate config, bind, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Many small, short-lived allocations per request (headers, URIs, futures): mimalloc
// handles them with less CPU than glibc's allocator (measured with bench/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gatehouse::Config;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An authentication sidecar for any HTTP app"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(
            long,
            short,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
    },
    /// Validate a config file (with GATEHOUSE_* overrides) and exit non-zero on any problem.
    CheckConfig {
        #[arg(
            long,
            short,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
    },
    /// Print a token signed with the `[tokens]` key, for trying things out.
    Token {
        #[arg(
            long,
            short,
            env = "GATEHOUSE_CONFIG",
            default_value = "config/gatehouse.toml"
        )]
        config: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok", config.display());
                for (what, n) in gatehouse::config::summary(&c) {
                    println!("  {what}: {n}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gatehouse: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            config,
            sub,
            email,
            role,
            permissions,
            team_id,
            ttl,
        } => match token(&config, sub, email, role, permissions, team_id, ttl) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    gatehouse::telemetry::init(&config.log);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = config.server.worker_threads {
        runtime.worker_threads(n);
    }
    runtime.build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
        gatehouse::run(listener, config, shutdown_signal()).await
    })
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
    path: &std::path::Path,
    sub: String,
    email: Option<String>,
    role: Option<String>,
    permissions: Vec<String>,
    team_id: Option<String>,
    ttl: Option<String>,
) -> anyhow::Result<String> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let tokens = config.tokens.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: there is no [tokens] section, so Gatehouse has no key to sign with",
            path.display()
        )
    })?;
    let ttl = match ttl {
        Some(t) => {
            gatehouse::config::parse_duration(&t).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?
        }
        None => tokens.access_ttl,
    };
    let key =
        gatehouse::auth::signing::SigningKey::load_or_generate(&tokens.key_file, tokens.algorithm)?;
    let now = gatehouse::auth::jwt::now_secs();
    let mut claims = serde_json::json!({
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": sub,
        "iat": now,
        "exp": now + ttl.as_secs(),
        "permissions": permissions,
    });
    for (name, value) in [("email", email), ("role", role), ("team_id", team_id)] {
        if let Some(v) = value {
            claims[name] = serde_json::Value::String(v);
        }
    }
    Ok(key.sign(&claims))
}
