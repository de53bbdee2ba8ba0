//! The ceiling for API benchmarks (not a test): the same HTTP stack as `snapdisk serve` (axum
//! on a multi-threaded tokio runtime) answering every request at `/` with one fixed JSON body
//! and doing no work. `scripts/bench-fleet.sh` measures it beside the real server.
//!
//! snapdisk-ceiling --listen 127.0.0.1:0 [--body-file F]   (prints `ceiling listening on http://ADDR`)
//!
//! `--body-file` serves that file's bytes instead of a small fixed body: given a response the
//! real server produced, the ceiling puts the same bytes on the wire and differs only in
//! doing no work.

use anyhow::Context;
use axum::Router;
use axum::routing::any;
use std::io::Write;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"RequestId":"00000000-0000-0000-0000-000000000000","TotalCount":0,"PageNumber":1,"PageSize":10,"NextToken":"","Disks":{"Disk":[]}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let body: &'static str = match arg("--body-file") {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?.leak(),
        None => BODY,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ceiling listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    let app = Router::new()
        .route("/", any(move || async move { ([("content-type", "application/json;charset=utf-8")], body) }));
    axum::serve(listener, app).await?;
    Ok(())
}
