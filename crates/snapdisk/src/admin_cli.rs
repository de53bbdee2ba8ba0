//! `snapdisk admin <command> [Key=Value ...]`: posts an operator command to a running server
//! and prints its JSON answer.

use crate::DataDir;
use anyhow::{Context, bail};
use serde_json::{Map, Value};

#[derive(clap::Args)]
#[command(after_help = "Commands: see docs/operator.md. Values are JSON when they parse as JSON \
    (numbers, true/false, [\"lists\"]), strings otherwise; keys ending in Id are always strings.\n\
    Example: snapdisk admin instance-lock InstanceId=i-abc LockMsg='abuse report'")]
pub struct AdminArgs {
    #[command(flatten)]
    data: DataDir,
    /// The running server's API address.
    #[arg(long, default_value = concat!("http://", "127.0.0.1:8470"), env = "SNAPDISK_ENDPOINT")]
    endpoint: String,
    /// Operator token; by default SNAPDISK_ADMIN_TOKEN, else <data-dir>/admin-token.
    #[arg(long, env = "SNAPDISK_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// One of the commands in docs/operator.md, e.g. account-create.
    command: String,
    /// Body fields as Key=Value.
    fields: Vec<String>,
}

fn body(fields: &[String]) -> anyhow::Result<Value> {
    let mut map = Map::new();
    for f in fields {
        let Some((k, v)) = f.split_once('=') else { bail!("{f}: expected Key=Value") };
        let value = if k.ends_with("Id") {
            Value::String(v.to_string())
        } else {
            serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
        };
        map.insert(k.to_string(), value);
    }
    Ok(Value::Object(map))
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(t) => t,
        None => {
            let path = args.data.data_dir.join("admin-token");
            std::fs::read_to_string(&path)
                .with_context(|| format!("no --token and cannot read {}", path.display()))?
                .trim()
                .to_string()
        }
    };
    let url = format!("{}/admin/{}", args.endpoint.trim_end_matches('/'), args.command);
    let resp = ureq::post(&url).set("authorization", &format!("Bearer {token}")).send_json(body(&args.fields)?);
    match resp {
        Ok(r) => {
            let v: Value = r.into_json()?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            eprintln!("{code}: {text}");
            std::process::exit(1);
        }
        Err(e) => Err(e).with_context(|| format!("calling {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_typed_json() {
        let v = body(&[
            "AccountId=1234567890123456".into(),
            "Balance=-5".into(),
            "Open=false".into(),
            "Add=[\"1\"]".into(),
            "LockMsg=hi there".into(),
        ])
        .unwrap();
        assert_eq!(v["AccountId"], "1234567890123456");
        assert_eq!(v["Balance"], -5);
        assert_eq!(v["Open"], false);
        assert_eq!(v["Add"][0], "1");
        assert_eq!(v["LockMsg"], "hi there");
        assert!(body(&["nokey".into()]).is_err());
    }
}
