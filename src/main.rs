//! The `lienthong` binary: the gateway (`serve`) and its command-line clients.

mod offline;

use lienthong_cli as cli;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use lienthong::config::{Config, Overrides};

/// Lienthong: the provincial gateway for official electronic documents.
#[derive(Parser)]
#[command(name = "lienthong", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load-test a gateway (documents/s, latency percentiles), or measure
    /// the in-process verification ceiling with --verify-only.
    Bench(cli::BenchArgs),
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "lienthong.toml")]
        config: PathBuf,
        /// Address to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory; overrides server.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Keep the state in PostgreSQL at this connection string (e.g.
        /// "host=/run/postgresql user=lienthong dbname=lienthong"): overrides
        /// [store] engine and [store.postgres] url.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// Register, list, disable and enable agencies (admin certificate).
    Agency {
        #[command(subcommand)]
        command: cli::AgencyCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Send a document with its files.
    Send(cli::SendArgs),
    /// Receive documents from your agency's queue.
    Receive(cli::ReceiveArgs),
    /// Bind signer certificates to agencies and roles (admin certificate).
    Signer {
        #[command(subcommand)]
        command: cli::SignerCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Import and list signing keys the gateway holds (admin certificate).
    Key {
        #[command(subcommand)]
        command: cli::KeyCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Sign (or co-sign) a file with your agency's key held by the gateway.
    Sign(cli::SignArgs),
    /// Named groups of agencies, addressed as group:NAME (admin certificate).
    Group {
        #[command(subcommand)]
        command: cli::GroupCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Report where a document you received stands (edXML status).
    Status(cli::StatusArgs),
    /// A message's whole life (you must be its sender or a recipient).
    Trace(cli::TraceArgs),
    /// Check the audit chain of a stopped gateway.
    Audit {
        #[command(subcommand)]
        command: offline::AuditCommand,
    },
    /// Check a stopped gateway's store (database, durability record, audit
    /// chain, content files).
    Store {
        #[command(subcommand)]
        command: offline::StoreCommand,
    },
    /// Check a signed receipt offline.
    Receipt {
        #[command(subcommand)]
        command: offline::ReceiptCommand,
    },
    /// Verify a detached CMS signature offline and print the report.
    Verify(cli::VerifyArgs),
    /// Queue statistics (admin certificate).
    Queue {
        #[command(subcommand)]
        command: cli::QueueCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Peer gateways (federation; admin certificate).
    Peer {
        #[command(subcommand)]
        command: cli::PeerCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Signatures inside PDFs: verify them offline, or sign a PDF with your
    /// agency's key held by the gateway.
    Pdf {
        #[command(subcommand)]
        command: cli::PdfCommand,
    },
    /// edXML packages (QCVN 102:2016): verify their XML signature offline,
    /// or sign one with your agency's key held by the gateway. Send and
    /// receive them with `send --edxml` and `receive --format edxml`.
    Edxml {
        #[command(subcommand)]
        command: cli::EdxmlCommand,
    },
}

fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LIENTHONG_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if std::env::var("LIENTHONG_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// mimalloc: glibc malloc showed as ~12% of the gateway's CPU under load
/// (contention and consolidation across the runtime, writer and receipt
/// threads); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(cli.command, Command::Serve { .. });
    init_logging(if is_server { "info" } else { "warn" });
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command. The gateway and the clients build their own runtimes
/// (`server::run_blocking`, `lienthong_cli::run`), so that their async code
/// is compiled once, in their crates, and not again in this one.
fn run(command: Command) -> anyhow::Result<()> {
    use cli::ClientCommand as Client;
    let client = match command {
        Command::Serve {
            config,
            listen,
            data_dir,
            postgres,
        } => {
            let keystore_passphrase = std::env::var_os("LIENTHONG_KEYSTORE_PASSPHRASE")
                .and_then(|value| lienthong::pki::Passphrase::new(value.into_encoded_bytes()));
            let overrides = Overrides {
                listen,
                data_dir,
                keystore_passphrase,
                postgres,
            };
            let config = Config::load(&config, &overrides)?;
            lienthong::server::run_blocking(config)?;
            return Ok(());
        }
        Command::Receipt { command } => return offline::receipt(command),
        Command::Audit { command } => return offline::audit(command),
        Command::Store { command } => return offline::store(command),
        Command::Agency {
            command,
            connection,
        } => Client::Agency(command, connection),
        Command::Send(args) => Client::Send(args),
        Command::Bench(args) => Client::Bench(args),
        Command::Signer {
            command,
            connection,
        } => Client::Signer(command, connection),
        Command::Verify(args) => Client::Verify(args),
        Command::Key {
            command,
            connection,
        } => Client::Key(command, connection),
        Command::Sign(args) => Client::Sign(args),
        Command::Trace(args) => Client::Trace(args),
        Command::Status(args) => Client::Status(args),
        Command::Group {
            command,
            connection,
        } => Client::Group(command, connection),
        Command::Receive(args) => Client::Receive(args),
        Command::Queue {
            command,
            connection,
        } => Client::Queue(command, connection),
        Command::Peer {
            command,
            connection,
        } => Client::Peer(command, connection),
        Command::Pdf { command } => Client::Pdf(command),
        Command::Edxml { command } => Client::Edxml(command),
    };
    cli::run(client)
}
