//! The ceiling for API benchmarks (not a test): the same HTTP stack as `snapdisk serve` (axum
//! on a multi-threaded tokio runtime) answering every request at `/` with one fixed JSON body
//! and doing no work. `scripts/bench-fleet.sh` measures it beside the real server.
//!
//! snapdisk-ceiling --listen 127.0.0.1:0   (prints `ceiling listening on http://ADDR`)

use anyhow::Context;
use axum::Router;
use axum::routing::any;
use std::io::Write;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"RequestId":"00000000-0000-0000-0000-000000000000","TotalCount":0,"PageNumber":1,"PageSize":10,"NextToken":"","Disks":{"Disk":[]}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args().skip_while(|a| a != "--listen").nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ceiling listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    let app = Router::new().route("/", any(|| async { ([("content-type", "application/json;charset=utf-8")], BODY) }));
    axum::serve(listener, app).await?;
    Ok(())
}
