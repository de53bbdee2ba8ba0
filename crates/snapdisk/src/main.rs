//! `snapdisk`: the server (`serve`) and the operator's command line (`admin`).

mod admin_cli;
mod dataplane;
mod http;
mod listener;
mod nonces;
mod serve;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// glibc's malloc spends much of a listing's time consolidating fast bins (every allocation of
/// 1 KiB or more consolidates them); mimalloc does not. The load generator and the ceiling use
/// it too, so measurements compare like with like.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
pub const DEFAULT_NBD_LISTEN: &str = "127.0.0.1:10809";

#[derive(Parser)]
#[command(name = "snapdisk", version, about = "Block storage that speaks the Alibaba Cloud ECS API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ECS API server.
    Serve(serve::ServeArgs),
    /// Operator commands against a running server (docs/operator.md).
    Admin(admin_cli::AdminArgs),
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
            rt.block_on(serve::run(args))
        }
        Command::Admin(args) => admin_cli::run(args),
    }
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}
