//! `snapdisk`: the server (`serve`) and the operator's command line (`admin`).

mod admin_cli;
mod dataplane;
mod http;
mod listener;
mod nbd_tls;
mod nonces;
mod serve;
mod vms;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// glibc's malloc spends much of a listing's time consolidating fast bins (every allocation of
/// 1 KiB or more consolidates them); mimalloc does not. The load generator and the ceiling use
/// it too, so measurements compare like with like.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

#[derive(Parser)]
#[command(name = "snapdisk", version, about = "Block storage that speaks the Alibaba Cloud ECS API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ECS API server.
    Serve(Box<serve::ServeArgs>),
    /// Operator commands against a running server (docs/operator.md).
    Admin(admin_cli::AdminArgs),
    /// Create the NBD CA in the data dir if needed and issue a server certificate from it
    /// (docs/nbd.md, "NBD security"); works without a running server.
    NbdTlsInit(NbdTlsInitArgs),
}

#[derive(clap::Args)]
pub struct NbdTlsInitArgs {
    #[command(flatten)]
    data: DataDir,
    /// Host names and IP addresses clients connect to (repeat the flag).
    #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    names: Vec<String>,
    /// Where to write server-cert.pem, server-key.pem (0600) and ca-cert.pem
    /// (default <data-dir>/nbd-tls).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 825)]
    days: i64,
}

fn nbd_tls_init(args: NbdTlsInitArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let ca = nbd_tls::Authority::open(&args.data.data_dir)?;
    let out = args.out.unwrap_or_else(|| args.data.data_dir.join("nbd-tls"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key) = ca.issue_server(&args.names, args.days)?;
    std::fs::write(out.join("server-cert.pem"), cert)?;
    serve::write_private(&out.join("server-key.pem"), key.as_bytes())?;
    std::fs::write(out.join("ca-cert.pem"), ca.ca_pem())?;
    println!(
        "--nbd-tls-cert {} --nbd-tls-key {}",
        out.join("server-cert.pem").display(),
        out.join("server-key.pem").display()
    );
    Ok(())
}

#[derive(clap::Args, Clone)]
pub struct DataDir {
    /// Where the catalog, the volumes and the keys live.
    #[arg(long, default_value = "./snapdisk-data", env = "SNAPDISK_DATA_DIR")]
    pub data_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("SNAPDISK_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve::run(*args))
        }
        Command::Admin(args) => admin_cli::run(args),
        Command::NbdTlsInit(args) => nbd_tls_init(args),
    }
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}
