//! Response bodies. Handlers produce one JSON tree in ECS shape (PascalCase, lists already
//! double-wrapped as `{"Disks": {"Disk": [...]}}`); XML is derived from the same tree, where a
//! list becomes repeated elements named after its key.

use crate::auth::Format;
use crate::error::ApiError;
use crate::node::Node;
use crate::write::{JsonOut, XmlOut};
use std::borrow::Cow;

pub const HOST_ID: &str = "ecs.aliyuncs.com";

/// A rendered HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// A success body: the handler's object with `RequestId` first.
pub fn success(action: &str, format: Format, request_id: &str, body: Node) -> Rendered {
    let mut fields = vec![(Cow::Borrowed("RequestId"), Node::from(request_id.to_string()))];
    if let Node::Obj(f) = body {
        fields.extend(f);
    }
    let root = format!("{action}Response");
    document(200, format, &root, Node::Obj(fields))
}

pub fn error(err: &ApiError, format: Format, request_id: &str) -> Rendered {
    let code = err.code.as_str();
    let body = crate::obj! {
        "RequestId" => request_id.to_string(),
        "HostId" => HOST_ID,
        "Code" => code,
        "Message" => err.message.clone(),
        "Recommend" => format!("https://api.aliyun.com/troubleshoot?q={code}&product=Ecs&requestId={request_id}"),
    };
    document(err.status(), format, "Error", body)
}

fn document(status: u16, format: Format, root: &str, obj: Node) -> Rendered {
    match format {
        Format::Json => {
            let mut out = JsonOut::with_capacity(16 * 1024);
            obj.write(&mut out);
            Rendered { status, content_type: "application/json;charset=utf-8", body: out.finish() }
        }
        Format::Xml => {
            let mut out = XmlOut::new(root);
            obj.write(&mut out);
            Rendered { status, content_type: "text/xml;charset=utf-8", body: out.finish() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use serde_json::{Value, json};

    #[test]
    fn xml_double_wraps_lists_and_escapes() {
        let r = success(
            "DescribeDisks",
            Format::Xml,
            "RID",
            json!({"Disks": {"Disk": [{"DiskId": "d-1", "Size": 40}, {"DiskId": "d-<2>"}]}, "TotalCount": 2}).into(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeDisksResponse><RequestId>RID</RequestId><Disks><Disk><DiskId>d-1</DiskId><Size>40</Size></Disk><Disk><DiskId>d-&lt;2&gt;</DiskId></Disk></Disks><TotalCount>2</TotalCount></DescribeDisksResponse>"
        );
    }

    #[test]
    fn xml_replaces_what_it_cannot_carry() {
        let r = success("DescribeDisks", Format::Xml, "RID", json!({"Name": "a\u{0}b\u{1f}\tc\u{fffe}"}).into());
        assert!(r.body.contains("<Name>a\u{fffd}b\u{fffd}\tc\u{fffd}</Name>"), "{}", r.body);
        let j = success("DescribeDisks", Format::Json, "RID", json!({"Name": "a\u{0}b"}).into());
        assert!(j.body.contains(r#""a\u0000b""#), "{}", j.body);
    }

    #[test]
    fn json_success_has_request_id_and_no_code() {
        let r = success("ResetDisk", Format::Json, "RID", json!({}).into());
        assert_eq!(r.body, "{\"RequestId\":\"RID\"}");
    }

    #[test]
    fn error_envelope() {
        let r = error(&ApiError::new(Code::OperationConflict), Format::Json, "RID");
        assert_eq!(r.status, 403);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["Code"], "Operation.Conflict");
        assert_eq!(v["Message"], "The operation may conflicts with others.");
        assert_eq!(v["HostId"], HOST_ID);
        assert_eq!(v["RequestId"], "RID");
        let x = error(&ApiError::new(Code::DryRunOperation), Format::Xml, "RID");
        assert!(x.body.contains("<Error><RequestId>RID</RequestId>"));
        assert_eq!(x.status, 400);
    }
}
